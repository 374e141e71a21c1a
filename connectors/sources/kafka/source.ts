import { sleep } from '../../../src/core/sleep.js';
import type { ConnectionOptions } from 'node:tls';
import { Kafka, logLevel as KafkaLogLevel, type Consumer, type EachBatchPayload, type KafkaConfig, type LogEntry, type SASLOptions } from 'kafkajs';
import { resolveSecret } from '../../../src/config/secrets.js';
import { isTransientDbError } from '../../../src/core/db-errors.js';
import { FencedError, type Checkpoint, type Source, type SourceBatch, type SourceHealth } from '../../../src/core/source.js';
import type { Logger } from '../../../src/log.js';
import type { KafkaSourceConfig, KafkaTopicConfig } from './config.js';
import { decodeRecord, streamOf, type Decoded } from './decode.js';

export interface KafkaSourceDeps {
  logger: Logger;
  /**
   * The ledger's checkpoints of this source, read again on every partition assignment:
   * after a rebalance another instance may have moved the partitions this one gets.
   */
  loadCheckpoints: () => Promise<Checkpoint[]>;
  /** Source id in the ledger's checkpoints; default "kafka". */
  id?: string;
  /** Where `{ env: NAME }` secrets are read; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface KafkaSource extends Source {
  /** Partitions this instance owns right now, as "topic/partition". */
  assigned(): string[];
}

/** SASL rejected the credentials: retrying will not help. */
export class KafkaAuthError extends Error {
  override readonly name = 'KafkaAuthError';
}

/**
 * A kafkajs consumer group as a Source.
 *
 * Exactly once in effect: every batch handed to the pipeline carries, per partition, the
 * next offset (`offset + 1`) as its checkpoint, which the ledger stores in the same
 * transaction as the batch's events. On every assignment the consumer seeks each partition
 * to the ledger's position, and drops records below it that still arrive. Kafka's own
 * group offsets are committed only after the ledger commit (for lag tools); they are never
 * trusted over the ledger. `autoCommit` is off.
 */
