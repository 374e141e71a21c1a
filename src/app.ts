import pg from 'pg';
import { createPostgresSource, decodeTuple } from '../connectors/sources/postgres/index.js';
import { createKafkaSource } from '../connectors/sources/kafka/index.js';
import { createClassifier, qualify } from './classify/classifier.js';
import type { Config } from './config/schema.js';
import { ConfigError } from './config/load.js';
import type { Row } from './core/events.js';
import type { Sink } from './core/sink.js';
import type { Source } from './core/source.js';
import { isTransientDbError } from './core/db-errors.js';
import { failpoint } from './core/failpoints.js';
import { instanceName } from '../connectors/sources/postgres/ownership.js';
import { createDispatcher, type Dispatcher } from './dispatch/dispatcher.js';
import type { DispatchHooks } from './dispatch/sink-worker.js';
import { createLedger, type Ledger } from './ledger/ledger.js';
import { startMaintenance } from './ledger/maintenance.js';
import { migrate } from './ledger/migrations.js';
import type { Logger } from './log.js';
import { createIngest, type Ingest, type IngestResult } from './pipeline/ingest.js';
import { createSink, sinkPolicy } from './registry.js';

export interface AppDeps {
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Replaces the configured sinks (tests). */
  sinks?: Sink[];
  hooks?: DispatchHooks & { onIngested?(result: IngestResult): void };
}

/** A source with the ingest step that feeds its batches to the ledger. */
export interface SourceRunner {
  source: Source;
  ingest: Ingest;
}

export interface App {
  ledger: Ledger;
  dispatcher: Dispatcher;
  sources: readonly SourceRunner[];
  sinks: readonly Sink[];
  /** Streams and delivers until `signal` aborts; then drains and closes everything. */
  run(signal: AbortSignal): Promise<void>;
}

export function ledgerUrl(config: Config): string {
  return config.ledger.url ?? config.database.url;
}

export function sourceUrl(config: Config): string {
  return config.source?.url ?? config.database.url;
}

export function configuredTables(config: Config): string[] {
  return [qualify(config.orders.table), ...(config.refunds ? [qualify(config.refunds.table)] : [])];
}

export async function migrateLedger(config: Config): Promise<number[]> {
  const client = new pg.Client({ connectionString: ledgerUrl(config), application_name: 'order-relay-migrate' });
  // A server shutting down between two of the migration's statements (57P01, then the
  // socket's end) is an 'error' event: without a listener it would kill the process. The
  // statement in flight (or the next one) rejects instead, and start-up retries.
  client.on('error', () => {});
  await client.connect();
  try {
    const applied = await migrate(client, config.ledger.schema, { shards: config.ledger.shards });
    const { rows } = await client.query<{ value: string }>(`SELECT value FROM ${config.ledger.schema}.settings WHERE key = 'shards'`);
    const stored = Number(rows[0]?.value);
    if (stored !== config.ledger.shards) {
      throw new ConfigError(
        `ledger.shards is ${config.ledger.shards} in the config, but the ledger ${config.ledger.schema} was made with ${stored}: the shard count is fixed once the ledger exists; set ledger.shards: ${stored}`,
      );
    }
    return applied;
  } finally {
    await client.end();
  }
}

