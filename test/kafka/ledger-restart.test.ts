import type { Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKafkaSource } from '../../connectors/sources/kafka/index.js';
import type { Checkpoint } from '../../src/core/source.js';
import { configSchema } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { waitFor } from '../helpers/wait.js';
import { createTestProducer, produce, startMockKafka, type MockKafka } from '../helpers/kafka.js';
import { relayConfig, topicNames } from './fixtures.js';

/**
 * The Kafka source when storing a batch fails because the ledger's Postgres restarts: the
 * records are read again from the ledger's positions, and `run` goes on. (It used to end
 * `run`, and with it `order-relay run`, with "the database system is shutting down".)
 */

let kafka: MockKafka;
let producer: Producer;

beforeAll(async () => {
  kafka = await startMockKafka();
  producer = await createTestProducer(kafka.brokers);
});
afterAll(async () => {
  await producer?.disconnect();
  await kafka?.stop();
});

const serverGone = (code: string | undefined, message: string) => (code ? Object.assign(new Error(message), { code }) : new Error(message));

describe('kafka source: the ledger restarting while a batch is stored', () => {
  it('re-reads from the ledger positions after 57P01, 57P03 and a terminated connection, and keeps running', async () => {
    const topics = topicNames('ledger-restart');
    const config = configSchema.parse(relayConfig({ dbUrl: 'postgres://unused/x', schema: 'unused', brokers: kafka.brokers, topics, groupId: 'ledger-restart' }));
    await produce(producer, topics.json, [1, 2, 3].map((i) => ({ partition: 0, value: { order_no: `L-${i}`, status: 'PAID', buyer_phone: '13800000000' } })));

    // An in-memory ledger: what a handled batch "commits", and the failures a restart causes first.
    const committed = new Map<string, string>();
    const failures = [
      serverGone('57P01', 'terminating connection due to administrator command'),
      serverGone('57P03', 'the database system is shutting down'),
      serverGone(undefined, 'Connection terminated unexpectedly'),
    ];
    const failed: Error[] = [];
    const stored: string[] = [];
    const source = createKafkaSource(config.kafka!, {
      logger: silentLogger(),
      loadCheckpoints: async (): Promise<Checkpoint[]> => [...committed].map(([stream, position]) => ({ stream, position })),
    });
    const stop = new AbortController();
    const running = source.run(
      async (batch) => {
        const failure = failures.shift();
        if (failure) {
          failed.push(failure);
          throw failure;
        }
        stored.push(...batch.changes.map((c) => c.position));
        for (const cp of batch.checkpoints) committed.set(cp.stream, cp.position);
        source.acknowledge(batch.checkpoints);
      },
      [],
      stop.signal,
    );
    let ended: unknown = 'running';
    running.then(() => (ended = 'resolved'), (err: unknown) => (ended = err));

    await waitFor(() => stored.length >= 3 || ended !== 'running', 'the records stored after the failures', 60_000);
    expect(ended).toBe('running');
    expect(failed.map((e) => e.message)).toEqual([
      'terminating connection due to administrator command',
      'the database system is shutting down',
      'Connection terminated unexpectedly',
    ]);
    // Every record once, from the first: nothing was committed by the failed attempts.
    expect(stored).toEqual([0, 1, 2].map((o) => `${topics.json}/0@${o}`));
    stop.abort();
    await running;
  }, 120_000);

  it('still ends run on a failure that is not the server going away', async () => {
    const topics = topicNames('ledger-bug');
    const config = configSchema.parse(relayConfig({ dbUrl: 'postgres://unused/x', schema: 'unused', brokers: kafka.brokers, topics, groupId: 'ledger-bug' }));
    await produce(producer, topics.json, [{ partition: 0, value: { order_no: 'B-1', status: 'PAID', buyer_phone: '13800000000' } }]);
    const bug = Object.assign(new Error('relation "unused.log" does not exist'), { code: '42P01' });
    const source = createKafkaSource(config.kafka!, { logger: silentLogger(), loadCheckpoints: async () => [] });
    const stop = new AbortController();
    try {
      await expect(
        source.run(
          async () => {
            throw bug;
          },
          [],
          stop.signal,
        ),
      ).rejects.toBe(bug);
    } finally {
      stop.abort();
    }
  }, 120_000);
});
