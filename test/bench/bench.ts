/**
 * `npm run bench`: throughput, latency and memory of order-relay against its physical limits,
 * in one run on one machine (Postgres, both simulators and the connector share its cores).
 *
 * Phases (each in its own database and replication slot, so they do not disturb each other):
 *   rsa      RSA-2048 signatures per second on one core (the Zhima sink's ceiling here).
 *   decode   pg-logical-replication + pgoutput reading N pre-committed order inserts, manual ack,
 *            doing nothing else: the ceiling for any Node client.
 *   ingest   the connector on the same pre-generated WAL with both simulators hanging every
 *            request (deliveries paused): time from its first ledger write until the ledger
 *            checkpoint passes the last order's commit. This is also the backlog run for RSS.
 *   drain    the simulators are released: deliveries of that backlog for --drain-seconds.
 *   e2e      pre-generated WAL of M orders (purchases, check-ins, refunds) → effects at both
 *            simulators, counted there (distinct idempotency keys); FIFO checked there too.
 *   e2e80    the same with 80 ms ± 20 ms simulated latency at both simulators.
 *   latency  500 events/s offered for --latency-seconds; commit time (from the WAL) to the
 *            moment the last of the event's simulators recorded its effect.
 *   backlog  (--backlog N) a separate N-event backlog for the memory ceiling.
 *   peer     pg-transactional-outbox's replication listener with a no-op handler.
 */
