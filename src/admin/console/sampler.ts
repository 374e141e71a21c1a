import type { Registry } from 'prom-client';

/**
 * The last hour of the process's own metrics, for the console's sparklines: every
 * `intervalMs` it reads a few series from the registry (the gauges through the probe's
 * shared snapshot, the counters as they stand) into a ring buffer per series. Nothing is
 * stored anywhere else; a restart starts an empty hour.
 */
export interface Series {
  /** Sample times (ms) and values, oldest first. */
  at: number[];
  values: number[];
}

export interface Sampler {
  series(name: string, labels?: Record<string, string>): Series;
  /** Takes one sample now (also what the timer does). */
  sample(): Promise<void>;
  close(): void;
}

/** Gauges sampled as they are, counters as their increase per minute. */
const GAUGES = [
  'order_relay_backlog', 'order_relay_parked', 'order_relay_retrying', 'order_relay_blocked', 'order_relay_oldest_pending_seconds',
  'order_relay_sink_inflight', 'order_relay_slot_lag_bytes', 'order_relay_slot_retained_bytes', 'order_relay_parked_inputs',
];
const COUNTERS = ['order_relay_deliveries_total', 'order_relay_delivery_retries_total'];

export const SAMPLED = [...GAUGES, ...COUNTERS];

class Ring {
  readonly at: number[] = [];
  readonly values: number[] = [];
  constructor(private readonly size: number) {}
  push(at: number, v: number) {
    this.at.push(at);
    this.values.push(v);
    if (this.at.length > this.size) {
      this.at.shift();
      this.values.shift();
    }
  }
}

export function seriesKey(name: string, labels: Record<string, string> = {}): string {
  return `${name}{${Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(',')}}`;
}

export function startSampler(registry: Registry, options: { intervalMs: number; windowMs?: number }): Sampler {
  const size = Math.max(2, Math.ceil((options.windowMs ?? 3_600_000) / options.intervalMs));
  const rings = new Map<string, Ring>();
  const lastCounter = new Map<string, { at: number; value: number }>();
  let running: Promise<void> | undefined;

  const ring = (key: string) => rings.get(key) ?? rings.set(key, new Ring(size)).get(key)!;

  async function take(): Promise<void> {
    const now = Date.now();
    for (const name of SAMPLED) {
      const metric = registry.getSingleMetric(name);
      if (!metric) continue;
      const { values } = await metric.get();
      const counter = COUNTERS.includes(name);
      for (const v of values) {
        const labels = Object.fromEntries(Object.entries(v.labels).map(([k, x]) => [k, String(x)]));
        const key = seriesKey(name, labels);
        if (!counter) {
          ring(key).push(now, v.value);
          continue;
        }
        const prev = lastCounter.get(key);
        lastCounter.set(key, { at: now, value: v.value });
        if (prev && now > prev.at) ring(key).push(now, (Math.max(0, v.value - prev.value) * 60_000) / (now - prev.at));
      }
    }
  }

  const sample = () => (running ??= take().catch(() => {}).finally(() => (running = undefined)));
  void sample();
  const timer = setInterval(() => void sample(), options.intervalMs);
  timer.unref();
  return {
    series(name, labels) {
      const r = rings.get(seriesKey(name, labels));
      return r ? { at: [...r.at], values: [...r.values] } : { at: [], values: [] };
    },
    sample,
    close() {
      clearInterval(timer);
    },
  };
}

/** An inline SVG polyline of the values, scaled to their own range (a flat line at zero when all are 0). */
export function sparkline(s: Series, options: { width?: number; height?: number; label?: string } = {}): string {
  const w = options.width ?? 120;
  const h = options.height ?? 24;
  const title = options.label ? `<title>${options.label.replace(/[<&>"]/g, '')}</title>` : '';
  if (s.values.length < 2) return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img">${title}<line x1="0" y1="${h - 1}" x2="${w}" y2="${h - 1}" class="none"/></svg>`;
  const max = Math.max(...s.values);
  const min = Math.min(0, ...s.values);
  const span = max - min || 1;
  const n = s.values.length;
  const points = s.values.map((v, i) => `${((i / (n - 1)) * w).toFixed(1)},${(h - 1 - ((v - min) / span) * (h - 2)).toFixed(1)}`).join(' ');
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img">${title}<polyline points="${points}"/></svg>`;
}
