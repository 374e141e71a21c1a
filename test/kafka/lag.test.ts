import type { Producer } from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionLag } from '../../connectors/sources/kafka/index.js';
import { startConnector, type RunningConnector } from '../../src/cli/connector.js';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createTestProducer, produce, startMockKafka, type MockKafka } from '../helpers/kafka.js';
import { ledgerState, relayConfig, topicNames, waitFor } from './fixtures.js';

/**
 * order_relay_kafka_consumer_lag on /metrics, against a real Kafka-protocol broker
 * (librdkafka's mock cluster via kcat) and the suite's Postgres: the connector's ledger is
 * held up (its checkpoints table locked) while records arrive, the gauge shows per partition
 * what is not in the ledger yet, then 0 once the ledger takes them; with the broker gone the
 * last figures stay and their age grows.
 */

const SCHEMA = 'relay_lag';
const TOPIC = 'lag-orders';

let kafka: MockKafka | undefined;
let db: TestDatabase;
let producer: Producer;
let connector: RunningConnector | undefined;
const stop = new AbortController();
/** Debug lines of the lag monitor. */
const lagLog: string[] = [];
const logger = createLogger({
  level: 'debug',
  destination: { write: (line: string) => void (line.includes('"component":"kafka-lag"') && lagLog.push(line)) },
});

beforeAll(async () => {
  [kafka, db] = await Promise.all([startMockKafka(), createTestDatabase('kafka_lag')]);
  producer = await createTestProducer(kafka.brokers);
});

afterAll(async () => {
  stop.abort();
  await connector?.done.catch(() => {});
  await producer?.disconnect().catch(() => {});
  await kafka?.stop();
  await db?.drop();
});

/** Rows whose status no mapping lists: the ledger stores their positions and no events (nothing to deliver). */
const rows = (n: number, partition: number, tag: string) =>
  Array.from({ length: n }, (_, i) => ({ partition, value: { order_no: `${tag}-${partition}-${i}`, status: 'NEW', buyer_phone: '13800000000' } }));

interface Scraped {
  lag: Map<number, number>;
  age?: number;
}

async function scrape(): Promise<Scraped> {
  const text = await (await fetch(`${connector!.admin!.url}/metrics`)).text();
  const lag = new Map<number, number>();
  for (const m of text.matchAll(/^order_relay_kafka_consumer_lag\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (labels.source === 'kafka' && labels.topic === TOPIC) lag.set(Number(labels.partition), Number(m[2]));
  }
  const age = new RegExp(`^order_relay_kafka_lag_age_seconds\\{source="kafka",topic="${TOPIC}"\\} (\\S+)$`, 'm').exec(text);
  return { lag, ...(age ? { age: Number(age[1]) } : {}) };
}

const lagIs = (want: number[]) => (s: Scraped) => want.every((n, p) => s.lag.get(p) === n) && s.lag.size === want.length;
const show = (s: Scraped) => `lag ${JSON.stringify([...s.lag].sort((a, b) => a[0] - b[0]))}, age ${s.age}`;

describe('Kafka consumer lag on /metrics', () => {
  it('per partition: what the ledger does not hold yet, 0 once it does; kept, and ageing, when the broker is gone', async () => {
    // The topic exists before the connector subscribes (the mock creates topics on produce).
    await produce(producer, TOPIC, rows(3, 0, 'first'));
    const base = relayConfig({ dbUrl: db.url, schema: SCHEMA, brokers: kafka!.brokers, topics: topicNames('lag'), groupId: 'relay-lag' });
    const config = configSchema.parse({
      ...base,
      kafka: {
        ...base.kafka,
        // The held-up ledger keeps a batch in flight for a few seconds: no heartbeat meanwhile.
        sessionTimeout: '30s',
        rebalanceTimeout: '30s',
        connectionTimeout: '1s',
        lagInterval: '200ms',
        topics: [{ topic: TOPIC, format: 'json', table: 'public.orders' }],
      },
    });
    connector = await startConnector(config, { logger, signal: stop.signal, listen: '127.0.0.1:0', defaultMetrics: false });

    // Caught up: every partition at 0 (the three without records have nothing to read).
    await waitFor('lag 0 after the first records', scrape, lagIs([0, 0, 0, 0]), 30_000, show);
    await waitFor('the first checkpoint', () => ledgerState(db.pool, SCHEMA), (s) => s.checkpoints.get(`${TOPIC}/0`) === '3', 30_000);

    // Hold the ledger up: its append writes the checkpoints table (a row-exclusive lock,
    // which SHARE refuses); reading them (the lag monitor, start-up) still works.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    let held = true;
    try {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE ${SCHEMA}.checkpoints IN SHARE MODE`);
      await produce(producer, TOPIC, [...rows(5, 0, 'held'), ...rows(2, 1, 'held'), ...rows(7, 3, 'held')]);

      const behind = await waitFor('the lag of the held-up records', scrape, lagIs([5, 2, 0, 7]), 30_000, show);
      expect(behind.age).toBeLessThan(5);
      // Computed from the ledger's positions, not from what the consumer has fetched.
      const state = await ledgerState(db.pool, SCHEMA);
      expect(Object.fromEntries(state.checkpoints)).toEqual({ [`${TOPIC}/0`]: '3' });

      await holder.query('COMMIT');
      held = false;
    } finally {
      if (held) await holder.query('ROLLBACK').catch(() => {});
      await holder.end();
    }

    await waitFor('lag 0 once the ledger took them', scrape, lagIs([0, 0, 0, 0]), 30_000, show);
    const caughtUp = await ledgerState(db.pool, SCHEMA);
    expect(Object.fromEntries(caughtUp.checkpoints)).toEqual({ [`${TOPIC}/0`]: '8', [`${TOPIC}/1`]: '2', [`${TOPIC}/3`]: '7' });

    // The broker goes away: refreshes fail (logged at debug), the last figures stay, their age grows.
    await kafka!.stop();
    kafka = undefined;
    const stale = await waitFor('the figures to age', scrape, (s) => (s.age ?? 0) > 2, 30_000, show);
    expect(lagIs([0, 0, 0, 0])(stale)).toBe(true);
    const failures = lagLog.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => /kafka lag refresh failed/.test(l.msg));
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.every((l) => l.level === 20)).toBe(true); // pino's debug
  }, 120_000);

  it('counts from the partition start when nothing is stored (earliest), from its end when latest; never below what retention deleted', () => {
    const o = (low: string, high: string) => ({ partition: 2, low, high });
    expect(partitionLag('t', o('0', '10'), undefined, 'earliest')).toEqual({ topic: 't', partition: 2, end: '10', position: null, lag: 10 });
    expect(partitionLag('t', o('4', '10'), undefined, 'earliest').lag).toBe(6);
    expect(partitionLag('t', o('4', '10'), undefined, 'latest').lag).toBe(0);
    expect(partitionLag('t', o('0', '10'), 7n, 'latest')).toEqual({ topic: 't', partition: 2, end: '10', position: '7', lag: 3 });
    expect(partitionLag('t', o('8', '10'), 3n, 'earliest').lag).toBe(2); // 3..7 are gone: only 8 and 9 can still be read
    expect(partitionLag('t', o('0', '10'), 12n, 'earliest').lag).toBe(0); // ahead of the end (a recreated topic): 0, not negative
  });
});