/** Wires config into source → ingest → ledger → dispatcher → sinks. */
export function createApp(config: Config, deps: AppDeps): App {
  const logger = deps.logger;
  const pool = new pg.Pool({ connectionString: ledgerUrl(config), max: config.ledger.poolSize, application_name: 'order-relay' });
  pool.on('error', (err) => logger.warn({ component: 'ledger', err: String(err) }, 'idle ledger connection failed'));
  // The ledger's append and settle run prepared, on connections that keep one generic plan
  // per statement: planning them per call cost as much as running them at a trickle. The
  // ledger re-analyzes its tables as they grow, which makes Postgres re-plan them. Every
  // other statement stays on `pool`, planned per call with its parameters.
  // The setting goes in the startup packet: a SET sent on 'connect' raced the pool's first query
  // (pg's "client is already executing a query" deprecation warning on every start).
  const hotPool = new pg.Pool({ connectionString: ledgerUrl(config), max: 3, application_name: 'order-relay', options: '-c plan_cache_mode=force_generic_plan' });
  hotPool.on('error', (err) => logger.warn({ component: 'ledger', err: String(err) }, 'idle ledger connection failed'));
  const ledger = createLedger(pool, config.ledger.schema, { attemptHistory: config.dispatcher.attemptHistory, prepared: hotPool });
  const sinks =
    deps.sinks ?? Object.entries(config.sinks).map(([name, sc]) => createSink(name, sc, { logger, ...(deps.env ? { env: deps.env } : {}) }));
  const policies = new Map(Object.entries(config.sinks).map(([name, sc]) => [name, sinkPolicy(sc)]));
  const defaultPolicy = { concurrency: 16, timeout: 20_000, retry: { initialBackoff: 1_000, maxBackoff: 300_000 } };
  const dispatcher = createDispatcher({
    ledger,
    sinks: sinks.map((sink) => ({ sink, policy: policies.get(sink.name) ?? defaultPolicy })),
    options: config.dispatcher,
    logger,
    ...(deps.hooks ? { hooks: deps.hooks } : {}),
  });
  const classifier = createClassifier(config);
  const pools: pg.Pool[] = [pool, hotPool];
  const sources: SourceRunner[] = [];
  if (config.source) {
    const srcUrl = sourceUrl(config);
    const source = createPostgresSource(config.source, {
      logger,
      url: srcUrl,
      tables: configuredTables(config),
      claim: (name) => ledger.claimOwner(name, instanceName()),
    });
    const sourcePool = new pg.Pool({ connectionString: srcUrl, max: 2, application_name: 'order-relay-lookup' });
    sourcePool.on('error', () => {});
    pools.push(sourcePool);
    const fetchOrders = (orderNos: string[]) => fetchOrderRows(sourcePool, qualify(config.orders.table), config.orders.orderNo, orderNos);
    sources.push({ source, ingest: createIngest({ sourceId: source.id, ledger, classifier, sinks, fetchOrders, handOver: () => dispatcher.handOverSinks() }) });
  }
  if (config.kafka) {
    const source = createKafkaSource(config.kafka, {
      logger,
      loadCheckpoints: () => ledger.loadCheckpoints('kafka'),
      ...(deps.env ? { env: deps.env } : {}),
    });
    sources.push({ source, ingest: createIngest({ sourceId: source.id, ledger, classifier, sinks, handOver: () => dispatcher.handOverSinks() }) });
  }

  async function runSource({ source, ingest }: SourceRunner, signal: AbortSignal): Promise<void> {
    const checkpoints = await retryWhileUnreachable(() => ledger.loadCheckpoints(source.id), signal);
    await source.run(
      async (batch) => {
        if (batch.changes.length > 0) await failpoint('ingest.before');
        const result = await ingest(batch);
        if (batch.changes.length > 0) failpoint(batch.checkpoints.length ? 'ingest.after-commit' : 'ingest.after-slice');
        // Only now, with the batch committed, may the source hear about its position.
        source.acknowledge(batch.checkpoints);
        // New events go straight to the workers that can take them; the others read the log.
        dispatcher.offer(result.appended, result.handOver);
        deps.hooks?.onIngested?.(result);
      },
      checkpoints,
      signal,
    );
  }

  /**
   * Start-up meets a database that may be restarting (the migration, the checkpoints a
   * source resumes from): retry those with backoff instead of exiting.
   */
  async function retryWhileUnreachable<T>(step: () => Promise<T>, signal: AbortSignal): Promise<T> {
    for (let wait = 250; ; wait = Math.min(wait * 2, 10_000)) {
      try {
        return await step();
      } catch (err) {
        // Refused, starting up, shutting down, connection lost: wait. A refused login, a
        // missing database, a shard count that does not match: exit with one line.
        if (!isTransientDbError(err) || signal.aborted) throw err;
        logger.warn({ component: 'ledger', err: String(err), retryInMs: wait }, 'ledger not reachable yet; retrying');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  async function run(signal: AbortSignal): Promise<void> {
    await retryWhileUnreachable(() => migrateLedger(config), signal);
    // Partitions of the log are opened and dropped, and old history deleted, beside the work.
    const maintenance = startMaintenance({ pool, schema: config.ledger.schema, lockClass: ledger.lockClass, retentionMs: config.ledger.retention, idRetentionMs: config.ledger.idRetention, logger });
    dispatcher.start();
    // One source failing for good stops the others: the process exits and is restarted.
    const all = new AbortController();
    const onAbort = () => all.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) all.abort(); // stopped during the migration: the listener above never fires
    try {
      await Promise.all(
        sources.map((s) =>
          runSource(s, all.signal).catch((err) => {
            all.abort();
            throw err;
          }),
        ),
      );
    } finally {
      signal.removeEventListener('abort', onAbort);
      await dispatcher.stop();
      await maintenance.stop();
      await Promise.all(sinks.map((s) => s.close().catch(() => {})));
      await Promise.all(pools.map((p) => p.end()));
    }
  }

  return { ledger, dispatcher, sources, sinks, run };
}

/**
 * Orders the ledger never saw, read from the source table. Rows go through node-pg's type
 * parsers and the stream's own decoding, so they look exactly like streamed rows.
 */
async function fetchOrderRows(pool: pg.Pool, table: string, column: string, orderNos: string[]): Promise<Map<string, Row>> {
  const [schema, name] = table.split('.') as [string, string];
  const { rows } = await pool.query<Record<string, unknown>>(
    `SELECT t.*, t."${column}"::text AS "__order_relay_key" FROM "${schema}"."${name}" t WHERE t."${column}"::text = ANY($1::text[])`,
    [orderNos],
  );
  const out = new Map<string, Row>();
  for (const r of rows) {
    const key = String(r.__order_relay_key);
    delete r.__order_relay_key;
    const decoded = decodeTuple(r);
    if (decoded) out.set(key, decoded.row);
  }
  return out;
}
