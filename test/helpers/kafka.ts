import { spawn, type ChildProcess } from 'node:child_process';
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
  /** A JSON value (serialised here), a raw string (`raw: true`, sent as is), or null (a tombstone). */
  value: unknown;
  raw?: boolean;
}

export async function produce(producer: Producer, topic: string, records: TestRecord[]): Promise<void> {
  await producer.send({
    topic,
    acks: -1,
    messages: records.map((r) => ({
      key: r.key ?? null,
      value: r.value === null ? null : r.raw ? String(r.value) : JSON.stringify(r.value),
    })),
  });
}

/** The end offset (high watermark) of every partition of `topics`, as `${topic}/${partition}` → offset. */
export async function endOffsets(brokers: string[], topics: string[]): Promise<Map<string, string>> {
  const admin = new Kafka({ clientId: 'test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const out = new Map<string, string>();
    for (const topic of topics) {
      for (const p of await admin.fetchTopicOffsets(topic)) out.set(`${topic}/${p.partition}`, p.high);
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}

export function kill(child: ChildProcess | undefined): void {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
