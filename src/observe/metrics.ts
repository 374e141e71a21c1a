import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DeliveryOutcome } from '../core/sink.js';
import type { ClaimedDelivery } from '../ledger/ledger.js';
import type { IngestResult } from '../pipeline/ingest.js';
import type { LiveProbe } from './probe.js';

/**
 * Prometheus metrics (prom-client, one registry per process so tests can build several).
 *
 * Counters and the latency histogram are fed by the app's hooks as things happen; the gauges
 * (backlog, parked, slot lag, paused, connected) are read from the ledger, the source
 * database and the live app at scrape time, through a snapshot shared by one scrape. The
 * Kafka lag gauges are the exception: the source refreshes them in the background and the
 * scrape reads its cache.
 */
export interface Metrics {
  registry: Registry;
  /** Pass to `createApp(config, { hooks })` (merge with others through `mergeHooks`). */
  hooks: AppHooks;
  /** Gives the gauges their data; until then they report nothing. */
  attach(probe: LiveProbe): void;
}

export interface AppHooks {
  onSettled?(sink: string, outcome: DeliveryOutcome, delivery: ClaimedDelivery, latencyMs: number): void;
  onPauseChange?(sink: string, paused: boolean, reason?: string): void;
  onIngested?(result: IngestResult): void;
}

/** Distinct status values per (source, table) that get their own series; the rest count as "(other)". */
export const UNMAPPED_STATUSES = 20;

export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

