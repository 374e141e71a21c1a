import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, it, type OnTestFinishedHandler } from 'vitest';
import { createKafkaSource, type KafkaSource, type KafkaSourceConfig } from '../../connectors/sources/kafka/index.js';
import { createClassifier, type Classifier } from '../../src/classify/classifier.js';
import { configSchema } from '../../src/config/schema.js';
import type { Sink } from '../../src/core/sink.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { createLogger } from '../../src/log.js';
import { createIngest } from '../../src/pipeline/ingest.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createTestProducer, produce, startMockKafka, type MockKafka } from '../helpers/kafka.js';
import { PARTITIONS, Plan, acceptingSink, complete, ledgerState, prng, relayConfig, topicNames, waitFor, type LedgerState } from './fixtures.js';

/**
 * Exactly once against a real Kafka-protocol broker (librdkafka's mock cluster via kcat) and
 * the suite's Postgres: SIGKILLed relay processes, a rebalance between two live instances,
 * and resuming from the ledger rather than from the group's offsets. The three scenarios run
 * concurrently (own topics, groups and ledger schemas): group joins against the mock take
 * seconds of waiting, not of work.
 */

const CHILD = fileURLToPath(new URL('./relay-child.ts', import.meta.url));
/** Source logs (info and up) of the in-process instances, printed when a test fails. */
const logLines: string[] = [];
const logger = process.env.KAFKA_TEST_LOG
  ? createLogger({ level: process.env.KAFKA_TEST_LOG, destination: pino.destination(2) })
  : createLogger({ level: 'info', destination: { write: (line: string) => void logLines.push(line) } });

let kafka: MockKafka;
let db: TestDatabase;
let producer: Producer;

beforeAll(async () => {
  [kafka, db] = await Promise.all([startMockKafka(), createTestDatabase('kafka')]);
  producer = await createTestProducer(kafka.brokers);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  for (const schema of ['relay_rebalance', 'relay_resume', 'relay_fail']) await migrate(client, schema);
  await client.end();
});

/** Relay processes still alive when a test ends (it failed). */
const children = new Set<ChildProcess>();

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await producer?.disconnect();
  await kafka?.stop();
  await db?.drop();
});

interface Relay {
  child: ChildProcess;
  exited: Promise<number | string | null>;
  stderr: string[];
}

/** The relay (src/app.ts, Kafka source only) as its own process. */
function startRelay(config: object, env: Record<string, string> = {}): Relay {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, ...env, RELAY_TEST_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const stderr: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  children.add(child);
  void exited.then(() => children.delete(child));
  return { child, exited, stderr };
}

/** One relay instance in this process: its own consumer and ingest over a shared ledger; records what it hands over. */
function startInstance(name: string, kafkaConfig: KafkaSourceConfig, ledger: Ledger, classifier: Classifier, sink: Sink, onTestFinished: (fn: OnTestFinishedHandler) => void) {
  const source: KafkaSource = createKafkaSource(kafkaConfig, { logger: logger.child({ instance: name }), loadCheckpoints: () => ledger.loadCheckpoints('kafka') });
  const ingest = createIngest({ sourceId: 'kafka', ledger, classifier, sinks: [sink] });
  const handed: string[] = [];
  const stop = new AbortController();
  const done = (async () => {
    await source.run(
      async (batch) => {
        await ingest(batch);
        for (const c of batch.changes) handed.push(c.position);
        for (const b of batch.bad) handed.push(`${b.stream}@${b.position}`);
        source.acknowledge(batch.checkpoints);
      },
      await ledger.loadCheckpoints('kafka'),
      stop.signal,
    );
  })();
  done.catch(() => {});
  // A failed test must not leave a member in the group.
  onTestFinished(async ({ task }) => {
    if (task.result?.state === 'fail') console.error(`${name}: health ${JSON.stringify(source.health())}, assigned ${source.assigned().join(' ')}\n${logLines.filter((l) => l.includes(`"instance":"${name}"`)).slice(-60).join('')}`);
    stop.abort();
    await done.catch(() => {});
  });
  return { name, source, handed, stop, done };
}