import { performance } from 'node:perf_hooks';
import { createPrivateKey, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { parseLsn } from '../../connectors/sources/postgres/lsn.js';
import { eventId } from '../../src/core/ids.js';
import type { LocalPostgres } from '../../src/sandbox/postgres.js';
import { explainLedger, renderPlans } from './explain.js';
import {
  connectorConfig,
  cpuDelta,
  cpuSeconds,
  deepMerge,
  createOrderDatabase,
  createSlot,
  insertOrdersBulk,
  killAllChildren,
  ledgerExists,
  ledgerSize,
  percentile,
  processCpuSeconds,
  PROJECT,
  round,
  sleep,
  slotActive,
  spawnConnector,
  startServer,
  startSims,
  table,
  writeConfigFile,
  type AntchainStats,
  type ConnectorProcess,
  type Sims,
  type ZhimaStats,
} from './harness.js';
import { profilesIn, renderProfile, summarizeProfile, type ProfileSummary } from './profile.js';

export interface BenchOptions {
  /** Order changes for decode and ingest (the backlog of the ingest phase). */
  events: number;
  /** Orders for each e2e phase (1.5 events per order on average). */
  e2eOrders: number;
  latencySeconds: number;
  /** Seconds of the same load before the measured window (reported apart). */
  warmupSeconds: number;
  rate: number;
  /** Extra backlog run with this many events (0 = only the ingest phase's backlog). */
  backlog: number;
  drainSeconds: number;
  peerEvents: number;
  /** Sink concurrency (per sink) for the e2e phases. */
  concurrency: number;
  concurrency80: number;
  cpuProf: boolean;
  /** Extra node flags for the connector process (experiments, e.g. V8 heap sizes). */
  connectorNodeArgs: string[];
  /** Which phases run (decode always runs with ingest; rsa always runs). */
  phases: Set<Phase>;
  /** Print the ledger statements that cost Postgres most in each phase (pg_stat_statements). */
  statements: boolean;
  /** Extra Postgres server settings (experiments, e.g. autovacuum timing). */
  pgSettings: Record<string, string>;
  /** Deep-merged over every generated connector config (experiments: batch sizes, pool size…). */
  connectorOverrides: Record<string, unknown>;
  /** Print the EXPLAIN ANALYZE plans of the ledger statements (they are always measured). */
  explain: boolean;
  log: (line: string) => void;
}

export function defaultOptions(events = 200_000): BenchOptions {
  return {
    events,
    e2eOrders: Math.max(1000, Math.round(events / 40)),
    latencySeconds: 20,
    warmupSeconds: 3,
    rate: 500,
    backlog: 0,
    drainSeconds: 20,
    peerEvents: Math.max(500, Math.round(events / 40)),
    concurrency: 64,
    concurrency80: 256,
    cpuProf: false,
    phases: new Set(PHASES),
    // As the Dockerfile runs it (NODE_OPTIONS there).
    connectorNodeArgs: ['--max-semi-space-size=4', '--max-old-space-size=512'],
    statements: false,
    explain: false,
    connectorOverrides: {},
    pgSettings: {},
    log: (l) => process.stderr.write(`${l}\n`),
  };
}

/** Phases `--phases` can pick; the default runs them all. */
export const PHASES = ['ingest', 'e2e', 'e2e80', 'latency', 'peer'] as const;
export type Phase = (typeof PHASES)[number];

/** A figure, or null when its phase was not run. */
const maybe = (v: number | null): number | null => (v === null ? null : round(v));

export interface BenchResult {
  decode_eps: number | null;
  ingest_eps: number | null;
  e2e_eps: number | null;
  e2e_eps_latency80: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  rss_mb_peak: number | null;
  rsa_sign_per_s: number;
  peer_eps: number | null;
  /** Connector + Postgres CPU (walsender included) per event ingested, µs (ingest phase). */
  ingest_cpu_us_per_event: number | null;
  /** On-disk size of the e2e phase's ledger schema per event it stored, bytes. */
  ledger_bytes_per_event: number | null;
  /** Postgres CPU (backends, walsender, background processes) during the e2e phase per event delivered at both simulators, µs. */
  postgres_cpu_us_per_delivered_event: number | null;
  /** Events completed at both simulators per second over the first and the last 10% of the backlog's drain, and last/first. */
  drain_start_eps: number | null;
  drain_end_eps: number | null;
  drain_end_to_start_ratio: number | null;
  details: Record<string, unknown>;
}

const PAID_ALL = `'PAID'`;
/** Purchases, check-ins and refunds (a refund row and REFUNDED): 1, 2 and 2 events; 1.5 per order. */
const MIX = `CASE g % 4 WHEN 2 THEN 'USED' WHEN 3 THEN 'REFUNDED' ELSE 'PAID' END`;

function mixEvents(prefix: string, n: number): Array<{ id: string; orderNo: string; code: string }> {
  const out: Array<{ id: string; orderNo: string; code: string }> = [];
  for (let g = 1; g <= n; g++) {
    const orderNo = `${prefix}${g}`;
    const codes = g % 4 === 2 ? ['TRADE_SUCCESS', 'TRADE_CONFIRM'] : g % 4 === 3 ? ['TRADE_SUCCESS', 'REFUND_SUCCESS'] : ['TRADE_SUCCESS'];
    // A refund is its refund row (REFUNDED alone emits no REFUND_SUCCESS when a refunds table is set).
    for (const code of codes) out.push({ id: eventId(code === 'REFUND_SUCCESS' ? [PROJECT, orderNo, code, `${orderNo}-r`] : [PROJECT, orderNo, code]), orderNo, code });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

export function measureRsa(keyFile: string, ms = 1000): number {
  const key = createPrivateKey(readFileSync(keyFile, 'utf8'));
  // About the size of a real zhima.data.state.data.sync canonical string.
  const data = Buffer.from('app_id=2021000000000001&biz_content=' + 'x'.repeat(560) + '&charset=utf-8&method=zhima.data.state.data.sync');
  for (let i = 0; i < 50; i++) sign('sha256', data, key);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    sign('sha256', data, key);
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

/** The bare Node client: counts inserts until `expect`, acknowledging only at the end. */
export async function measureDecode(url: string, slot: string, publication: string, expect: number): Promise<{ eps: number; seconds: number; lastCommitEnd: bigint }> {
  const svc = new LogicalReplicationService({ connectionString: url }, { acknowledge: { auto: false, timeoutSeconds: 0 } });
  let inserts = 0;
  let last = '';
  let t0 = 0;
  const done = new Promise<number>((resolve, reject) => {
    svc.on('data', (_lsn: string, m: Pgoutput.Message) => {
      if (m.tag === 'insert') inserts++;
      else if (m.tag === 'commit') {
        last = m.commitEndLsn ?? last;
        if (inserts >= expect) resolve(performance.now());
      }
    });
    svc.on('heartbeat', (lsn: string, _ts: number, respond: boolean) => {
      if (respond) void svc.acknowledge(last || lsn).catch(() => {});
    });
    svc.on('error', reject);
  });
  t0 = performance.now();
  void svc.subscribe(new PgoutputPlugin({ protoVersion: 1, publicationNames: [publication] }), slot).catch(() => {});
  const t1 = await done;
  await svc.acknowledge(last).catch(() => {});
  await svc.stop().catch(() => {});
  const seconds = (t1 - t0) / 1000;
  return { eps: inserts / seconds, seconds, lastCommitEnd: parseLsn(last) };
}

async function dropSlot(url: string, slot: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (let i = 0; i < 50; i++) {
      const { rows } = await c.query<{ active: boolean }>(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
      if (rows.length === 0) return;
      if (!rows[0]!.active) {
        await c.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
        return;
      }
      await sleep(100);
    }
  } finally {
    await c.end();
  }
}

interface RunningConnector {
  proc: ConnectorProcess;
  profDir?: string;
  startedAt: number;
}

function startConnector(sims: Sims, dbUrl: string, slot: string, schema: string, opts: BenchOptions, overrides: Record<string, unknown>): RunningConnector {
  const raw = connectorConfig({ dbUrl, sims, slot, publication: 'relay_pub', ledgerSchema: schema, overrides: deepMerge(overrides, opts.connectorOverrides) });
  const path = writeConfigFile(raw);
  const profDir = opts.cpuProf ? mkdtempSync(join(tmpdir(), 'order-relay-prof-')) : undefined;
  const nodeArgs = [...opts.connectorNodeArgs, ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [])];
  return { proc: spawnConnector(path, sims.env, { nodeArgs }), ...(profDir ? { profDir } : {}), startedAt: Date.now() };
}

async function stopConnector(rc: RunningConnector, profiles: Record<string, ProfileSummary>, phase: string, log: (l: string) => void): Promise<void> {
  await rc.proc.stop(15_000);
  if (rc.profDir) {
    for (const f of profilesIn(rc.profDir)) {
      const s = summarizeProfile(f);
      profiles[phase] = s;
      log(renderProfile(s));
    }
  }
}

function sinkOverrides(concurrency: number): Record<string, unknown> {
  return {
    sinks: {
      antchain: { concurrency, timeout: '5s', retry: { initialBackoff: '200ms', maxBackoff: '2s' } },
      zhima: { concurrency, timeout: '5s', retry: { initialBackoff: '200ms', maxBackoff: '2s' } },
    },
    dispatcher: { drainTimeout: '2s' },
  };
}

/** Polls `check` every `everyMs` until it returns true; throws after `timeoutMs` with `what`. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs: number, everyMs = 50, proc?: ConnectorProcess): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return Date.now();
    if (proc && proc.child.exitCode !== null) throw new Error(`connector exited while waiting for ${what}: ${proc.output().slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${proc ? `: ${proc.output().slice(-2000)}` : ''}`);
    await sleep(everyMs);
  }
}

/** CPU seconds used so far by each live backend of the bench's probe pool (application_name bench-probe), by pid. */
async function probeBackendsCpu(pool: pg.Pool): Promise<Map<number, number>> {
  const { rows } = await pool.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = 'bench-probe'`);
  return new Map(rows.map((r) => [r.pid, processCpuSeconds(r.pid)]));
}

/** Committed transactions in a database so far (pg_stat_database; flushed by the stats collector within ~0.5 s). */
async function xacts(pool: pg.Pool, db: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(`SELECT pg_stat_clear_snapshot(), (SELECT xact_commit FROM pg_stat_database WHERE datname = $1)::text AS n`, [db]);
  return Number(rows[0]!.n);
}

async function checkpointAt(pool: pg.Pool, schema: string): Promise<bigint> {
  const { rows } = await pool.query<{ p: string }>(`SELECT (position::pg_lsn - '0/0')::text AS p FROM ${schema}.checkpoints WHERE source = 'postgres' AND stream = 'slot'`);
  return rows[0] ? BigInt(rows[0].p) : 0n;
}

async function firstAppendAt(pool: pg.Pool, schema: string): Promise<number> {
  const { rows } = await pool.query<{ t: Date }>(`SELECT min(created_at) AS t FROM ${schema}.log`);
  return rows[0]!.t.getTime();
}

/** (event, sink) pairs of the log: each event once per sink whose bit its mask has. */
const logPairs = (s: string) => `SELECT count(*) FROM ${s}.log l JOIN ${s}.sinks k ON (l.sinks & (1 << k.bit)) <> 0`;

export interface DeliveryCounts {
  /** Events in the log. */
  events: number;
  /** (event, sink) pairs: what the old ledger had one delivery row each for. */
  pairs: number;
  /** Pairs settled: an outcome (delivered, not applicable) or an exception row no longer pending (parked, skipped, delivered…). */
  settled: number;
  /** pairs − settled: past a cursor, or an exception row still pending. */
  pending: number;
  /** Delivered: outcomes plus exception rows delivered. */
  delivered: number;
}

/**
 * Where a ledger's deliveries stand, from plain aggregates over the log, outcomes and
 * deliveries (no per-row view such as delivery_states): cheap enough to poll on a ledger of
 * millions of events. An outcome settles its pair once (a flush sent again writes its
 * outcomes once), and exception rows are the pairs that are not outcomes.
 */
async function deliveryCounts(pool: pg.Pool, schema: string): Promise<DeliveryCounts> {
  const s = schema;
  const { rows } = await pool.query<{ events: number; pairs: number; outcomes: number; outcomes_delivered: number; rows_settled: number; rows_delivered: number }>(
    `SELECT (SELECT count(*) FROM ${s}.log)::int AS events, (${logPairs(s)})::int AS pairs, o.n::int AS outcomes, o.delivered::int AS outcomes_delivered,
            d.settled::int AS rows_settled, d.delivered::int AS rows_delivered
       FROM (SELECT count(*) AS n, count(*) FILTER (WHERE status = 'delivered') AS delivered FROM ${s}.outcomes) o,
            (SELECT count(*) FILTER (WHERE status <> 'pending') AS settled, count(*) FILTER (WHERE status = 'delivered') AS delivered FROM ${s}.deliveries) d`,
  );
  const r = rows[0]!;
  const settled = r.outcomes + r.rows_settled;
  return { events: r.events, pairs: r.pairs, settled, pending: r.pairs - settled, delivered: r.outcomes_delivered + r.rows_delivered };
}

/** Effects at both simulators, keyed by idempotency key (= event id), with their times. */
async function effectTimes(sims: Sims): Promise<{ antchain: Map<string, number>; zhima: Map<string, number>; a: AntchainStats; z: ZhimaStats }> {
  const [a, z] = await Promise.all([sims.antchain.stats<AntchainStats>(), sims.zhima.stats<ZhimaStats>()]);
  return {
    antchain: new Map(a.effectList.map((e) => [e.requestId, Date.parse(e.at)])),
    zhima: new Map(z.effectsList.map((e) => [e.out_biz_no, Date.parse(e.time)])),
    a,
    z,
  };
}

/** Zhima effects in recorded order: a REFUND/USED state before the order's BUY is a FIFO violation. */
function zhimaOrderViolations(z: ZhimaStats, byId: Map<string, { orderNo: string; code: string }>): number {
  const bought = new Set<string>();
  let bad = 0;
  for (const e of z.effectsList) {
    const ev = byId.get(e.out_biz_no);
    if (!ev) continue;
    if (ev.code === 'TRADE_SUCCESS') bought.add(ev.orderNo);
    else if (!bought.has(ev.orderNo)) bad++;
  }
  return bad;
}

export interface DrainRates {
  /** Resume → each simulator's first effect (requests hung before the resume time out, the sink probes and resumes), s; null: none. */
  antchain_first_effect_s: number | null;
  zhima_first_effect_s: number | null;
  /** The drain: from the moment both sinks deliver (the later first effect) to its end: the last event completed at both simulators when the whole backlog was, else the end of the window. */
  span_s: number;
  /** Whether every backlog event reached both simulators within the window. */
  complete: boolean;
  /** Events completed at both simulators (an event completes at the later of its two effects). */
  events_completed: number;
  start_eps: number;
  end_eps: number;
  /** end_eps / start_eps (null when nothing completed in the first window). */
  end_to_start_ratio: number | null;
  /** Events completed in each whole second of the drain, from its start: the shape between the two windows. */
  per_second?: number[];
  /** The same windows per sink, in deliveries (effects) per second. */
  antchain_start_per_s: number;
  antchain_end_per_s: number;
  zhima_start_per_s: number;
  zhima_end_per_s: number;
}

/**
 * Drain rate at the start and at the end of a resumed backlog, from the effect times the
 * simulators recorded (reset at the resume, so every effect is the backlog's). The drain
 * starts when both sinks deliver (the later of their first effects: an event needs both) and
 * ends with the last event completed at both when the whole backlog was (`backlogEvents`),
 * else at `windowEnd` (effects after it are left out); the rates are over its first and last
 * 10%.
 */
export function drainRates(
  fx: { antchain: Map<string, number>; zhima: Map<string, number> },
  backlogEvents: number,
  resumedAt: number,
  windowEnd: number,
): DrainRates {
  const a = [...fx.antchain.values()].filter((t) => t <= windowEnd);
  const z = [...fx.zhima.values()].filter((t) => t <= windowEnd);
  const done: number[] = [];
  for (const [key, at] of fx.antchain) {
    const zt = fx.zhima.get(key);
    if (zt !== undefined && Math.max(at, zt) <= windowEnd) done.push(Math.max(at, zt));
  }
  const min = (ts: number[]) => ts.reduce((m, t) => Math.min(m, t), Infinity);
  const firstA = min(a);
  const firstZ = min(z);
  const since = (t: number) => (t === Infinity ? null : round((t - resumedAt) / 1000, 2));
  const complete = done.length >= backlogEvents;
  const base = { antchain_first_effect_s: since(firstA), zhima_first_effect_s: since(firstZ), complete, events_completed: done.length };
  if (firstA === Infinity || firstZ === Infinity) {
    return { ...base, span_s: 0, start_eps: 0, end_eps: 0, end_to_start_ratio: null, antchain_start_per_s: 0, antchain_end_per_s: 0, zhima_start_per_s: 0, zhima_end_per_s: 0 };
  }
  const first = Math.max(firstA, firstZ);
  const end = complete ? done.reduce((m, t) => Math.max(m, t), first) : windowEnd;
  const span = Math.max(1, end - first);
  const w = span / 10;
  // [first, first + w) and (end - w, end]: two windows of the same length, ms timestamps.
  const rate = (ts: number[], head: boolean) => ts.filter((t) => (head ? t >= first && t < first + w : t > end - w && t <= end)).length / (w / 1000);
  const startEps = rate(done, true);
  const endEps = rate(done, false);
  const perSecond = new Array<number>(Math.floor(span / 1000)).fill(0);
  for (const t of done) {
    const i = Math.floor((t - first) / 1000);
    if (i >= 0 && i < perSecond.length) perSecond[i]!++;
  }
  return {
    ...base,
    per_second: perSecond,
    span_s: round(span / 1000, 2),
    start_eps: round(startEps),
    end_eps: round(endEps),
    end_to_start_ratio: startEps > 0 ? round(endEps / startEps, 2) : null,
    antchain_start_per_s: round(rate(a, true)),
    antchain_end_per_s: round(rate(a, false)),
    zhima_start_per_s: round(rate(z, true)),
    zhima_end_per_s: round(rate(z, false)),
  };
}

const DRAIN_RATE_METHOD =
  'events completed at both simulators (an event completes at the later of its two effects; simulator clocks, ms) per second over the first and the last 10% of the drain; ' +
  'the drain starts when both sinks deliver again (the later of the two simulators\' first effects after the resume: requests hung during the pause time out first and the sinks probe, ' +
  'details.*.antchain_first_effect_s / zhima_first_effect_s) and ends with the last event completed if the whole backlog completed within --drain-seconds, else at the end of that window ' +
  '(then "end" is the end of the window, not of the backlog); ratio = end / start; per-sink deliveries/s over the same windows beside it';

function renderDrain(name: string, d: DrainRates): string {
  return (
    `${name}: drain rate ${d.start_eps} events/s over the first 10% and ${d.end_eps} events/s over the last 10% of ${d.span_s} s (ratio ${d.end_to_start_ratio ?? 'n/a'}; ` +
    `${d.complete ? 'whole backlog delivered' : 'backlog not finished: the last 10% is the end of the window'}; ${d.events_completed} events at both simulators; ` +
    `first effects ${d.antchain_first_effect_s ?? 'none'} s (antchain) and ${d.zhima_first_effect_s ?? 'none'} s (zhima) after the resume; ` +
    `antchain ${d.antchain_start_per_s} → ${d.antchain_end_per_s}, zhima ${d.zhima_start_per_s} → ${d.zhima_end_per_s} deliveries/s)` +
    (d.per_second?.length ? `\n${name}: events completed per second of the drain: ${d.per_second.join(' ')}` : '')
  );
}

// ---------------------------------------------------------------------------------------------

/**
 * The bench's own polling connections: named, so their backends' CPU is taken out of
 * Postgres's, and never parallel (a parallel worker is a process of its own, which the
 * subtraction by pid would miss and count as the connector's).
 */
const PROBE = { application_name: 'bench-probe', idleTimeoutMillis: 0, options: '-c max_parallel_workers_per_gather=0' } as const;

export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const log = opts.log;
  const details: Record<string, unknown> = { method: {} };
  const method = details.method as Record<string, string>;
  const profiles: Record<string, ProfileSummary> = {};
  const rss: Record<string, number> = {};
  let server: LocalPostgres | undefined;
  let sims: Sims | undefined;
  const onSigint = () => {
    killAllChildren();
    void server?.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  const t0 = Date.now();
  const cpu: Record<string, Record<string, number>> = {};
  const cores = availableParallelism();
  /** Starts CPU accounting of a phase; the returned function ends it and logs the split. */
  const account = (phase: string, connectorPid: () => number | undefined) => {
    const pids = () => ({ connector: connectorPid(), antchain_sim: sims?.antchain.pid, zhima_sim: sims?.zhima.pid, bench: process.pid });
    const before = cpuSeconds(pids(), server?.dataDir);
    const wall0 = Date.now();
    if (opts.statements) void statementsReset(server!.url);
    return () => {
      if (opts.statements) void statementsReport(server!.url, phase).then((lines) => lines.forEach((l) => log(l)));
      const d = cpuDelta(before, cpuSeconds(pids(), server?.dataDir));
      const wall = (Date.now() - wall0) / 1000;
      cpu[phase] = { wall_s: round(wall, 2), ...d, idle: round(Math.max(0, cores * wall - (d.machine ?? 0)), 2) };
      log(`  cpu ${phase}: ${Object.entries(cpu[phase]!).map(([k, v]) => `${k} ${v}`).join(', ')} (seconds)`);
    };
  };
  try {
    details.loadavg_at_start = loadavg().map((l) => round(l, 2));
    log(`bench: starting postgres and simulators (load average ${details.loadavg_at_start})`);
    server = await startServer(opts.pgSettings);
    sims = await startSims();
    details.postgres = server.binDir;

    // --- rsa -----------------------------------------------------------------------------
    const rsa = measureRsa(sims.keys.appPrivate);
    log(`rsa: ${round(rsa)} RSA-2048 signatures/s on one core`);
    method.rsa_sign_per_s = 'node:crypto sign(sha256, ~640 B, RSA-2048 PKCS#1 v1.5) in a tight loop for 1 s on the main thread';

    // --- decode + ingest (+ the backlog of the ingest phase) ------------------------------
    let decodeEps: number | null = null;
    let ingestEps: number | null = null;
    let ingestCpuUs: number | null = null;
    let drain: DrainRates | null = null;
    if (opts.phases.has('ingest')) {
    const N = opts.events;
    const ingestUrl = await createOrderDatabase(server.url, 'bench_ingest');
    await createSlot(ingestUrl, 'decode_slot', 'relay_pub');
    await createSlot(ingestUrl, 'relay_slot', 'relay_pub');
    log(`ingest: pre-generating ${N} committed order inserts (500 rows per transaction)`);
    let tg = Date.now();
    await insertOrdersBulk(ingestUrl, { prefix: 'I', from: 1, to: N, txnRows: 500, statusSql: PAID_ALL });
    details.pregenerate_s = round((Date.now() - tg) / 1000, 1);

    const decode = await measureDecode(ingestUrl, 'decode_slot', 'relay_pub', N);
    await dropSlot(ingestUrl, 'decode_slot');
    log(`decode: ${N} inserts in ${round(decode.seconds, 2)} s = ${round(decode.eps)} /s`);
    method.decode_eps = 'pg-logical-replication 2.5 + pgoutput proto 1, manual ack, counting inserts; subscribe() to the commit of the last row';

    await sims.antchain.setFaults({ hangRate: 1 });
    await sims.zhima.setFaults({ hangRate: 1 });
    // application_name: the probe's own backend is measured apart from the connector's (ingest_cpu_us_per_event).
    // idleTimeoutMillis 0: those backends live until the pool ends, so none exits unmeasured.
    const ledgerPool = new pg.Pool({ connectionString: ingestUrl, max: 2, ...PROBE });
    ledgerPool.on('error', () => {}); // an idle client ended by the server (a phase's clean-up) must not end the run
    let rc = startConnector(sims, ingestUrl, 'relay_slot', 'ledger_ingest', opts, sinkOverrides(opts.concurrency));
    const ingestRc = rc;
    let endCpu = account('ingest', () => ingestRc.proc.pid);
    // CPU of the ingest: the connector and our Postgres (backends, walsender, background
    // processes), from the moment its slot streams (start-up and migrations before it are
    // reported apart) until the checkpoint passes the last commit.
    const dataDir = server.dataDir;
    const ingestCpu = () => cpuSeconds({ connector: ingestRc.proc.pid }, dataDir);
    const cpuAtSpawn = ingestCpu();
    let cpuAtStreaming: Record<string, number> | undefined;
    let probeAtStreaming = new Map<number, number>();
    let streamingAt = 0;
    const doneAt = await until(
      async () => {
        if (!cpuAtStreaming && (await slotActive(ledgerPool, 'relay_slot'))) {
          cpuAtStreaming = ingestCpu();
          streamingAt = Date.now();
          probeAtStreaming = await probeBackendsCpu(ledgerPool);
        }
        return (await ledgerExists(ledgerPool, 'ledger_ingest')) && (await checkpointAt(ledgerPool, 'ledger_ingest')) >= decode.lastCommitEnd;
      },
      'the ingest checkpoint',
      600_000,
      20,
      rc.proc,
    );
    const cpuAtDone = ingestCpu();
    const probeAtDone = await probeBackendsCpu(ledgerPool);
    const firstAt = await firstAppendAt(ledgerPool, 'ledger_ingest');
    // The log and its (event, sink) pairs: every event for both sinks.
    const counts = (await ledgerPool.query<{ e: number; d: number }>(`SELECT (SELECT count(*) FROM ledger_ingest.log)::int AS e, (${logPairs('ledger_ingest')})::int AS d`)).rows[0]!;
    endCpu();
    const ingestSeconds = (doneAt - firstAt) / 1000;
    ingestEps = counts.e / ingestSeconds;
    decodeEps = decode.eps;
    rss.ingest_backlog = rc.proc.memory.peakMb;
    log(`ingest: ${counts.e} events (${counts.d} (event, sink) deliveries) in ${round(ingestSeconds, 2)} s = ${round(ingestEps)} events/s (connector RSS peak ${round(rc.proc.memory.peakMb)} MB)`);
    method.ingest_eps =
      'WAL pre-generated (N inserts committed before the connector starts); deliveries paused (both simulators hang every request); ' +
      'from the first ledger append (min(log.created_at)) until the ledger checkpoint passes the last commit (polled every 20 ms)';
    if (counts.e !== N || counts.d !== 2 * N) throw new Error(`ingest: expected ${N} events and ${2 * N} deliveries ((event, sink) pairs of the log), ledger has ${counts.e} and ${counts.d}`);

    {
      const streamStart = cpuAtStreaming ?? cpuAtSpawn;
      const part = (from: Record<string, number>, to: Record<string, number>, k: string) => (to[k] ?? 0) - (from[k] ?? 0);
      const connectorS = part(streamStart, cpuAtDone, 'connector');
      const postgresS = part(streamStart, cpuAtDone, 'postgres');
      // The bench's own polling backend (one or two small queries every 20 ms) runs on the same
      // server: measured by its pid (application_name bench-probe) and taken out.
      let probeS = 0;
      for (const [pid, s] of probeAtDone) probeS += Math.max(0, s - (probeAtStreaming.get(pid) ?? 0));
      const perEvent = ((connectorS + postgresS - probeS) * 1e6) / N;
      ingestCpuUs = perEvent;
      const startupConnector = part(cpuAtSpawn, streamStart, 'connector');
      const startupPostgres = part(cpuAtSpawn, streamStart, 'postgres');
      const wholeUs = ((part(cpuAtSpawn, cpuAtDone, 'connector') + part(cpuAtSpawn, cpuAtDone, 'postgres') - probeS) * 1e6) / N;
      details.ingest_cpu = {
        events: N,
        window_s: round((doneAt - (cpuAtStreaming ? streamingAt : ingestRc.startedAt)) / 1000, 2),
        connector_s: round(connectorS, 2),
        postgres_s: round(postgresS, 2),
        pg_walsender_s: round(part(streamStart, cpuAtDone, 'pg_walsender'), 2),
        probe_backend_s: round(probeS, 2),
        us_per_event: round(perEvent, 1),
        connector_us_per_event: round((connectorS * 1e6) / N, 1),
        postgres_us_per_event: round(((postgresS - probeS) * 1e6) / N, 1),
        startup_connector_s: round(startupConnector, 2),
        startup_postgres_s: round(startupPostgres, 2),
        us_per_event_with_startup: round(wholeUs, 1),
        tick_s: 0.01,
      };
      log(
        `ingest: CPU ${round(perEvent, 1)} µs/event (connector ${round(connectorS, 2)} s + postgres ${round(postgresS - probeS, 2)} s, walsender ${round(part(streamStart, cpuAtDone, 'pg_walsender'), 2)} s of it, ` +
          `over ${N} events from the slot streaming to the checkpoint; start-up before it: connector ${round(startupConnector, 2)} s, postgres ${round(startupPostgres, 2)} s → ${round(wholeUs, 1)} µs/event with it)`,
      );
      method.ingest_cpu_us_per_event =
        '(connector CPU + Postgres CPU) / N events ingested (the N pre-generated PAID orders, one TRADE_SUCCESS event each), µs; utime+stime from /proc/<pid>/stat (10 ms ticks), the same sampling as details.cpu_seconds: ' +
        'the connector process (all its threads), and our Postgres server: the postmaster with the CPU of its exited children plus every live child (backends running the ledger SQL, ' +
        'the walsender decoding the WAL, checkpointer, walwriter, autovacuum…); the bench\'s own polling backend (application_name bench-probe) is subtracted; ' +
        'from the first 20 ms poll that sees the slot active (connector started and ledger migrated: that start-up is details.ingest_cpu.startup_*) until the poll that sees the checkpoint pass the last commit; ' +
        'not counted: the simulators (their requests hang), the bench process, other processes on the machine';
    }

    // The ledger statements on a full backlog, as the connector runs them (rolled back).
    const plans = await explainLedger(ingestUrl, 'ledger_ingest', { batch: 5000, sink: 'zhima' });
    // Keyed by statement name (stable across runs); what each ran on in ledger_statements.
    details.ledger_statements_ms = Object.fromEntries(plans.map((p) => [p.name, p.executionMs]));
    details.ledger_statements = Object.fromEntries(plans.map((p) => [p.name, p.statement]));
    log(`ledger statements on a backlog of ${counts.e} events (${counts.d} deliveries, held or past the cursors): ${plans.map((p) => `${p.statement} ${p.executionMs} ms`).join('; ')}`);
    if (opts.explain) log(renderPlans(plans));

    // Resume deliveries: the backlog drains.
    await sims.antchain.clearFaults();
    await sims.zhima.clearFaults();
    await sims.antchain.reset();
    await sims.zhima.reset();
    tg = Date.now();
    endCpu = account('drain', () => ingestRc.proc.pid);
    await sleep(opts.drainSeconds * 1000);
    const drainEnd = Date.now();
    endCpu();
    const drained = await effectTimes(sims);
    const drainSeconds = (Date.now() - tg) / 1000;
    drain = drainRates(drained, N, tg, drainEnd);
    log(renderDrain('drain', drain));
    const drainDeliveries = drained.antchain.size + drained.zhima.size;
    rss.ingest_backlog_resumed = rc.proc.memory.peakMb;
    log(`drain: ${drainDeliveries} deliveries accepted at the simulators in ${round(drainSeconds, 1)} s = ${round(drainDeliveries / drainSeconds)} deliveries/s from a ${N}-event backlog (RSS peak ${round(rc.proc.memory.peakMb)} MB)`);
    // The same statements once the planner has statistics for the grown tables (diagnostic only:
    // the connector never runs ANALYZE itself; autovacuum does, on its own schedule).
    await stopConnector(rc, profiles, 'ingest+drain', log);
    await ledgerPool.query(
      `ANALYZE ledger_ingest.log; ANALYZE ledger_ingest.outcomes; ANALYZE ledger_ingest.deliveries; ANALYZE ledger_ingest.attempts; ANALYZE ledger_ingest.cursors; ANALYZE ledger_ingest.event_ids`,
    );
    const analyzed = await explainLedger(ingestUrl, 'ledger_ingest', { batch: 5000, sink: 'zhima' });
    details.ledger_statements_ms_after_analyze = Object.fromEntries(analyzed.map((p) => [p.name, p.executionMs]));
    log(`ledger statements after ANALYZE: ${analyzed.map((p) => `${p.statement} ${p.executionMs} ms`).join('; ')}`);
    if (opts.explain) log(renderPlans(analyzed));
    await ledgerPool.end();
    details.drain = { seconds: round(drainSeconds, 1), deliveries: drainDeliveries, deliveries_per_s: round(drainDeliveries / drainSeconds), rates: drain };
    }

    // --- e2e and e2e80 on one pre-generated WAL, two slots -------------------------------
    const M = opts.e2eOrders;
    let e2eEps: number | null = null;
    let e2e80Eps: number | null = null;
    let ledgerBytes: number | null = null;
    let pgCpuPerDelivered: number | null = null;
    let p50: number | null = null;
    let p99: number | null = null;
    if (opts.phases.has('e2e') || opts.phases.has('e2e80') || opts.phases.has('latency')) {
    const e2eUrl = await createOrderDatabase(server.url, 'bench_e2e');
    await createSlot(e2eUrl, 'relay_a', 'relay_pub');
    await createSlot(e2eUrl, 'relay_b', 'relay_pub');
    await insertOrdersBulk(e2eUrl, { prefix: 'E', from: 1, to: M, txnRows: 500, statusSql: MIX, refundSql: 'g % 4 = 3' });
    const expected = mixEvents('E', M);
    const byId = new Map(expected.map((e) => [e.id, e]));
    // application_name: the probe's own backends are measured apart (postgres_cpu_us_per_delivered_event);
    // idleTimeoutMillis 0: they live until the pool ends, so none exits unmeasured.
    const e2ePool = new pg.Pool({ connectionString: e2eUrl, max: 2, ...PROBE });
    e2ePool.on('error', () => {}); // an idle client ended by the server (a phase's clean-up) must not end the run

    const e2ePhase = async (name: string, slot: string, schema: string, concurrency: number) => {
      await sims!.antchain.reset();
      await sims!.zhima.reset();
      const rc = startConnector(sims!, e2eUrl, slot, schema, opts, sinkOverrides(concurrency));
      const probe0 = await probeBackendsCpu(e2ePool);
      const end = account(name, () => rc.proc.pid);
      const x0 = await xacts(e2ePool, 'bench_e2e');
      let settledCounts: DeliveryCounts | undefined;
      await until(
        async () => {
          if (!(await ledgerExists(e2ePool, schema))) return false;
          const c = await deliveryCounts(e2ePool, schema);
          settledCounts = c;
          return c.pairs === expected.length * 2 && c.pending === 0;
        },
        `${name}: every delivery settled`,
        600_000,
        200,
        rc.proc,
      );
      end();
      const probe1 = await probeBackendsCpu(e2ePool);
      let probeS = 0;
      for (const [pid, sec] of probe1) probeS += Math.max(0, sec - (probe0.get(pid) ?? 0));
      const phaseCpu = cpu[name]!;
      const first = await firstAppendAt(e2ePool, schema);
      const fx = await effectTimes(sims!);
      let last = 0;
      let both = 0;
      for (const e of expected) {
        const a = fx.antchain.get(e.id);
        const z = fx.zhima.get(e.id);
        if (a !== undefined && z !== undefined) {
          both++;
          last = Math.max(last, a, z);
        }
      }
      const seconds = (last - first) / 1000;
      const violations = fx.a.violations.filter((v) => v.reason === 'ORDER_BEFORE_TRADE_SUCCESS').length + zhimaOrderViolations(fx.z, byId);
      const unexpected = [...fx.antchain.keys(), ...fx.zhima.keys()].filter((k) => !byId.has(k)).length;
      // Postgres CPU of the phase (the connector's ledger SQL, the walsender decoding the WAL,
      // background processes), the bench's own polling backends taken out, per event that
      // reached both simulators and per delivery the ledger recorded delivered.
      const pgS = Math.max(0, (phaseCpu.postgres ?? 0) - probeS);
      const deliveredInLedger = settledCounts?.delivered ?? 0;
      const pgUsPerEvent = both > 0 ? (pgS * 1e6) / both : null;
      const postgresCpu = {
        window_s: phaseCpu.wall_s,
        postgres_s: round(pgS, 2),
        pg_walsender_s: phaseCpu.pg_walsender,
        probe_backend_s: round(probeS, 2),
        connector_s: phaseCpu.connector,
        events_delivered: both,
        deliveries_delivered: deliveredInLedger,
        us_per_delivered_event: pgUsPerEvent === null ? null : round(pgUsPerEvent, 1),
        us_per_delivery: deliveredInLedger > 0 ? round((pgS * 1e6) / deliveredInLedger, 1) : null,
        tick_s: 0.01,
      };
      log(
        `${name}: Postgres CPU ${round(pgS, 2)} s (walsender ${phaseCpu.pg_walsender} s of it, probe ${round(probeS, 2)} s taken out) = ${postgresCpu.us_per_delivered_event ?? '-'} µs per event delivered at both ` +
          `(${postgresCpu.us_per_delivery ?? '-'} µs per delivery recorded delivered, ${deliveredInLedger})`,
      );
      rss[name] = rc.proc.memory.peakMb;
      log(
        `${name}: ${both}/${expected.length} events delivered at both simulators in ${round(seconds, 2)} s = ${round(both / seconds)} events/s ` +
          `(${round((2 * both) / seconds)} deliveries/s; concurrency ${concurrency}/sink; FIFO violations ${violations}; unexpected keys ${unexpected}; ` +
          `requests ${fx.a.requests}+${fx.z.requests}; antchain TCP connections ${(fx.a as AntchainStats & { connections?: number }).connections ?? '?'}; RSS peak ${round(rc.proc.memory.peakMb)} MB; start-up to first append ${first - rc.startedAt} ms)`,
      );
      await stopConnector(rc, profiles, name, log);
      // The ledger on disk once the connector is gone, per event the phase stored: the phase's
      // schema is new, and it holds exactly the workload's events (the wait above is for every
      // one of their deliveries to settle).
      const size = await ledgerSize(e2ePool, schema);
      const bytesPerEvent = size.bytes / expected.length;
      log(
        `${name}: ledger ${schema} ${round(size.bytes / 1048576, 2)} MiB on disk for ${expected.length} events = ${round(bytesPerEvent)} bytes/event ` +
          `(${Object.entries(size.tables).slice(0, 6).map(([t, b]) => `${t} ${round(b / 1024)} KiB`).join(', ')}${size.partitionedParentBytes ? `; partitioned parents report ${size.partitionedParentBytes} bytes, not summed` : ''})`,
      );
      // Backends flush their statistics when they exit: count after the connector is gone.
      await sleep(1000);
      const txPerEvent = ((await xacts(e2ePool, 'bench_e2e')) - x0) / expected.length;
      log(`${name}: ${round(txPerEvent, 1)} connector transactions per event in the source/ledger database (appends, log reads, flushes, exception claims, lookups)`);
      return {
        eps: both / seconds, db_transactions_per_event: round(txPerEvent, 1), both, expected: expected.length, seconds: round(seconds, 2), fifo_violations: violations, unexpected_keys: unexpected, concurrency, requests: fx.a.requests + fx.z.requests,
        ledger_bytes: size.bytes, ledger_bytes_per_event: round(bytesPerEvent), ledger_tables_bytes: size.tables, ledger_partitioned_parent_bytes: size.partitionedParentBytes,
        postgres_cpu: postgresCpu, postgres_cpu_us_per_delivered_event: postgresCpu.us_per_delivered_event,
      };
    };

    if (opts.phases.has('e2e')) {
      const e2e = await e2ePhase('e2e', 'relay_a', 'ledger_a', opts.concurrency);
      details.e2e = e2e;
      e2eEps = e2e.eps;
      ledgerBytes = e2e.ledger_bytes_per_event;
      pgCpuPerDelivered = e2e.postgres_cpu_us_per_delivered_event;
      method.postgres_cpu_us_per_delivered_event =
        'Postgres CPU during the e2e phase / events delivered at both simulators, µs: utime+stime from /proc/<pid>/stat (10 ms ticks) of our server (the postmaster with the CPU of its exited children ' +
        'plus every live child: the backends running the connector\'s ledger SQL, the walsender decoding the WAL, checkpointer, walwriter, autovacuum…), as details.cpu_seconds.e2e.postgres, ' +
        'from the connector\'s spawn (its start-up and migrations included) until the poll that sees every (event, sink) pair settled; the bench\'s polling backends (application_name bench-probe) are subtracted; ' +
        'the phase both ingests and delivers its events; per delivery recorded delivered in details.e2e.postgres_cpu.us_per_delivery';
      method.ledger_bytes_per_event =
        `after the e2e phase, with its connector stopped: the sum of pg_total_relation_size (heap + indexes + TOAST + free-space and visibility maps) over every table of its ledger schema ` +
        `(pg_class relkind 'r' in the schema, plus the leaf partitions of its relkind 'p' tables wherever they live, each once; the parents have no storage, 0 on PostgreSQL 15), ` +
        `divided by the ${expected.length} events of the e2e workload, all ingested into that fresh schema in the run; ` +
        `what the ledger keeps beside the log (outcomes, event ids, exception rows and their attempts, cursors, order rows, checkpoints, dead tuples not yet vacuumed) is in the numerator, sequences are not; per table in details.e2e.ledger_tables_bytes`;
    }
    if (opts.phases.has('e2e80')) {
      await sims.antchain.setFaults({ latencyMs: 60, jitterMs: 40 });
      await sims.zhima.setFaults({ latencyMs: 60, jitterMs: 40 });
      const e2e80 = await e2ePhase('e2e80', 'relay_b', 'ledger_b', opts.concurrency80);
      await sims.antchain.clearFaults();
      await sims.zhima.clearFaults();
      details.e2e80 = e2e80;
      e2e80Eps = e2e80.eps;
    }
    method.e2e_eps =
      `WAL pre-generated (${M} orders: 50% PAID, 25% USED, 25% REFUNDED → ${expected.length} events, every one for both sinks); ` +
      'from the first ledger append to the last effect recorded at either simulator; counted as event ids accepted at BOTH simulators';
    method.e2e_eps_latency80 = 'as e2e_eps with latencyMs 60 + jitterMs 40 (uniform 60–100 ms) at both simulators; FIFO per order checked at the simulators';
    await dropSlot(e2eUrl, 'relay_a');
    await dropSlot(e2eUrl, 'relay_b');

    // --- latency at a fixed offered load -----------------------------------------------------
    if (opts.phases.has('latency')) {
    await sims.antchain.reset();
    await sims.zhima.reset();
    await createSlot(e2eUrl, 'relay_c', 'relay_pub');
    const rc = startConnector(sims, e2eUrl, 'relay_c', 'ledger_c', opts, sinkOverrides(opts.concurrency));
    await until(
      async () => {
        const { rows } = await e2ePool.query<{ a: boolean }>(`SELECT active AS a FROM pg_replication_slots WHERE slot_name = 'relay_c'`);
        return rows[0]?.a === true && (await ledgerExists(e2ePool, 'ledger_c'));
      },
      'latency: connector streaming',
      60_000,
      50,
      rc.proc,
    );
    const offered = opts.rate * (opts.latencySeconds + opts.warmupSeconds);
    const loadPool = new pg.Pool({ connectionString: e2eUrl, max: 8 });
    loadPool.on('error', () => {}); // an idle client ended by the server (a phase's clean-up) must not end the run
    log(`latency: offering ${opts.rate} events/s for ${opts.warmupSeconds} s of warm-up and ${opts.latencySeconds} s measured (one PAID order per transaction)`);
    const latRc = rc;
    const endCpu = account('latency', () => latRc.proc.pid);
    const lx0 = await xacts(e2ePool, 'bench_e2e');
    let issued = 0;
    const inflight: Array<Promise<unknown>> = [];
    const lt0 = performance.now();
    while (issued < offered) {
      const due = Math.min(offered, Math.floor(((performance.now() - lt0) / 1000) * opts.rate));
      while (issued < due) {
        issued++;
        inflight.push(
          loadPool.query(
            `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
             VALUES ($1, 'PAID', '13800138000', '2088000000000042', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`,
            [`L${issued}`],
          ),
        );
      }
      await sleep(2);
    }
    await Promise.all(inflight);
    const offeredSeconds = (performance.now() - lt0) / 1000;
    await loadPool.end();
    await until(
      async () => {
        const c = await deliveryCounts(e2ePool, 'ledger_c');
        return c.pairs === offered * 2 && c.pending === 0;
      },
      'latency: every delivery settled',
      120_000,
      200,
      rc.proc,
    );
    endCpu();
    const commits = (await e2ePool.query<{ id: string; t: Date; c: Date }>(`SELECT encode(id, 'hex') AS id, committed_at AS t, created_at AS c FROM ledger_c.log`)).rows;
    const fx = await effectTimes(sims);
    const lat: number[] = [];
    const latPerDelivery: number[] = [];
    // Split: commit → ledger append (created_at: start of the append transaction) and append → effects.
    const toLedger: number[] = [];
    const toEffect: number[] = [];
    // The first seconds are the connector's warm-up (JIT, connections, prepared statements):
    // reported apart, as is usual for latency at a fixed load, and not in p50/p99.
    const loadStart = Math.min(...commits.map((c) => c.t.getTime()));
    const warm: number[] = [];
    for (const c of commits) {
      const a = fx.antchain.get(c.id);
      const z = fx.zhima.get(c.id);
      if (a === undefined || z === undefined) continue;
      if (c.t.getTime() - loadStart < opts.warmupSeconds * 1000) {
        warm.push(Math.max(a, z) - c.t.getTime());
        continue;
      }
      lat.push(Math.max(a, z) - c.t.getTime());
      toLedger.push(c.c.getTime() - c.t.getTime());
      toEffect.push(Math.max(a, z) - c.c.getTime());
      latPerDelivery.push(a - c.t.getTime(), z - c.t.getTime());
    }
    // When the slowest ones were committed (seconds into the run): a warm-up, a periodic stall or noise.
    const slowest = commits
      .map((c) => ({ at: c.t.getTime(), ms: Math.max(fx.antchain.get(c.id) ?? 0, fx.zhima.get(c.id) ?? 0) - c.t.getTime(), a: (fx.antchain.get(c.id) ?? 0) - c.t.getTime(), z: (fx.zhima.get(c.id) ?? 0) - c.t.getTime() }))
      .sort((x, y) => y.ms - x.ms);
    const t0c = Math.min(...commits.map((c) => c.t.getTime()));
    const over = (ms: number) => slowest.filter((x) => x.ms > ms).map((x) => round((x.at - t0c) / 1000, 1));
    log(`latency: over 100 ms: ${over(100).length} events, committed at s ${[...new Set(over(100).map((s) => Math.floor(s)))].sort((a, b) => a - b).join(',')}; slowest 5 (antchain/zhima ms): ${slowest.slice(0, 5).map((x) => `${x.a}/${x.z}`).join(' ')}`);
    lat.sort((x, y) => x - y);
    warm.sort((x, y) => x - y);
    log(`latency: warm-up (first ${opts.warmupSeconds} s, ${warm.length} events, not in the figures): p50 ${percentile(warm, 50)} ms, p99 ${percentile(warm, 99)} ms, max ${warm[warm.length - 1]} ms`);
    latPerDelivery.sort((x, y) => x - y);
    toLedger.sort((x, y) => x - y);
    toEffect.sort((x, y) => x - y);
    p50 = percentile(lat, 50);
    p99 = percentile(lat, 99);
    rss.latency = rc.proc.memory.peakMb;
    log(
      `latency: ${lat.length + warm.length}/${offered} events at both simulators (${lat.length} measured); offered ${round(offered / offeredSeconds)} /s; commit→delivered at both: p50 ${p50} ms, p99 ${p99} ms, max ${lat[lat.length - 1]} ms; ` +
        `per delivery p50 ${percentile(latPerDelivery, 50)} ms, p99 ${percentile(latPerDelivery, 99)} ms; ` +
        `commit→ledger p50 ${percentile(toLedger, 50)} / p99 ${percentile(toLedger, 99)} ms, ledger→both effects p50 ${percentile(toEffect, 50)} / p99 ${percentile(toEffect, 99)} ms`,
    );
    await stopConnector(rc, profiles, 'latency', log);
    await sleep(1000);
    // Minus the offered inserts themselves: what the connector ran per event.
    const latTxPerEvent = ((await xacts(e2ePool, 'bench_e2e')) - lx0 - offered) / offered;
    log(`latency: ${round(latTxPerEvent, 1)} connector transactions per event in the source/ledger database (appends, log reads, flushes, exception claims, lookups)`);
    details.latency = {
      warmup_s: opts.warmupSeconds,
      warmup_events: warm.length,
      warmup_p99_ms: percentile(warm, 99),
      warmup_max_ms: warm[warm.length - 1],
      events: lat.length,
      offered_per_s: round(offered / offeredSeconds),
      p50_ms: p50,
      p90_ms: percentile(lat, 90),
      p99_ms: p99,
      max_ms: lat[lat.length - 1],
      per_delivery_p50_ms: percentile(latPerDelivery, 50),
      per_delivery_p99_ms: percentile(latPerDelivery, 99),
      db_transactions_per_event: round(latTxPerEvent, 1),
      commit_to_ledger_p50_ms: percentile(toLedger, 50),
      commit_to_ledger_p99_ms: percentile(toLedger, 99),
      ledger_to_effects_p50_ms: percentile(toEffect, 50),
      ledger_to_effects_p99_ms: percentile(toEffect, 99),
    };
    method.p50_ms =
      `commit timestamp from the WAL (log.committed_at) to the later of the two effect timestamps recorded by the simulators; same host clock, ms resolution; ` +
      `events committed in the first ${opts.warmupSeconds} s of the load are the warm-up, reported apart (details.latency.warmup_*)`;
    await dropSlot(e2eUrl, 'relay_c');
    }
    await e2ePool.end();
    }

    // --- optional separate backlog run ----------------------------------------------------
    if (opts.backlog > 0) {
      const B = opts.backlog;
      const bUrl = await createOrderDatabase(server.url, 'bench_backlog');
      await createSlot(bUrl, 'relay_bl', 'relay_pub');
      log(`backlog: pre-generating ${B} order inserts`);
      await insertOrdersBulk(bUrl, { prefix: 'B', from: 1, to: B, txnRows: 500, statusSql: PAID_ALL });
      await sims.antchain.setFaults({ hangRate: 1 });
      await sims.zhima.setFaults({ hangRate: 1 });
      const bPool = new pg.Pool({ connectionString: bUrl, max: 2 });
    bPool.on('error', () => {}); // an idle client ended by the server (a phase's clean-up) must not end the run
      const brc = startConnector(sims, bUrl, 'relay_bl', 'ledger_bl', opts, sinkOverrides(opts.concurrency));
      // Ingested once the last order's event is in the log (appends follow commit order): one
      // probe of the event_ids key a second, not a count of a growing million-row log; the
      // count is checked once at the end.
      const lastId = eventId([PROJECT, `B${B}`, 'TRADE_SUCCESS']);
      const bDone = await until(
        async () =>
          (await ledgerExists(bPool, 'ledger_bl')) &&
          (await bPool.query<{ ok: boolean }>(`SELECT EXISTS (SELECT 1 FROM ledger_bl.event_ids WHERE id = decode($1, 'hex')) AS ok`, [lastId])).rows[0]!.ok,
        'backlog ingest',
        3_600_000,
        1000,
        brc.proc,
      );
      const bEvents = (await bPool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_bl.log`)).rows[0]!.n;
      if (bEvents !== B) throw new Error(`backlog: expected ${B} events in the log once the last one is there, it has ${bEvents}`);
      const bFirst = await firstAppendAt(bPool, 'ledger_bl');
      const ingestPeak = brc.proc.memory.peakMb;
      log(`backlog: ${B} events ingested in ${round((bDone - bFirst) / 1000, 1)} s with deliveries paused; RSS peak ${round(ingestPeak)} MB`);
      await sims.antchain.clearFaults();
      await sims.zhima.clearFaults();
      await sims.antchain.reset();
      await sims.zhima.reset();
      const bt = Date.now();
      await sleep(opts.drainSeconds * 1000);
      const bEnd = Date.now();
      // Delivered: the outcomes the cursors wrote and the exception rows delivered (the view
      // delivery_states would look up every pair of the log one by one).
      const { rows } = await bPool.query<{ n: number }>(
        `SELECT ((SELECT count(*) FROM ledger_bl.outcomes WHERE status = 'delivered') + (SELECT count(*) FROM ledger_bl.deliveries WHERE status = 'delivered'))::int AS n`,
      );
      const bSeconds = (Date.now() - bt) / 1000;
      const backlogDrain = drainRates(await effectTimes(sims), B, bt, bEnd);
      log(renderDrain('backlog', backlogDrain));
      drain = backlogDrain;
      rss.backlog = brc.proc.memory.peakMb;
      log(`backlog: resumed for ${round(bSeconds, 1)} s: ${rows[0]!.n} deliveries recorded delivered in the ledger; RSS peak ${round(brc.proc.memory.peakMb)} MB`);
      details.backlog = { events: B, ingest_s: round((bDone - bFirst) / 1000, 1), ingest_rss_mb: round(ingestPeak), resumed_s: round(bSeconds, 1), delivered: rows[0]!.n, rss_mb_peak: round(brc.proc.memory.peakMb), drain_rates: backlogDrain };
      await stopConnector(brc, profiles, 'backlog', log);
      await bPool.end();
      await dropSlot(bUrl, 'relay_bl');
    }

    // --- peer ----------------------------------------------------------------------------------
    const peer = opts.phases.has('peer') ? await measurePeer(server.url, opts.peerEvents, log) : null;
    method.peer_eps = `pg-transactional-outbox 0.5.7 replication listener, default (mutex) concurrency controller, no-op handler, ${opts.peerEvents} pre-committed outbox rows carrying the same order rows; listener start to last handled`;

    if (drain) {
      details.drain_rates_from = opts.backlog > 0 ? `the --backlog run (${opts.backlog} events)` : `the ingest phase's backlog (${opts.events} events)`;
      method.drain_start_eps = `${DRAIN_RATE_METHOD}; measured on ${details.drain_rates_from}, resumed for ${opts.drainSeconds} s (both drains in details.drain.rates and details.backlog.drain_rates)`;
    }
    const rssPeak = Object.keys(rss).length ? Math.max(...Object.values(rss)) : null;
    details.rss_mb_by_phase = Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, round(v)]));
    method.rss_mb_peak = `VmHWM of the connector process (/proc/<pid>/status, sampled every 100 ms), highest over every phase; the ingest phase is a backlog run (deliveries paused, then resumed); connector node flags: ${opts.connectorNodeArgs.join(' ') || 'none'} (the Dockerfile's NODE_OPTIONS)`;
    details.cpu_seconds = cpu;
    if (Object.keys(profiles).length) details.profiles = profiles;
    details.seconds = round((Date.now() - t0) / 1000, 1);
    details.loadavg_at_end = loadavg().map((l) => round(l, 2));
    details.machine = { cores, node: process.version };
    details.options = { pgSettings: opts.pgSettings, connectorOverrides: opts.connectorOverrides, events: opts.events, e2eOrders: opts.e2eOrders, latencySeconds: opts.latencySeconds, rate: opts.rate, backlog: opts.backlog, drainSeconds: opts.drainSeconds, peerEvents: opts.peerEvents, concurrency: opts.concurrency, concurrency80: opts.concurrency80 };
    return {
      decode_eps: maybe(decodeEps),
      ingest_eps: maybe(ingestEps),
      e2e_eps: maybe(e2eEps),
      e2e_eps_latency80: maybe(e2e80Eps),
      p50_ms: p50,
      p99_ms: p99,
      rss_mb_peak: maybe(rssPeak),
      rsa_sign_per_s: round(rsa),
      peer_eps: maybe(peer?.eps ?? null),
      ingest_cpu_us_per_event: ingestCpuUs === null ? null : round(ingestCpuUs, 1),
      ledger_bytes_per_event: maybe(ledgerBytes),
      postgres_cpu_us_per_delivered_event: pgCpuPerDelivered,
      drain_start_eps: drain ? drain.start_eps : null,
      drain_end_eps: drain ? drain.end_eps : null,
      drain_end_to_start_ratio: drain ? drain.end_to_start_ratio : null,
      details,
    };
  } finally {
    process.removeListener('SIGINT', onSigint);
    await sims?.stop().catch(() => {});
    killAllChildren();
    await server?.stop().catch(() => {});
  }
}

