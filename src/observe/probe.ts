import pg from 'pg';
import type { KafkaLag } from '../../connectors/sources/kafka/index.js';
import { formatLsn } from '../../connectors/sources/postgres/lsn.js';
import { slotOwner } from '../../connectors/sources/postgres/ownership.js';
import { sourceUrl, type App } from '../app.js';
import type { Config } from '../config/schema.js';
import type { SinkState } from '../dispatch/sink-worker.js';
import { parkedInputCount, sinkFigures, slotFigures, type SinkFigures, type SlotFigures } from './queries.js';

/** What the running process knows that the ledger does not: pause state, connections. */
export interface LiveState {
  sinks: SinkState[];
  sources: Array<{ id: string; connected: boolean; role?: 'owner' | 'standby'; reconnects: number; lastError?: string; committed?: string; kafkaLag?: KafkaLag }>;
}

export interface Snapshot {
  at: string;
  ledgerError?: string;
  sinks: SinkFigures[];
  parkedInputs?: number;
  slots: Array<SlotFigures & { source: string; error?: string }>;
  live: LiveState;
}

export interface Readiness {
  ready: boolean;
  checks: Array<{ name: string; ok: boolean; detail: string; role?: 'owner' | 'standby' }>;
}

export interface LiveProbe {
  live(): LiveState;
  snapshot(): Promise<Snapshot>;
  ready(): Promise<Readiness>;
  close(): Promise<void>;
}

const QUERY_TIMEOUT_MS = 3_000;

/**
 * Looks at a running app for /readyz, /metrics and /status. It holds one small pool of its
 * own on the source database (for slot figures); ledger questions go through the app's pool.
 */
export function createProbe(config: Config, app: App): LiveProbe {
  const slotPool = config.source
    ? new pg.Pool({ connectionString: sourceUrl(config), max: 1, application_name: 'order-relay-probe', idleTimeoutMillis: 30_000 })
    : undefined;
  slotPool?.on('error', () => {});
  const schema = config.ledger.schema;

  function live(): LiveState {
    return {
      sinks: app.dispatcher.state(),
      sources: app.sources.map(({ source }) => {
        const h = source.health();
        const committed = (source as { state?: { committed?: bigint } }).state?.committed;
        // A Kafka source's lag figures, cached by its background refresh: no broker call here.
        const kafkaLag = (source as { lag?: () => KafkaLag | undefined }).lag?.();
        return {
          id: source.id,
          connected: h.connected,
          ...(h.role ? { role: h.role } : {}),
          reconnects: h.reconnects,
          ...(h.lastError ? { lastError: h.lastError } : {}),
          ...(typeof committed === 'bigint' && committed > 0n ? { committed: formatLsn(committed) } : {}),
          ...(kafkaLag ? { kafkaLag } : {}),
        };
      }),
    };
  }

  async function snapshot(): Promise<Snapshot> {
    const out: Snapshot = { at: new Date().toISOString(), sinks: [], slots: [], live: live() };
    try {
      out.sinks = await withTimeout(sinkFigures(app.ledger.pool, schema, Object.keys(config.sinks), { totals: false }));
      out.parkedInputs = await withTimeout(parkedInputCount(app.ledger.pool, schema));
    } catch (err) {
      out.ledgerError = errorText(err);
    }
    if (config.source && slotPool) {
      try {
        const figures = await withTimeout(slotFigures(slotPool, config.source.slot));
        const owner = await withTimeout(slotOwner(slotPool, config.source.slot)).catch(() => undefined);
        out.slots.push({ ...figures, owner: owner ?? null, source: 'postgres' });
      } catch (err) {
        out.slots.push({ slot: config.source.slot, exists: false, source: 'postgres', error: errorText(err) });
      }
    }
    return out;
  }

  async function ready(): Promise<Readiness> {
    const checks: Readiness['checks'] = [];
    try {
      await withTimeout(app.ledger.pool.query('SELECT 1'));
      checks.push({ name: 'ledger', ok: true, detail: 'reachable' });
    } catch (err) {
      checks.push({ name: 'ledger', ok: false, detail: `unreachable: ${errorText(err)}` });
    }
    const state = live();
    for (const src of state.sources) {
      // A standby is ready: it is what takes over (its role says so), not a failure.
      const standby = src.role === 'standby' && !src.lastError;
      checks.push({
        name: `source:${src.id}`,
        ok: src.connected || standby,
        ...(src.role ? { role: src.role } : {}),
        detail: src.connected
          ? 'streaming'
          : standby
            ? 'standby: another instance streams the slot; this one takes over when it goes'
            : `not connected${src.lastError ? `: ${src.lastError}` : ''} (reconnects: ${src.reconnects})`,
      });
    }
    // DESIGN: a paused sink must be loud in readiness.
    for (const s of state.sinks) {
      checks.push({ name: `sink:${s.sink}`, ok: !s.paused, detail: s.paused ? `PAUSED since ${s.pausedSince}: ${s.pausedReason}` : 'delivering' });
    }
    return { ready: checks.every((c) => c.ok), checks };
  }

  return {
    live,
    snapshot,
    ready,
    async close() {
      await slotPool?.end().catch(() => {});
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function withTimeout<T>(p: Promise<T>, ms = QUERY_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
