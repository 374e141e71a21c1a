import { Kafka, logLevel as KafkaLogLevel, type Admin, type LogEntry } from 'kafkajs';
import type { Checkpoint, SourceBatch } from '../../../src/core/source.js';
import type { KafkaSourceConfig } from './config.js';
import { clientConfig, createKafkaSource as createKafkaConsumer, type KafkaSource, type KafkaSourceDeps } from './source.js';
import { streamOf } from './decode.js';

/** One partition's lag: records between the ledger's position and the partition's end. */
export interface KafkaPartitionLag {
  topic: string;
  partition: number;
  /** The partition's high watermark (the offset the next record will get). */
  end: string;
  /** The next offset the ledger holds for it (max of its checkpoint and what this process acknowledged); null when none yet. */
  position: string | null;
  lag: number;
}

/** The cached lag figures of a Kafka source, as the last refreshes left them. */
export interface KafkaLag {
  /** Per partition, sorted by topic and partition: the last value each refresh could compute (kept when a refresh fails). */
  partitions: KafkaPartitionLag[];
  /** Per configured topic: when its figures were last refreshed (epoch ms), and the last refresh's error if it failed. */
  topics: Array<{ topic: string; refreshedAt?: number; error?: string }>;
  /** When the monitor started (epoch ms): a topic never refreshed is this old. */
  startedAt: number;
}

/** A Kafka source whose consumer lag per partition is kept fresh in the background while it runs. */
export interface LaggingKafkaSource extends KafkaSource {
  /** The cached figures (no broker or ledger call); undefined until `run` has started. */
  lag(): KafkaLag | undefined;
}

/**
 * The Kafka source (source.ts) with its lag monitor: while `run` runs, every
 * `config.lagInterval` the brokers' end offsets (kafkajs admin `fetchTopicOffsets`) are read
 * against the ledger's positions (`loadCheckpoints`, and what the pipeline acknowledged
 * since), and the figures cached for /metrics. A scrape never waits for Kafka.
 */
export function createKafkaSource(config: KafkaSourceConfig, deps: KafkaSourceDeps): LaggingKafkaSource {
  const source = createKafkaConsumer(config, deps);
  const monitor = createLagMonitor(config, deps);
  return {
    ...source,
    async run(handle: (batch: SourceBatch) => Promise<void>, resumeFrom: Checkpoint[], signal: AbortSignal): Promise<void> {
      const mine = monitor.start(resumeFrom, signal);
      try {
        await source.run(handle, resumeFrom, signal);
      } finally {
        if (mine) await monitor.stop();
      }
    },
    acknowledge(checkpoints: Checkpoint[]): void {
      source.acknowledge(checkpoints);
      monitor.acknowledged(checkpoints);
    },
    lag: () => monitor.figures(),
  };
}

export interface LagMonitor {
  /** Starts refreshing; false (and nothing changes) when it already runs. */
  start(resumeFrom: Checkpoint[], signal: AbortSignal): boolean;
  stop(): Promise<void>;
  /** Positions the pipeline committed to the ledger (newer than the last ledger read). */
  acknowledged(checkpoints: Checkpoint[]): void;
  figures(): KafkaLag | undefined;
}

/** A refresh that takes longer than this is abandoned (its admin client is dropped) and counts as failed. */
const REFRESH_TIMEOUT_MS = 10_000;