/** pg-transactional-outbox: its replication listener with a no-op handler over K outbox rows. */
export async function measurePeer(serverUrl: string, k: number, log: (l: string) => void): Promise<{ eps: number; seconds: number }> {
  const outbox = await import('pg-transactional-outbox');
  const url = await createOrderDatabase(serverUrl, 'bench_outbox');
  const setup = { outboxOrInbox: 'outbox' as const, database: 'bench_outbox', schema: 'public', table: 'outbox', listenerRole: 'postgres', publication: 'outbox_pub', replicationSlot: 'outbox_slot' };
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(outbox.DatabaseSetup.dropAndCreateTable(setup));
  await c.query(outbox.DatabaseSetup.setupReplicationCore(setup));
  await c.query(outbox.DatabaseSetup.setupReplicationSlot(setup));
  await c.end();
  await insertOrdersBulk(url, { prefix: 'P', from: 1, to: k, txnRows: 500, statusSql: PAID_ALL });
  const w = new pg.Client({ connectionString: url });
  await w.connect();
  for (let lo = 1; lo <= k; lo += 500) {
    await w.query(
      `INSERT INTO public.outbox (id, aggregate_type, aggregate_id, message_type, payload)
       SELECT gen_random_uuid(), 'order', o.order_no, 'TRADE_SUCCESS', to_jsonb(o) FROM orders o WHERE o.id BETWEEN $1 AND $2`,
      [lo, Math.min(k, lo + 499)],
    );
  }
  await w.end();
  let handled = 0;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => (resolveDone = r));
  const t0 = performance.now();
  const [shutdown] = outbox.initializeReplicationMessageListener(
    {
      outboxOrInbox: 'outbox',
      dbListenerConfig: { connectionString: url },
      dbHandlerConfig: { connectionString: url },
      settings: {
        dbSchema: 'public',
        dbTable: 'outbox',
        dbPublication: 'outbox_pub',
        dbReplicationSlot: 'outbox_slot',
        enableMaxAttemptsProtection: false,
        enablePoisonousMessageProtection: false,
        messageCleanupIntervalInMs: 0,
      },
    },
    {
      handle: async () => {
        handled++;
        if (handled >= k) resolveDone();
      },
    },
    outbox.getDisabledLogger(),
  );
  const timeout = setTimeout(() => resolveDone(), 300_000);
  await done;
  clearTimeout(timeout);
  const seconds = (performance.now() - t0) / 1000;
  await shutdown().catch(() => {});
  log(`peer: pg-transactional-outbox handled ${handled}/${k} in ${round(seconds, 2)} s = ${round(handled / seconds)} /s`);
  return { eps: handled / seconds, seconds };
}

