import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Kafka, Partitioners, logLevel, type Producer } from 'kafkajs';

/**
 * A real Kafka-protocol broker for tests: librdkafka's mock cluster, started by Debian's
 * `kcat` (CI installs it with `apt-get install -y kcat`). The mock lives while kcat's stdin
 * is open. Topics auto-create with 4 partitions; `admin.createTopics` and idempotent
 * producers do not work against it, so tests create topics by producing to them.
 */
export interface MockKafka {
  /** Bootstrap addresses for kafkajs, e.g. ["127.0.0.1:37467"]. */
  brokers: string[];
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 10_000;

export async function startMockKafka(options: { brokers?: number } = {}): Promise<MockKafka> {
  const child = spawn(
    'kcat',
    ['-P', '-t', '__keepalive', '-b', 'localhost:1', '-X', `test.mock.num.brokers=${options.brokers ?? 1}`],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const lines = createInterface({ input: child.stderr! });
  const recent: string[] = [];
  let brokers: string[];
  try {
    brokers = await new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`kcat did not report the mock cluster's address within ${START_TIMEOUT_MS} ms: ${recent.join(' | ')}`)), START_TIMEOUT_MS);
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          err.code === 'ENOENT'
            ? new Error('kcat is not installed: the Kafka tests need it for librdkafka\'s mock cluster (Debian/Ubuntu: apt-get install -y kcat)')
            : err,
        );
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`kcat exited (${signal ?? code}) before the mock cluster was up: ${recent.join(' | ')}`));
      });
      // Keep draining stderr for the child's whole life, or it blocks on a full pipe.
      lines.on('line', (line) => {
        if (recent.length < 20) recent.push(line);
        const m = /replaced with (\S+)/.exec(line) ?? /bootstrap\.servers=(\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!.split(','));
        }
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    process.removeListener('exit', killOnExit);
    throw err;
  }

  return {
    brokers,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin!.end(); // kcat flushes, destroys the mock and exits
      const fallback = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(fallback);
    },
  };
}

/** A plain (non-idempotent) producer with the Java-compatible partitioner: a key always lands on one partition. */
export async function createTestProducer(brokers: string[]): Promise<Producer> {
  const kafka = new Kafka({ clientId: 'test-producer', brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: false, allowAutoTopicCreation: true });
  await producer.connect();
  return producer;
}

export interface TestRecord {
  key?: string;
  /** The partition to write to; default: the key's partition (Java-compatible hash), or round robin. */
  partition?: number;
  /** A JSON value (serialised here), a raw string (`raw: true`, sent as is), or null (a tombstone). */
  value: unknown;
  raw?: boolean;
}

/**
 * Produces `records` in order and returns where each landed. Records with an explicit
 * partition get exact offsets: one send's messages to one partition are appended
 * consecutively from the base offset the broker reports.
 */
export async function produce(producer: Producer, topic: string, records: TestRecord[]): Promise<Array<{ partition: number; offset: string }>> {
  const meta = await producer.send({
    topic,
    acks: -1,
    messages: records.map((r) => ({
      key: r.key ?? null,
      ...(r.partition !== undefined ? { partition: r.partition } : {}),
      value: r.value === null ? null : r.raw ? String(r.value) : JSON.stringify(r.value),
    })),
  });
  const base = new Map(meta.map((m) => [m.partition, BigInt(m.baseOffset ?? '0')]));
  const seen = new Map<number, bigint>();
  return records.map((r) => {
    if (r.partition === undefined) return { partition: -1, offset: '-1' };
    const n = seen.get(r.partition) ?? 0n;
    seen.set(r.partition, n + 1n);
    return { partition: r.partition, offset: ((base.get(r.partition) ?? 0n) + n).toString() };
  });
}