export function createLagMonitor(config: KafkaSourceConfig, deps: KafkaSourceDeps): LagMonitor {
  const id = deps.id ?? 'kafka';
  const log = deps.logger.child({ component: 'kafka-lag', source: id });
  const topics = config.topics.map((t) => t.topic);
  /** Next offset per "topic/partition" known to be in the ledger. */
  const positions = new Map<string, bigint>();
  const byTopic = new Map<string, { partitions: KafkaPartitionLag[]; refreshedAt?: number; error?: string }>(topics.map((t) => [t, { partitions: [] }]));
  let startedAt: number | undefined;
  let admin: Admin | undefined;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let stopped = true;

  const advance = (stream: string, position: string) => {
    if (!/^\d+$/.test(position)) return;
    const at = BigInt(position);
    const known = positions.get(stream);
    if (known === undefined || at > known) positions.set(stream, at);
  };

  function client(): Admin {
    if (admin) return admin;
    const base = clientConfig(config, deps.env ?? process.env, log);
    // Its failures are logged at debug (the consumer reports the brokers' state); figures go stale visibly instead.
    const kafka = new Kafka({
      ...base,
      retry: { retries: 0 },
      logLevel: log.isLevelEnabled('debug') ? KafkaLogLevel.WARN : KafkaLogLevel.NOTHING,
      logCreator: () => (entry: LogEntry) => log.debug({ kafkajs: entry.namespace, err: entry.log.error }, entry.log.message),
    });
    admin = kafka.admin();
    return admin;
  }

  async function dropClient(): Promise<void> {
    const a = admin;
    admin = undefined;
    await a?.disconnect().catch(() => {});
  }

  async function refresh(): Promise<void> {
    let a: Admin;
    try {
      a = client();
      await withTimeout(a.connect(), REFRESH_TIMEOUT_MS);
      for (const cp of await withTimeout(deps.loadCheckpoints(), REFRESH_TIMEOUT_MS)) advance(cp.stream, cp.position);
    } catch (err) {
      for (const t of byTopic.values()) t.error = errorText(err);
      log.debug({ err: errorText(err) }, 'kafka lag refresh failed; keeping the last figures');
      await dropClient();
      return;
    }
    const results = await Promise.allSettled(topics.map((topic) => withTimeout(a.fetchTopicOffsets(topic), REFRESH_TIMEOUT_MS)));
    let failed = false;
    results.forEach((r, i) => {
      const topic = topics[i]!;
      const t = byTopic.get(topic)!;
      if (r.status === 'rejected') {
        failed = true;
        t.error = errorText(r.reason);
        log.debug({ err: t.error, topic }, 'kafka lag refresh failed for a topic; keeping its last figures');
        return;
      }
      t.partitions = r.value
        .map((o) => partitionLag(topic, o, positions.get(streamOf(topic, o.partition)), config.startFrom))
        .sort((x, y) => x.partition - y.partition);
      t.refreshedAt = Date.now();
      delete t.error;
    });
    if (failed) await dropClient();
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      inFlight = refresh().finally(() => {
        inFlight = undefined;
        schedule();
      });
    }, config.lagInterval);
    timer.unref();
  }

  return {
    start(resumeFrom, signal) {
      if (!stopped || signal.aborted) return false;
      stopped = false;
      startedAt = Date.now();
      for (const cp of resumeFrom) advance(cp.stream, cp.position);
      inFlight = refresh().finally(() => {
        inFlight = undefined;
        schedule();
      });
      return true;
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await inFlight?.catch(() => {});
      await dropClient();
    },
    acknowledged(checkpoints) {
      for (const cp of checkpoints) advance(cp.stream, cp.position);
    },
    figures() {
      if (startedAt === undefined) return undefined;
      return {
        startedAt,
        partitions: [...byTopic.values()].flatMap((t) => t.partitions),
        topics: [...byTopic].map(([topic, t]) => ({ topic, ...(t.refreshedAt !== undefined ? { refreshedAt: t.refreshedAt } : {}), ...(t.error ? { error: t.error } : {}) })),
      };
    },
  };
}

/**
 * Records the consumer has yet to read on one partition: its end (high watermark) minus the
 * ledger's next offset. Records below the partition's start (deleted by retention) are not
 * counted: they can no longer be read. With no stored position, the partition starts where
 * `startFrom` says: at its first record (`earliest`) or at its end (`latest`: lag 0).
 */
export function partitionLag(topic: string, offsets: { partition: number; high: string; low: string }, position: bigint | undefined, startFrom: 'earliest' | 'latest'): KafkaPartitionLag {
  const high = BigInt(offsets.high);
  const low = BigInt(offsets.low);
  const from = position ?? (startFrom === 'earliest' ? low : high);
  const behind = high - (from > low ? from : low);
  return { topic, partition: offsets.partition, end: offsets.high, position: position === undefined ? null : position.toString(), lag: behind > 0n ? Number(behind) : 0 };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