/** pg_stat_statements (loaded with --statements): forget what earlier phases ran. */
async function statementsReset(serverUrl: string): Promise<void> {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    await c.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await c.query('SELECT pg_stat_statements_reset()');
  } finally {
    await c.end();
  }
}

/** The statements that cost Postgres most since the last reset, across every database. */
async function statementsReport(serverUrl: string, phase: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ ms: number; plan: number; calls: number; rows: number; q: string }>(
      `SELECT round(total_exec_time)::int AS ms, round(total_plan_time)::int AS plan, calls::int, rows::int,
              regexp_replace(left(query, 100), '\\s+', ' ', 'g') AS q
         FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 8`,
    );
    return [
      `  statements ${phase} (execution ms, planning ms, calls, rows):`,
      ...rows.map((r) => `    ${String(r.ms).padStart(7)} ${String(r.plan).padStart(6)} ${String(r.calls).padStart(7)} ${String(r.rows).padStart(8)}  ${r.q}`),
    ];
  } finally {
    await c.end();
  }
}

export const TARGETS: Record<string, { op: '>=' | '<='; value: number }> = {
  ingest_eps: { op: '>=', value: 50_000 },
  e2e_eps: { op: '>=', value: 2_000 },
  e2e_eps_latency80: { op: '>=', value: 1_000 },
  p99_ms: { op: '<=', value: 50 },
  rss_mb_peak: { op: '<=', value: 200 },
};

export function renderResult(r: BenchResult): string {
  const keys = [
    'decode_eps', 'ingest_eps', 'e2e_eps', 'e2e_eps_latency80', 'p50_ms', 'p99_ms', 'rss_mb_peak', 'rsa_sign_per_s', 'peer_eps',
    'ingest_cpu_us_per_event', 'ledger_bytes_per_event', 'postgres_cpu_us_per_delivered_event', 'drain_start_eps', 'drain_end_eps', 'drain_end_to_start_ratio',
  ] as const;
  const rows = keys.map((k) => {
    const t = TARGETS[k];
    const v = r[k];
    if (v === null) return [k, 'not run', t ? `${t.op} ${t.value}` : '', ''];
    const verdict = !t ? '' : (t.op === '>=' ? v >= t.value : v <= t.value) ? 'met' : 'MISSED';
    return [k, v, t ? `${t.op} ${t.value}` : '', verdict];
  });
  const method = (r.details.method ?? {}) as Record<string, string>;
  return [table(['metric', 'value', 'target', ''], rows), '', 'how each figure was measured:', ...Object.entries(method).map(([k, v]) => `  ${k}: ${v}`)].join('\n');
}

export function cleanupTemp(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
