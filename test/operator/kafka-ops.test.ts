import type { Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor } from '../../src/cli/doctor.js';
import { collectStatus, renderStatus } from '../../src/cli/status.js';
import { freePort } from '../../src/sandbox/postgres.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createTestProducer, startMockKafka, type MockKafka } from '../helpers/kafka.js';
import { operatorConfig, seedLedger, startSims } from './helpers.js';

let kafka: MockKafka;
let db: TestDatabase;
let producer: Producer;
let sims: Awaited<ReturnType<typeof startSims>>;

beforeAll(async () => {
  [kafka, db, sims] = await Promise.all([startMockKafka(), createTestDatabase('kafka_ops'), startSims()]);
  producer = await createTestProducer(kafka.brokers);
  // 50 records on partition 0, 10 on partition 1 of "orders"; the ledger stores 41 and 7.
  const records = (n: number, partition: number) => Array.from({ length: n }, (_, i) => ({ partition, value: JSON.stringify({ order_no: `K${partition}-${i}`, status: 'PAID' }) }));
  await producer.send({ topic: 'orders', acks: -1, messages: [...records(50, 0), ...records(10, 1)] });
  await seedLedger(db.pool, 'order_relay');
});

afterAll(async () => {
  await producer?.disconnect();
  await kafka?.stop();
  await sims?.close();
  await db?.drop();
});

const kafkaSection = (brokers: string[], topics: string[]) => ({
  kafka: { kind: 'kafka', brokers, connectionTimeout: '1s', topics: topics.map((topic) => ({ topic, format: 'json', table: 'public.orders' })) },
});

describe('operator commands with a Kafka source', () => {
  it('status shows per partition the stored offset, the end offset and the lag', async () => {
    const { config } = operatorConfig(db.url, sims, kafkaSection(kafka.brokers, ['orders']));
    const r = await collectStatus(config);
    const k = r.sources.find((s) => s.id === 'kafka');
    expect(k).toMatchObject({ kind: 'kafka', connected: null });
    if (k?.kind !== 'kafka') throw new Error('no kafka source');
    expect(k.error).toBeUndefined();
    expect(k.partitions.slice(0, 2)).toEqual([
      { topic: 'orders', partition: 0, stored: '41', end: '50', lag: 9 },
      { topic: 'orders', partition: 1, stored: '7', end: '10', lag: 3 },
    ]);
    for (const p of k.partitions.slice(2)) expect(p).toMatchObject({ stored: null, lag: 0 });
    expect(renderStatus(r)).toMatch(/^orders\s+0\s+41\s+50\s+9$/m);
  });

  it('status falls back to the ledger\'s offsets when the brokers are unreachable', async () => {
    const { config } = operatorConfig(db.url, sims, kafkaSection([`127.0.0.1:${await freePort()}`], ['orders']));
    const k = (await collectStatus(config)).sources.find((s) => s.id === 'kafka');
    if (k?.kind !== 'kafka') throw new Error('no kafka source');
    expect(k.error).toMatch(/^brokers: /);
    expect(k.partitions).toEqual([
      { topic: 'orders', partition: 0, stored: '41', end: null, lag: null },
      { topic: 'orders', partition: 1, stored: '7', end: null, lag: null },
    ]);
  });

  it('doctor checks the brokers and the topics', async () => {
    const { config } = operatorConfig(db.url, sims, kafkaSection(kafka.brokers, ['orders', 'not_there']));
    const checks = new Map((await doctor(config, { env: { ...process.env, ...sims.env }, offline: true })).map((c) => [c.name, c]));
    expect(checks.get('kafka brokers')).toMatchObject({ status: 'ok' });
    expect(checks.get('kafka topic orders')).toMatchObject({ status: 'ok', detail: 'exists (json)' });
    expect(checks.get('kafka topic not_there')).toMatchObject({ status: 'fail', detail: 'does not exist' });

    const { config: down } = operatorConfig(db.url, sims, kafkaSection([`127.0.0.1:${await freePort()}`], ['orders']));
    const d = new Map((await doctor(down, { env: { ...process.env, ...sims.env }, offline: true, timeoutMs: 2_000 })).map((c) => [c.name, c]));
    expect(d.get('kafka brokers')).toMatchObject({ status: 'fail', fix: expect.stringContaining('kafka.brokers') });
  });
});