export function createKafkaSource(config: KafkaSourceConfig, deps: KafkaSourceDeps): KafkaSource {
  const id = deps.id ?? 'kafka';
  const log = deps.logger.child({ component: 'source', source: id, group: config.groupId });
  const topics = new Map<string, KafkaTopicConfig>(config.topics.map((t) => [t.topic, t]));
  const health: SourceHealth = { connected: false, reconnects: 0 };
  /** Next offset per partition known to be in the ledger: never moves back in one process. */
  const positions = new Map<string, bigint>();
  /** Positions acknowledged (ledger-committed) but not yet committed to Kafka. */
  const acked = new Map<string, bigint>();
  let assignment: Array<{ topic: string; partitions: number[] }> = [];
  let running = false;

  async function run(handle: (batch: SourceBatch) => Promise<void>, resumeFrom: Checkpoint[], signal: AbortSignal): Promise<void> {
    if (running) throw new Error(`kafka source "${id}" is already running`);
    // Secrets are resolved here, not at construction: a missing one fails `run` with its name.
    const kafka = new Kafka(clientConfig(config, deps.env ?? process.env, log));
    running = true;
    for (const cp of resumeFrom) advance(cp.stream, cp.position);
    let backoff = 500;
    let failuresInARow = 0;
    try {
      while (!signal.aborted) {
        const outcome = await session(kafka, handle, signal);
        if (outcome.kind === 'stopped') return;
        if (outcome.progressed) backoff = 500;
        if (outcome.storing) {
          // Storing a batch failed for a while only (the ledger's Postgres restarting, a
          // connection lost): a new consumer seeks to the ledger's positions and reads the
          // records again, which the ledger dedupes. Not a failure of Kafka's: not counted.
          failuresInARow = 0;
          log.error({ err: outcome.error.message, retryInMs: backoff }, "storing a batch failed; re-reading from the ledger's positions");
        } else {
          // kafkajs gave up on this consumer (an error it calls non-retriable, e.g. a broker
          // answering a rebalance oddly): a new consumer rejoins the group and seeks to the
          // ledger again. The same failure over and over with no progress is fatal.
          failuresInARow = outcome.progressed ? 1 : failuresInARow + 1;
          if (failuresInARow >= MAX_FAILURES_IN_A_ROW) {
            throw new Error(`kafka consumer failed ${failuresInARow} times in a row without progress; last: ${outcome.error.message}`);
          }
          log.warn({ err: outcome.error.message, retryInMs: backoff }, 'kafka consumer stopped; starting a new one');
        }
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 30_000);
      }
    } finally {
      health.connected = false;
      assignment = [];
      running = false;
    }
  }

  /** `storing`: the pipeline failed to store a batch, transiently (see `isTransientDbError`). */
  type SessionOutcome = { kind: 'stopped' } | { kind: 'restart'; error: Error; progressed: boolean; storing: boolean };

  /** One kafkajs consumer, from connect to disconnect. Rejects on failures a restart cannot fix. */
  async function session(kafka: Kafka, handle: (batch: SourceBatch) => Promise<void>, signal: AbortSignal): Promise<SessionOutcome> {
    const consumer = kafka.consumer({
      groupId: config.groupId,
      sessionTimeout: config.sessionTimeout,
      heartbeatInterval: config.heartbeatInterval,
      rebalanceTimeout: config.rebalanceTimeout,
      maxWaitTimeInMs: config.maxWait,
    });

    let stopping = false;
    let progressed = false;
    /** Why this session ends: a fatal error (run rejects) or one a new consumer may overcome. */
    let ending: { fatal: boolean; error: Error; storing: boolean } | undefined;
    let wake: () => void = () => {};
    const ended = new Promise<void>((resolve) => (wake = resolve));
    const end = (error: Error, fatal: boolean, storing = false) => {
      if (ending) return;
      ending = { fatal, error, storing };
      health.lastError = storing ? `storing records failed: ${error.message}` : error.message;
      wake();
    };
    const onAbort = () => {
      stopping = true;
      wake();
    };
    if (signal.aborted) return { kind: 'stopped' };
    signal.addEventListener('abort', onAbort, { once: true });

    // --- assignment: pause, read the ledger, seek, resume -----------------------------
    let generation = 0;
    let seeking: Promise<void> = Promise.resolve();

    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const gen = ++generation;
      assignment = Object.entries(payload.memberAssignment).map(([topic, partitions]) => ({ topic, partitions: [...partitions] }));
      health.connected = true;
      // Emitted synchronously before the first fetch of this generation: nothing is read
      // from these partitions until they point at the ledger's positions.
      if (assignment.length) consumer.pause(assignment);
      log.info({ assigned: assignedStreams(), generation: gen }, 'partitions assigned');
      seeking = seekToLedger(gen, assignment);
    });

    async function seekToLedger(gen: number, parts: Array<{ topic: string; partitions: number[] }>): Promise<void> {
      let wait = 250;
      while (gen === generation && !stopping && !ending) {
        try {
          const stored = await deps.loadCheckpoints();
          if (gen !== generation || stopping) return;
          for (const cp of stored) advance(cp.stream, cp.position);
          const seeks = parts.flatMap(({ topic, partitions }) =>
            partitions.flatMap((partition) => {
              const at = positions.get(streamOf(topic, partition));
              return at === undefined ? [] : [{ topic, partition, offset: at.toString() }];
            }),
          );
          for (const s of seeks) consumer.seek(s);
          if (parts.length) consumer.resume(parts);
          // The group's offsets may lag the ledger (a crash between the ledger commit and
          // the Kafka commit): bring them level, so lag tools do not show phantom lag.
          // Not awaited: batches wait for `seeking`, and this commit may retry for a while.
          if (seeks.length) void consumer.commitOffsets(seeks).catch((err) => log.debug({ err: String(err) }, 'offset commit to Kafka failed'));
          return;
        } catch (err) {
          health.lastError = `cannot read the ledger's checkpoints: ${String(err)}`;
          log.warn({ err: String(err), retryInMs: wait }, 'cannot read checkpoints; partitions stay paused');
          await sleep(wait, signal);
          wait = Math.min(wait * 2, 10_000);
        }
      }
    }

    consumer.on(consumer.events.CRASH, ({ payload }) => {
      health.connected = false;
      health.reconnects++;
      health.lastError = payload.error.message;
      if (stopping || ending) {
        // kafkajs schedules its restart right after this event; disconnecting cancels it.
        setImmediate(() => void consumer.disconnect().catch(() => {}));
        return;
      }
      if (payload.restart) {
        log.warn({ err: payload.error.message }, 'kafka consumer crashed; kafkajs restarts it');
        return;
      }
      const err = payload.error;
      end(new Error(`kafka consumer stopped: ${err.name}: ${err.message}`), isAuthError(err));
    });
    consumer.on(consumer.events.DISCONNECT, () => {
      health.connected = false;
    });
    consumer.on(consumer.events.REBALANCING, () => {
      log.info('group is rebalancing');
    });

    // --- batches ------------------------------------------------------------------------
    async function eachBatch(payload: EachBatchPayload): Promise<void> {
      const { batch } = payload;
      if (ending || stopping) return;
      await seeking;
      const topic = topics.get(batch.topic);
      if (!topic) {
        payload.resolveOffset(batch.lastOffset()); // kafkajs assigns subscribed topics only
        return;
      }
      const stream = streamOf(batch.topic, batch.partition);
      const from = positions.get(stream);
      // Records below the ledger's position are already in it (a fetch that raced a seek,
      // or a replay after a rebalance): drop them.
      const messages = from === undefined ? batch.messages : batch.messages.filter((m) => BigInt(m.offset) >= from);
      if (messages.length === 0) {
        if (batch.messages.length) payload.resolveOffset(batch.lastOffset());
        return;
      }
      for (let i = 0; i < messages.length; i += config.maxBatchRecords) {
        if (ending || !payload.isRunning() || payload.isStale()) return;
        const slice = messages.slice(i, i + config.maxBatchRecords);
        const last = slice[slice.length - 1]!.offset;
        const next = (BigInt(last) + 1n).toString();
        // Written only if the ledger still holds what this consumer read (a zombie of an old
        // generation, its partition since consumed by another, adds nothing).
        const expected = positions.get(stream)?.toString() ?? null;
        const sourceBatch: SourceBatch = { changes: [], bad: [], checkpoints: [{ stream, position: next, expected }] };
        for (const m of slice) {
          const record = { topic: batch.topic, partition: batch.partition, offset: m.offset, timestamp: m.timestamp, value: m.value };
          let decoded: Decoded;
          try {
            decoded = decodeRecord(topic, record);
          } catch (err) {
            // A decoder bug must cost one parked record, not the partition.
            decoded = { kind: 'bad', bad: { stream, position: m.offset, reason: `cannot decode: ${String(err)}`, raw: m.value?.toString('utf8') ?? '' } };
          }
          if (decoded.kind === 'change') sourceBatch.changes.push(decoded.change);
          else if (decoded.kind === 'bad') sourceBatch.bad.push(decoded.bad);
        }
        // Backpressure: the next slice (and the next fetch) waits for the ledger commit.
        try {
          await handle(sourceBatch);
        } catch (err) {
          // The pipeline (the ledger) failed. Its Postgres restarting or a connection lost is
          // retried: this session ends, and the next one seeks to the ledger's positions (a
          // write is one transaction: nothing half-done remains). Anything else ends `run`.
          const error = err instanceof Error ? err : new Error(String(err));
          // Refused because another consumer wrote the partition since: this session ends, the
          // group's next assignment seeks to the ledger's positions.
          const transient = isTransientDbError(err) || err instanceof FencedError;
          if (err instanceof FencedError) log.warn({ stream, err: error.message }, 'fenced: another instance stored this partition meanwhile; rejoining');
          end(error, !transient, transient);
          return;
        }
        progressed = true;
        advance(stream, next);
        payload.resolveOffset(last);
        await commitToKafka(payload, batch.topic, batch.partition);
        await payload.heartbeat(); // throws when the group rebalances: kafkajs rejoins
      }
    }

    /**
     * Commits what the pipeline acknowledged for this partition (lag tools read it). A
     * rebalance makes kafkajs rejoin at once rather than after the rest of the fetch.
     */
    async function commitToKafka(payload: EachBatchPayload, topic: string, partition: number): Promise<void> {
      const stream = streamOf(topic, partition);
      const offset = acked.get(stream);
      if (offset === undefined) return;
      try {
        await payload.commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset: offset.toString() }] }] });
        if (acked.get(stream) === offset) acked.delete(stream);
      } catch (err) {
        // Harmless for exactly once: the ledger holds the position; the next commit carries it.
        log.debug({ err: String(err), stream }, 'offset commit to Kafka failed');
        if (isRebalancing(err)) throw err;
      }
    }

    // --- lifecycle ----------------------------------------------------------------------
    try {
      await connect(consumer, signal);
      if (signal.aborted) return { kind: 'stopped' };
      await consumer.subscribe({ topics: [...topics.keys()], fromBeginning: config.startFrom === 'earliest' });
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch });
      log.info({ topics: [...topics.keys()], brokers: config.brokers }, 'consuming');
      await ended;
    } finally {
      stopping = true;
      signal.removeEventListener('abort', onAbort);
      // Leaves the group after the batch in flight is committed; others take the partitions.
      await consumer.disconnect().catch((err) => log.warn({ err: String(err) }, 'disconnect failed'));
      health.connected = false;
      assignment = [];
    }
    const why = ending as { fatal: boolean; error: Error; storing: boolean } | undefined;
    if (!why) return { kind: 'stopped' };
    if (why.fatal) throw why.error;
    return { kind: 'restart', error: why.error, progressed, storing: why.storing };
  }

  /** Connects, retrying with backoff: brokers that are not up yet are normal at startup. */
  async function connect(consumer: Consumer, signal: AbortSignal): Promise<void> {
    let backoff = 500;
    while (!signal.aborted) {
      try {
        await consumer.connect();
        health.connected = true;
        return;
      } catch (e) {
        const cause = rootCause(e);
        health.lastError = `${cause.name}: ${cause.message}`;
        if (isAuthError(cause)) throw new KafkaAuthError(`kafka: authentication failed (${cause.message}); check kafka.sasl`);
        health.reconnects++;
        log.warn({ err: health.lastError, retryInMs: backoff }, 'cannot connect to Kafka; retrying');
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }

  function advance(stream: string, position: string): void {
    if (!/^\d+$/.test(position)) {
      log.warn({ stream, position }, 'ignoring a checkpoint that is not a Kafka offset');
      return;
    }
    const at = BigInt(position);
    const known = positions.get(stream);
    if (known === undefined || at > known) positions.set(stream, at);
  }

  function assignedStreams(): string[] {
    return assignment.flatMap(({ topic, partitions }) => partitions.map((p) => streamOf(topic, p))).sort();
  }

  return {
    id,
    run,
    acknowledge(checkpoints: Checkpoint[]): void {
      for (const cp of checkpoints) {
        if (!/^\d+$/.test(cp.position)) continue;
        const at = BigInt(cp.position);
        const known = acked.get(cp.stream);
        if (known === undefined || at > known) acked.set(cp.stream, at);
      }
    },
    health: () => ({ ...health }),
    assigned: assignedStreams,
  };
}

/** Consumers replaced in a row, without a single batch committed in between, before `run` gives up. */
const MAX_FAILURES_IN_A_ROW = 5;

/** Credentials or permissions the broker refuses: no restart fixes them. */
function isAuthError(err: Error): boolean {
  const cause = rootCause(err);
  const type = (cause as { type?: unknown }).type;
  return (
    /SASL|authentication/i.test(`${cause.name} ${cause.message}`) ||
    (typeof type === 'string' && /AUTHORIZATION_FAILED|SASL_AUTHENTICATION_FAILED|ILLEGAL_SASL_STATE|UNSUPPORTED_SASL_MECHANISM/.test(type))
  );
}

function isRebalancing(err: unknown): boolean {
  const type = (err as { type?: unknown } | null)?.type;
  return type === 'REBALANCE_IN_PROGRESS' || type === 'NOT_COORDINATOR_FOR_GROUP' || type === 'ILLEGAL_GENERATION' || type === 'UNKNOWN_MEMBER_ID';
}

/** kafkajs client settings: brokers, client id, TLS and SASL, secrets resolved now. */
export function clientConfig(config: KafkaSourceConfig, env: NodeJS.ProcessEnv, log: Logger): KafkaConfig {
  const out: KafkaConfig = {
    clientId: config.clientId,
    brokers: config.brokers,
    connectionTimeout: config.connectionTimeout,
    logLevel: kafkaLevel(log),
    logCreator: () => (entry: LogEntry) => forward(log, entry),
  };
  if (config.ssl !== undefined) {
    if (typeof config.ssl === 'boolean') out.ssl = config.ssl;
    else {
      const tls: ConnectionOptions = { rejectUnauthorized: config.ssl.rejectUnauthorized };
      if (config.ssl.ca) tls.ca = resolveSecret(config.ssl.ca, 'kafka.ssl.ca', env);
      if (config.ssl.cert) tls.cert = resolveSecret(config.ssl.cert, 'kafka.ssl.cert', env);
      if (config.ssl.key) tls.key = resolveSecret(config.ssl.key, 'kafka.ssl.key', env);
      if (config.ssl.servername) tls.servername = config.ssl.servername;
      out.ssl = tls;
    }
  }
  if (config.sasl) {
    const password = resolveSecret(config.sasl.password, 'kafka.sasl.password', env);
    out.sasl = { mechanism: config.sasl.mechanism, username: config.sasl.username, password } as SASLOptions;
  }
  return out;
}

/** kafkajs logs a lot at INFO and calls retried errors ERROR: shift everything one level down. */
function kafkaLevel(log: Logger): KafkaLogLevel {
  if (log.isLevelEnabled('trace')) return KafkaLogLevel.DEBUG;
  if (log.isLevelEnabled('debug')) return KafkaLogLevel.INFO;
  if (log.isLevelEnabled('info')) return KafkaLogLevel.WARN;
  return KafkaLogLevel.ERROR;
}

function forward(log: Logger, entry: LogEntry): void {
  const { message, timestamp: _t, logger: _l, stack: _s, ...rest } = entry.log as LogEntry['log'] & { stack?: unknown };
  const fields = { kafkajs: entry.namespace, ...rest };
  // Every rebalance makes in-flight commits and heartbeats fail with "rebalancing": expected.
  if (entry.namespace === 'Connection' && /rebalanc/i.test(String(rest.error ?? ''))) return log.debug(fields, message);
  switch (entry.level) {
    case KafkaLogLevel.ERROR:
      return log.warn(fields, message);
    case KafkaLogLevel.WARN:
      return log.info(fields, message);
    case KafkaLogLevel.INFO:
      return log.debug(fields, message);
    default:
      return log.trace(fields, message);
  }
}

function rootCause(err: unknown): Error {
  let e: unknown = err;
  for (let i = 0; i < 10 && e instanceof Error && 'cause' in e && e.cause instanceof Error; i++) e = e.cause;
  return e instanceof Error ? e : new Error(String(e));
}