describe.concurrent('Kafka source, exactly once', () => {
  it('SIGKILL at random points: every event, parked record and checkpoint is in the ledger once', async ({ expect }) => {
    const seed = Number(process.env.KAFKA_CRASH_SEED ?? Date.now() % 1_000_000);
    const random = prng(seed);
    const topics = topicNames('crash');
    const plan = new Plan(topics, { orders: 180, visits: 120, waves: 12 });
    const config = relayConfig({ dbUrl: db.url, schema: 'relay_crash', brokers: kafka.brokers, topics, groupId: 'relay-crash' });
    const state = () => ledgerState(db.pool, 'relay_crash');
    const progress = (s: LedgerState) => s.events.length + s.parked.length + [...s.checkpoints.values()].reduce((n, p) => n + Number(p), 0);
    const kills: string[] = [];
    let midStreamKills = 0;

    // The first wave exists before anyone consumes: the topics are created by producing.
    await plan.produceNext(producer);
    for (let run = 0; run < 4; run++) {
      const before = progress(await state());
      const startedAt = Date.now();
      // One instance dies by its own hand right after a ledger commit, before Kafka hears of it.
      const failpoint = run === 1 ? { ORDER_RELAY_FAILPOINTS: `ingest.after-commit=${2 + Math.floor(random() * 4)}` } : undefined;
      const relay = startRelay(config, failpoint);
      try {
        // Keep producing while this instance consumes, so the kill lands mid-stream.
        const producing = (async () => {
          for (let w = 0; w < 2 && !plan.done; w++) await plan.produceNext(producer);
        })();
        await waitFor(`run ${run} to make progress`, state, (s) => progress(s) > before, 20_000, () => relay.stderr.join(''));
        const progressAt = Date.now();
        await producing;
        let how: string;
        if (failpoint) {
          const exit = await Promise.race([relay.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
          expect(exit).toBe('SIGKILL');
          how = 'killed itself after a ledger commit, before acknowledging';
        } else {
          const delay = Math.floor(random() * 250);
          await new Promise((r) => setTimeout(r, delay)); // a random kill point, not a synchronisation
          relay.child.kill('SIGKILL');
          await relay.exited;
          how = `SIGKILL ${delay} ms after its first commit`;
        }
        const midStream = !complete(await state(), plan.expected);
        if (midStream) midStreamKills++;
        kills.push(`run ${run}: joined and committed after ${progressAt - startedAt} ms, ${how}${midStream ? ', mid-stream' : ', idle'}`);
      } finally {
        relay.child.kill('SIGKILL');
      }
    }

    // A last instance runs to the end and stops gracefully.
    const last = startRelay(config);
    try {
      while (!plan.done) await plan.produceNext(producer);
      const final = await waitFor(
        'the ledger to hold everything',
        state,
        (s) => complete(s, plan.expected),
        30_000,
        (s) => `seed ${seed}; ${s.events.length}/${plan.expected.events.size} events; checkpoints ${JSON.stringify([...s.checkpoints])} vs ${JSON.stringify([...plan.expected.ends])}\n${last.stderr.join('')}`,
      );
      last.child.kill('SIGTERM');
      expect(await last.exited).toBe(0);

      const msg = `seed ${seed}; ${kills.join('; ')}`;
      expect(midStreamKills, msg).toBeGreaterThan(0);
      expect(final.duplicateEvents, msg).toBe(0);
      expect(new Set(final.events), msg).toEqual(plan.expected.events);
      expect(final.deliveries, msg).toBe(plan.expected.events.size);
      expect(final.checkpoints, msg).toEqual(plan.expected.ends);
      // Each bad record parked once: a replay after a kill must not park it again.
      expect(final.parked.length, msg).toBe(plan.expected.parked.size);
      expect(new Set(final.parked), msg).toEqual(plan.expected.parked);

      // Kafka's own group offsets caught up with the ledger (lag tools), after the ledger.
      const admin = new Kafka({ clientId: 'test-admin', brokers: kafka.brokers, logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      try {
        const committed = new Map<string, string>();
        for (const t of await admin.fetchOffsets({ groupId: 'relay-crash', topics: Object.values(topics) })) {
          for (const p of t.partitions) if (plan.expected.ends.has(`${t.topic}/${p.partition}`)) committed.set(`${t.topic}/${p.partition}`, p.offset);
        }
        expect(committed, msg).toEqual(plan.expected.ends);
      } finally {
        await admin.disconnect();
      }
      console.log(
        `kafka crash test: seed ${seed}; ${plan.expected.handed.size} records, ${plan.expected.events.size} events, ${plan.expected.parked.size} parked; ${kills.join('; ')}`,
      );
    } finally {
      last.child.kill('SIGKILL');
    }
  }, 120_000);

  it('two instances in one group, a rebalance in the middle (B joins while A consumes, then A leaves): nothing lost or repeated', async ({ expect, onTestFinished }) => {
    const topics = topicNames('group');
    const plan = new Plan(topics, { orders: 240, visits: 120, waves: 30 });
    const config = configSchema.parse(relayConfig({ dbUrl: db.url, schema: 'relay_rebalance', brokers: kafka.brokers, topics, groupId: 'relay-rebalance' }));
    const ledger = createLedger(db.pool, 'relay_rebalance');
    const classifier = createClassifier(config);
    const sink = acceptingSink();

    const instance = (name: string) => startInstance(name, config.kafka!, ledger, classifier, sink, onTestFinished);
    /** Produces waves up to `upTo`, paced so that records keep arriving while the group changes. */
    const produceUpTo = async (upTo: number) => {
      while (!plan.done && plan.produced < upTo) {
        await plan.produceNext(producer);
        await new Promise((r) => setTimeout(r, 100)); // pacing, not synchronisation
      }
    };
    const handedOf = (i: { handed: string[] }) => () => Promise.resolve(i.handed.length);

    await plan.produceNext(producer); // creates the topics
    const a = instance('A');
    const phase1 = produceUpTo(8);
    await waitFor('A to consume', handedOf(a), (n) => n > 0, 20_000);
    const aAlone = a.source.assigned().length;

    const b = instance('B');
    await phase1;
    await waitFor('B to get partitions', () => Promise.resolve([a.source.assigned().length, b.source.assigned().length]), ([na, nb]) => nb! > 0 && na! < aAlone, 20_000);
    const split = { a: a.source.assigned(), b: b.source.assigned() };
    const phase2 = produceUpTo(18);
    await waitFor('B to consume', handedOf(b), (n) => n > 0, 20_000);
    await phase2;

    a.stop.abort();
    await a.done;
    await waitFor('B to take every partition', () => Promise.resolve(b.source.assigned().length), (n) => n === aAlone, 20_000);
    await produceUpTo(plan.waves.length);

    const final = await waitFor('the ledger to hold everything', () => ledgerState(db.pool, 'relay_rebalance'), (s) => complete(s, plan.expected), 30_000, (s) =>
      `${s.events.length}/${plan.expected.events.size} events; ${JSON.stringify([...s.checkpoints])}`,
    );
    b.stop.abort();
    await b.done;

    expect(aAlone).toBe(12); // 3 topics × 4 partitions
    // At most 12: a member that failed mid-join (the mock sometimes answers a SyncGroup with
    // INVALID_REQUEST under load; the source then starts a new consumer) holds its share until
    // its session times out.
    expect(split.a.length + split.b.length).toBeLessThanOrEqual(12);
    expect(split.a.filter((s) => split.b.includes(s))).toEqual([]);

    // Every record went to the ledger exactly once, across both instances.
    const all = [...a.handed, ...b.handed];
    const dupes = all.filter((p, i) => all.indexOf(p) !== i);
    expect(dupes).toEqual([]);
    expect(new Set(all)).toEqual(plan.expected.handed);
    // Partitions did move with records on both sides of the move.
    const streamsOf = (h: string[]) => new Set(h.map((p) => p.slice(0, p.lastIndexOf('@'))));
    const sa = streamsOf(a.handed);
    const moved = [...streamsOf(b.handed)].filter((s) => sa.has(s));
    expect(moved.length).toBeGreaterThan(0);

    expect(final.duplicateEvents).toBe(0);
    expect(new Set(final.events)).toEqual(plan.expected.events);
    expect(final.checkpoints).toEqual(plan.expected.ends);
    expect(final.parked.length).toBe(plan.expected.parked.size);
    expect(new Set(final.parked)).toEqual(plan.expected.parked);
    expect(a.source.health().connected).toBe(false);

    const admin = new Kafka({ clientId: 'test-admin', brokers: kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const committed = new Map<string, string>();
      for (const t of await admin.fetchOffsets({ groupId: 'relay-rebalance', topics: Object.values(topics) })) {
        for (const p of t.partitions) if (plan.expected.ends.has(`${t.topic}/${p.partition}`)) committed.set(`${t.topic}/${p.partition}`, p.offset);
      }
      expect(committed).toEqual(plan.expected.ends);
    } finally {
      await admin.disconnect();
    }
    console.log(
      `kafka group test: ${all.length} records handed over (A ${a.handed.length}, B ${b.handed.length}), ${plan.expected.events.size} events, ${plan.expected.parked.size} parked; moved with data: ${moved.length} partitions`,
    );
  }, 120_000);

  it('the ledger, not the group, decides where a partition resumes', async ({ expect, onTestFinished }) => {
    const topics = topicNames('resume');
    const plan = new Plan(topics, { orders: 24, visits: 12, waves: 2 });
    const config = configSchema.parse(relayConfig({ dbUrl: db.url, schema: 'relay_resume', brokers: kafka.brokers, topics, groupId: 'relay-resume' }));
    const ledger = createLedger(db.pool, 'relay_resume');
    const classifier = createClassifier(config);
    const sink = acceptingSink();
    const state = () => ledgerState(db.pool, 'relay_resume');
    const settled = (s: Awaited<ReturnType<typeof state>>) => complete(s, plan.expected);
    while (!plan.done) await plan.produceNext(producer);

    const first = startInstance('first', config.kafka!, ledger, classifier, sink, onTestFinished);
    await waitFor('the first group to consume everything', state, settled, 30_000);
    first.stop.abort();
    await first.done;
    expect(new Set(first.handed)).toEqual(plan.expected.handed);

    // A new group has no Kafka offsets at all (it would start from the beginning), but the
    // ledger has positions: nothing is handed over again. A sentinel per partition shows
    // the new consumer is past the old records (a partition is read in order).
    const fresh = startInstance('fresh', { ...config.kafka!, groupId: 'relay-resume-fresh' }, ledger, classifier, sink, onTestFinished);
    const sentinels = new Set<string>();
    for (const topic of Object.values(topics)) {
      const landed = await produce(producer, topic, Array.from({ length: PARTITIONS }, (_, partition) => ({ partition, value: 'sentinel', raw: true })));
      for (const l of landed) {
        sentinels.add(`${topic}/${l.partition}@${l.offset}`);
        plan.expected.ends.set(`${topic}/${l.partition}`, (BigInt(l.offset) + 1n).toString());
      }
    }
    await waitFor('the sentinels', () => Promise.resolve(fresh.handed.length), (n) => n >= sentinels.size, 30_000);
    await waitFor('their checkpoints', state, settled, 30_000);
    fresh.stop.abort();
    await fresh.done;
    expect(new Set(fresh.handed)).toEqual(sentinels);
    expect(fresh.handed.length).toBe(sentinels.size);

    // A ledger behind the group (restored from a backup): the consumer seeks back to it.
    const stream = `${topics.debezium}/1`;
    const end = BigInt(plan.expected.ends.get(stream)!);
    await db.pool.query(`UPDATE relay_resume.checkpoints SET position = $2 WHERE source = 'kafka' AND stream = $1`, [stream, String(end - 5n)]);
    const eventsBefore = (await state()).events.length;
    const restored = startInstance('restored', { ...config.kafka!, groupId: 'relay-resume-fresh' }, ledger, classifier, sink, onTestFinished);
    await waitFor('the replay', () => Promise.resolve(restored.handed.length), (n) => n >= 5, 30_000);
    await waitFor('the checkpoint', state, settled, 30_000);
    restored.stop.abort();
    await restored.done;
    expect(restored.handed).toEqual([1n, 2n, 3n, 4n, 5n].map((k) => `${stream}@${end - 6n + k}`));
    expect((await state()).events.length).toBe(eventsBefore); // same ids: nothing new
  }, 120_000);

  it('a pipeline failure ends run() with that error, commits nothing, and the next run starts at the same record', async ({ expect, onTestFinished }) => {
    const topics = topicNames('fail');
    const config = configSchema.parse(relayConfig({ dbUrl: db.url, schema: 'relay_fail', brokers: kafka.brokers, topics, groupId: 'relay-fail' }));
    const ledger = createLedger(db.pool, 'relay_fail');
    const classifier = createClassifier(config);
    const rows = [1, 2, 3].map((i) => ({ partition: 0, value: { order_no: `F-${i}`, status: 'PAID', buyer_phone: '13800000000' } }));
    await produce(producer, topics.json, rows);

    const source = createKafkaSource(config.kafka!, { logger, loadCheckpoints: () => ledger.loadCheckpoints('kafka') });
    const down = new Error('ledger is down');
    const seen: string[] = [];
    let connectedWhileConsuming = false;
    const stop = new AbortController();
    onTestFinished(() => stop.abort());
    await expect(
      source.run(
        async (batch) => {
          connectedWhileConsuming = source.health().connected;
          seen.push(...batch.changes.map((c) => c.position));
          throw down;
        },
        [],
        stop.signal,
      ),
    ).rejects.toBe(down);
    expect(connectedWhileConsuming).toBe(true);
    expect(seen[0]).toBe(`${topics.json}/0@0`);
    expect(source.health()).toMatchObject({ connected: false, lastError: 'ledger is down' });

    const admin = new Kafka({ clientId: 'test-admin', brokers: kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const [offsets] = await admin.fetchOffsets({ groupId: 'relay-fail', topics: [topics.json] });
      expect(offsets!.partitions.find((p) => p.partition === 0)!.offset).toBe('-1'); // nothing committed
    } finally {
      await admin.disconnect();
    }

    const again = startInstance('again', config.kafka!, ledger, classifier, acceptingSink(), onTestFinished);
    await waitFor('the records again', () => Promise.resolve(again.handed.length), (n) => n >= 3, 30_000);
    expect(again.handed).toEqual([0, 1, 2].map((o) => `${topics.json}/0@${o}`));
  }, 120_000);
});