export function createMetrics(options: { defaultMetrics?: boolean; sinks?: readonly string[] } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const sinks = options.sinks ?? [];
  let probe: LiveProbe | undefined;

  const eventsIngested = new Counter({
    name: 'order_relay_events_classified_total',
    help: 'Business events classified from source changes, by event code; repeats the ledger then drops by event id are counted too (see order_relay_events_stored_total).',
    labelNames: ['code'],
    registers: [registry],
  });
  const eventsStored = new Counter({
    name: 'order_relay_events_stored_total',
    help: 'Events stored as new in the ledger (not seen before under their deterministic id), each with its deliveries, by event code.',
    labelNames: ['code'],
    registers: [registry],
  });
  const inputsParked = new Counter({
    name: 'order_relay_inputs_parked_total',
    help: 'Source input that could not become events and was parked with a reason.',
    registers: [registry],
  });
  // The status value is a label only while it is one of the first UNMAPPED_STATUSES seen per
  // (source, table): a table full of odd values must not blow up the series count.
  const unmapped = new Counter({
    name: 'order_relay_changes_unmapped_total',
    help: `Row changes whose status no mapping lists (orders.statuses, refunds.successStatuses), so they yielded no events, by source, table and status (the first ${UNMAPPED_STATUSES} values per table, then "other").`,
    labelNames: ['source', 'table', 'status'],
    registers: [registry],
  });
  const unmappedSeen = new Map<string, Set<string>>();
  const unmappedLabel = (source: string, table: string, status: string): string => {
    const key = `${source}\u0000${table}`;
    let seen = unmappedSeen.get(key);
    if (!seen) unmappedSeen.set(key, (seen = new Set()));
    const value = status.length > 64 ? `${status.slice(0, 63)}…` : status;
    if (seen.has(value)) return value;
    if (seen.size >= UNMAPPED_STATUSES) return '(other)';
    seen.add(value);
    return value;
  };
  const deliveries = new Counter({
    name: 'order_relay_deliveries_total',
    help: 'Delivery attempts recorded in the ledger, by sink and outcome (delivered, retry, rejected, not_applicable, sink_failure).',
    labelNames: ['sink', 'outcome'],
    registers: [registry],
  });
  const retries = new Counter({
    name: 'order_relay_delivery_retries_total',
    help: 'Attempts that will be retried with the same idempotency key (transport errors, 5xx, busy answers, sink failures).',
    labelNames: ['sink'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'order_relay_delivery_latency_seconds',
    help: 'From the source commit of the change to the recorded delivery, per sink.',
    labelNames: ['sink'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const pauses = new Counter({
    name: 'order_relay_sink_pauses_total',
    help: 'Times a sink was paused because the sink itself failed (credentials, clock skew, access).',
    labelNames: ['sink'],
    registers: [registry],
  });
  for (const sink of sinks) {
    retries.inc({ sink }, 0);
    latency.zero({ sink });
    pauses.inc({ sink }, 0);
  }

  // Gauges read at scrape time. One snapshot serves every gauge of a scrape: the registry
  // starts every collect() in the same tick, so they all find the one in progress; once it
  // is done, the next scrape takes its own. (A snapshot kept for a while would show a scrape
  // the backlog of before outcomes its counters already count.)
  let snapshot: ReturnType<LiveProbe['snapshot']> | undefined;
  const snap = () => {
    if (!probe) return undefined;
    if (!snapshot) {
      const taken = probe.snapshot();
      snapshot = taken;
      const done = () => setImmediate(() => {
        if (snapshot === taken) snapshot = undefined;
      });
      taken.then(done, done);
    }
    return snapshot;
  };

  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (g: Gauge<L>, s: Awaited<ReturnType<LiveProbe['snapshot']>>) => void,
  ) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const pending = snap();
        if (!pending) return;
        const s = await pending;
        this.reset();
        fill(this, s);
      },
    });

  new Gauge({ name: 'order_relay_up', help: 'Always 1 while the process serves metrics.', registers: [registry] }).set(1);
  gauge('order_relay_ledger_up', '1 when the last ledger query of this scrape succeeded.', [], (g, s) => g.set(s.ledgerError ? 0 : 1));
  gauge('order_relay_backlog', 'Deliveries pending per sink: events past the sink\'s cursor in the ledger log (waiting, in flight, retried in memory) and pending delivery rows (retrying, or waiting behind an earlier one of their order).', ['sink'], (g, s) => {
    for (const f of s.sinks) g.set({ sink: f.sink }, f.backlog);
  });
  gauge('order_relay_retrying', 'Pending delivery rows per sink whose last recorded attempt failed (retries kept in memory before an event becomes a row are not counted).', ['sink'], (g, s) => {
    for (const f of s.sinks) g.set({ sink: f.sink }, f.retrying);
  });
  gauge('order_relay_parked', 'Deliveries parked (rejected) per sink, waiting for replay or skip.', ['sink'], (g, s) => {
    for (const f of s.sinks) g.set({ sink: f.sink }, f.parked);
  });
  gauge('order_relay_blocked', 'Pending deliveries per sink that wait behind a parked delivery of the same order (delivery rows, and events past the cursor).', ['sink'], (g, s) => {
    for (const f of s.sinks) g.set({ sink: f.sink }, f.blocked);
  });
  gauge('order_relay_oldest_pending_seconds', 'Age of the oldest pending delivery per sink, since its event was stored (0 when none).', ['sink'], (g, s) => {
    for (const f of s.sinks) g.set({ sink: f.sink }, f.oldestPendingSeconds ?? 0);
  });
  gauge('order_relay_parked_inputs', 'Source input parked with a reason and not yet resolved.', [], (g, s) => {
    if (s.parkedInputs !== undefined) g.set(s.parkedInputs);
  });
  // The reason label is the failing outcome's code (ALIPAY_PUBLIC_KEY_MISMATCH, ACCESS_DENIED):
  // a bounded set, where the message ("… 8 answers in a row …") made a new series per scrape.
  // The message is in `status`, /readyz and the log.
  gauge('order_relay_sink_paused', '1 while a sink is paused because the sink itself fails (reason: the failure\'s code); its deliveries wait.', ['sink', 'reason'], (g, s) => {
    for (const st of s.live.sinks) g.set({ sink: st.sink, reason: st.paused ? pauseCode(st.pausedCode) : '' }, st.paused ? 1 : 0);
  });
  gauge('order_relay_sink_inflight', 'Attempts in flight per sink.', ['sink'], (g, s) => {
    for (const st of s.live.sinks) g.set({ sink: st.sink }, st.inflight);
  });
  gauge('order_relay_source_connected', '1 while the source streams.', ['source'], (g, s) => {
    for (const src of s.live.sources) g.set({ source: src.id }, src.connected ? 1 : 0);
  });
  gauge('order_relay_slot_lag_bytes', 'WAL bytes written since the replication slot\'s confirmed position.', ['source', 'slot'], (g, s) => {
    for (const sl of s.slots) if (sl.lagBytes != null) g.set({ source: sl.source, slot: sl.slot }, sl.lagBytes);
  });
  gauge('order_relay_slot_retained_bytes', 'WAL bytes the replication slot keeps on the source server\'s disk.', ['source', 'slot'], (g, s) => {
    for (const sl of s.slots) if (sl.retainedBytes != null) g.set({ source: sl.source, slot: sl.slot }, sl.retainedBytes);
  });
  gauge('order_relay_slot_owner', '1 while this instance holds the slot\'s lock and streams it, 0 while it stands by (another instance streams it).', ['source'], (g, s) => {
    for (const src of s.live.sources) if (src.role) g.set({ source: src.id }, src.role === 'owner' ? 1 : 0);
  });
  gauge('order_relay_shard_owned', '1 for each delivery shard of a sink this instance delivers now, 0 for the shards other instances deliver (see dispatcher.lease).', ['sink', 'shard'], (g, s) => {
    for (const st of s.live.sinks) {
      const mine = new Set(st.owned);
      for (let shard = 0; shard < st.shards; shard++) g.set({ sink: st.sink, shard: String(shard) }, mine.has(shard) ? 1 : 0);
    }
  });
  gauge('order_relay_slot_active', '1 when the replication slot has a connected consumer.', ['source', 'slot'], (g, s) => {
    for (const sl of s.slots) if (sl.exists) g.set({ source: sl.source, slot: sl.slot }, sl.active ? 1 : 0);
  });

  // Kafka lag: figures the source refreshes in the background (kafka.lagInterval), read from
  // its cache here: a scrape never waits for the brokers. A failed refresh keeps the last
  // figures; the age says how old they are.
  new Gauge({
    name: 'order_relay_kafka_consumer_lag',
    help: 'Records per Kafka partition not yet in the ledger: the partition\'s end offset (high watermark) minus the ledger\'s next offset, as of the last refresh (see order_relay_kafka_lag_age_seconds). Every instance of a group reports every partition.',
    labelNames: ['source', 'topic', 'partition'],
    registers: [registry],
    collect() {
      this.reset();
      for (const src of probe?.live().sources ?? []) {
        for (const p of src.kafkaLag?.partitions ?? []) this.set({ source: src.id, topic: p.topic, partition: String(p.partition) }, p.lag);
      }
    },
  });
  new Gauge({
    name: 'order_relay_kafka_lag_age_seconds',
    help: 'Seconds since the Kafka lag figures of a topic were last refreshed (since the source started, when never); grows while the brokers cannot be asked.',
    labelNames: ['source', 'topic'],
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const src of probe?.live().sources ?? []) {
        const lag = src.kafkaLag;
        if (!lag) continue;
        for (const t of lag.topics) this.set({ source: src.id, topic: t.topic }, Math.max(0, now - (t.refreshedAt ?? lag.startedAt)) / 1000);
      }
    },
  });

  // A counter whose value lives in the source (health().reconnects): exported as a counter.
  new Counter({
    name: 'order_relay_source_reconnects_total',
    help: 'Times the source reconnected after a drop (or retried while a standby).',
    labelNames: ['source'],
    registers: [registry],
    async collect() {
      const pending = snap();
      if (!pending) return;
      const s = await pending;
      this.reset();
      for (const src of s.live.sources) this.inc({ source: src.id }, src.reconnects);
    },
  });

  const hooks: AppHooks = {
    onSettled(sink, outcome, _delivery, latencyMs) {
      deliveries.inc({ sink, outcome: outcome.status });
      if (outcome.status === 'retry' || outcome.status === 'sink_failure') retries.inc({ sink });
      if (outcome.status === 'delivered') latency.observe({ sink }, Math.max(0, latencyMs) / 1000);
    },
    onPauseChange(sink, paused) {
      if (paused) pauses.inc({ sink });
    },
    onIngested(result) {
      for (const [code, n] of Object.entries(result.codes)) eventsIngested.inc({ code }, n);
      for (const [code, n] of Object.entries(result.stored)) eventsStored.inc({ code }, n);
      if (result.bad) inputsParked.inc(result.bad);
      for (const u of result.unmapped) unmapped.inc({ source: u.source, table: u.table, status: unmappedLabel(u.source, u.table, u.status) }, u.n);
    },
  };

  return {
    registry,
    hooks,
    attach(p) {
      probe = p;
    },
  };
}

/** A code as a label value: the characters codes are made of, at most 64 of them. */
function pauseCode(code: string | undefined): string {
  return (code ?? 'UNKNOWN').replace(/[^\w.:-]/g, '_').slice(0, 64) || 'UNKNOWN';
}

/** Calls every hook set in turn. */
export function mergeHooks(...all: Array<AppHooks | undefined>): AppHooks {
  const list = all.filter((h): h is AppHooks => !!h);
  return {
    onSettled: (...a) => list.forEach((h) => h.onSettled?.(...a)),
    onPauseChange: (...a) => list.forEach((h) => h.onPauseChange?.(...a)),
    onIngested: (...a) => list.forEach((h) => h.onIngested?.(...a)),
  };
}
