import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';
import type { Producer } from 'kafkajs';
import { eventId } from '../../src/core/ids.js';
import { startPostgres, type LocalPostgres } from '../../src/sandbox/postgres.js';
import { createTestProducer, startMockKafka, type MockKafka } from '../helpers/kafka.js';
import { createOrderTables, spawnConnector, startSimulators, testConfig, writeConfig, type Connector, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * `order-relay run` (a real process) while its Postgres restarts, as `pg_ctl restart -m fast`
 * does it: every connection is terminated (57P01), new ones are refused while the server
 * shuts down and starts up (57P03, ECONNREFUSED). Nothing of that is permanent: the process
 * must keep running, and every event reach each API exactly once.
 */

// This test restarts its server, so it gets one of its own instead of the suite's.
let server: LocalPostgres;
let sims: Simulators;
let kafka: MockKafka;
let producer: Producer;

beforeAll(async () => {
  [server, sims, kafka] = await Promise.all([startPostgres({ preferSystem: true }), startSimulators(), startMockKafka()]);
  producer = await createTestProducer(kafka.brokers);
});
afterAll(async () => {
  await producer?.disconnect();
  await kafka?.stop();
  await sims?.close();
  await server?.stop();
});

const RESTARTS = 5;
const TOPIC = 'restart-orders-json';

/** Rejects as soon as the connector exits: every wait below races it. */
function exitOf(connector: Connector): Promise<never> {
  const p = connector.exited.then(({ code, signal }): never => {
    throw new Error(`order-relay run exited (code ${code}, signal ${signal}) before the test stopped it:\n${connector.output().slice(-4000)}`);
  });
  p.catch(() => {});
  return p;
}

function orderRow(no: string): Record<string, unknown> {
  return {
    order_no: no, status: 'PAID', buyer_phone: '13800138000', alipay_user_id: '2088000000000042', movie_id: 'm', cinema_id: 1, cinema_name: 'C',
    schedule_id: 'S', seat_ids: '1', show_start: '2026-12-01 10:00:00', ticket_count: 1, original_amount: '10.00', paid_amount: '9.00',
  };
}

describe('order-relay run through Postgres restarts (pg_ctl restart -m fast)', () => {
  it('keeps running through repeated restarts while both sources write, and delivers every event exactly once', async ({ onTestFailed }) => {
    const pool = new pg.Pool({ connectionString: server.url, max: 2 });
    pool.on('error', () => {}); // its idle clients die with each restart
    await createOrderTables(pool);
    // The topic exists before the group subscribes (the mock creates topics on first produce).
    await producer.send({ topic: TOPIC, acks: -1, messages: [{ key: 'k0', value: JSON.stringify(orderRow('k0')) }] });
    const kafkaSource = {
      kind: 'kafka', brokers: kafka.brokers, groupId: 'restart', sessionTimeout: '3s', heartbeatInterval: '500ms', rebalanceTimeout: '3s', maxWait: '100ms',
      maxBatchRecords: 5, topics: [{ topic: TOPIC, format: 'json', table: 'public.orders' }],
    };
    // Small batches: many ledger appends, so a restart meets one in flight.
    const { path, config } = writeConfig(testConfig(server.url, sims, { source: { maxBatchChanges: 5 }, kafka: kafkaSource }), sims.env);
    const connector = spawnConnector(path, sims.env);
    onTestFailed(() => console.error(`order-relay run's output (last 8000 characters):\n${connector.output().slice(-8000)}`));
    const died = exitOf(connector);
    const until = <T>(check: () => Promise<T> | T, what: string, timeoutMs = 60_000) => Promise.race([waitFor(check, what, timeoutMs), died]);
    await until(async () => (await pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'the slot');

    let writing = true;
    let written = 0;
    const delivered = () => sims.antchain.stats().effects;
    /** Paced by delivery: the writers stay a small backlog ahead of the gateways. */
    const paced = () => waitFor(() => !writing || written - delivered() < 40, 'the backlog to shrink', 120_000, 10);
    // Postgres: each order is inserted until it is in (an insert whose commit the restart
    // hid from us is not inserted twice). Kafka: its broker does not restart.
    const kafkaOrders = ['k0'];
    const writers = Promise.all([
      (async () => {
        for (let i = 0; ; i++) {
          await paced();
          if (!writing) return;
          const row = orderRow(`p${i}`);
          const columns = Object.keys(row);
          const insert = `INSERT INTO orders (${columns.join(', ')}) VALUES (${columns.map((_, n) => `$${n + 1}`).join(', ')}) ON CONFLICT (order_no) DO NOTHING`;
          await waitFor(() => pool.query(insert, Object.values(row)).then(() => true), `insert p${i}`, 30_000, 20);
          written++;
        }
      })(),
      (async () => {
        for (let i = 1; ; i++) {
          await paced();
          if (!writing) return;
          await producer.send({ topic: TOPIC, acks: -1, messages: [{ key: `k${i}`, value: JSON.stringify(orderRow(`k${i}`)) }] });
          kafkaOrders.push(`k${i}`);
          written++;
        }
      })(),
    ]);

    try {
      for (let n = 0; n < RESTARTS; n++) {
        // Restart while the connector streams, stores and delivers: after new effects since the last one.
        const seen = delivered();
        await until(() => delivered() > seen + 10, `deliveries before restart ${n + 1}`);
        await Promise.race([server.restart(), died]);
        expect(connector.child.exitCode, connector.output().slice(-4000)).toBeNull();
      }
      const after = delivered();
      await until(() => delivered() > after + 10, 'deliveries after the last restart');
    } finally {
      writing = false;
      await writers;
    }

    const { rows } = await pool.query<{ order_no: string }>('SELECT order_no FROM orders');
    expect(rows.length).toBeGreaterThan(0);
    const expected = [...rows.map((r) => r.order_no), ...kafkaOrders].map((no) => eventId(['demo-cinema', no, 'TRADE_SUCCESS'])).sort();
    await until(() => sims.antchain.stats().effects >= expected.length && sims.zhima.stats().effects >= expected.length, `all ${expected.length} events delivered`);
    const a = sims.antchain.stats();
    const z = sims.zhima.stats();
    // Exactly once: every event took effect once at each API (a resend after a restart is a
    // repeat of a known key, which the gateways answer without a second effect).
    expect([...a.effectKeys].sort()).toEqual(expected);
    expect([...z.effectKeys].sort()).toEqual(expected);
    expect(a.effects).toBe(expected.length);
    expect(z.effects).toBe(expected.length);
    expect(a.violations).toEqual([]);
    expect(z.conflictingDuplicates).toBe(0);
    expect(connector.child.exitCode, connector.output().slice(-4000)).toBeNull();

    connector.child.kill('SIGTERM');
    expect((await connector.exited).code, connector.output().slice(-4000)).toBe(0);
    await pool.end();
  }, 240_000);
});

/** A PostgreSQL ErrorResponse, as a server that cannot take a connection sends it before closing. */
function errorResponse(code: string, message: string): Buffer {
  const fields = Buffer.concat([
    ...[['S', 'FATAL'], ['V', 'FATAL'], ['C', code], ['M', message]].map(([k, v]) => Buffer.from(`${k}${v}\0`)),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0);
  head.writeInt32BE(4 + fields.length, 1);
  return Buffer.concat([head, fields]);
}

/**
 * A TCP front of the real server whose first connections fail as they do while Postgres
 * restarts, one way each (`ways`, in order), after the client's startup packet; every
 * later connection is passed through.
 */
async function flakyFront(port: number, ways: Array<(socket: Socket) => void>): Promise<{ url: string; failed: () => number; close: () => Promise<void> }> {
  let failed = 0;
  const sockets = new Set<Socket>();
  const srv: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const way = ways[failed];
    if (way) {
      failed++;
      client.once('data', () => way(client));
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const address = srv.address();
  if (typeof address !== 'object' || !address) throw new Error('no address');
  return {
    url: `postgres://postgres@127.0.0.1:${address.port}/startup`,
    failed: () => failed,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

describe('order-relay run started while Postgres is restarting', () => {
  it('waits through refused, terminated and "starting up" connections instead of exiting, then streams and delivers', async ({ onTestFailed }) => {
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query('CREATE DATABASE startup');
    await admin.end();
    const url = new URL(server.url);
    url.pathname = '/startup';
    const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
    pool.on('error', () => {});
    await createOrderTables(pool);

    // What `order-relay run` meets first (the migration's connection, retried with backoff
    // from 250 ms): a server closing the socket in the handshake, one starting up, one
    // shutting down, a reset connection, a backend terminated by the shutdown.
    const ways: Array<(socket: Socket) => void> = [
      (s) => s.end(), // "Connection terminated unexpectedly"
      (s) => s.end(errorResponse('57P03', 'the database system is starting up')),
      (s) => s.end(errorResponse('57P03', 'the database system is shutting down')),
      (s) => s.resetAndDestroy(), // ECONNRESET
      (s) => s.end(errorResponse('57P01', 'terminating connection due to administrator command')),
    ];
    const front = await flakyFront(server.port, ways);
    const { path, config } = writeConfig(testConfig(front.url, sims, { ledger: { schema: 'relay_startup' } }), sims.env);
    const connector = spawnConnector(path, sims.env);
    onTestFailed(() => console.error(`order-relay run's output (last 8000 characters):\n${connector.output().slice(-8000)}`));
    const died = exitOf(connector);
    const until = <T>(check: () => Promise<T> | T, what: string, timeoutMs = 60_000) => Promise.race([waitFor(check, what, timeoutMs), died]);
    try {
      await until(async () => (await pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'the slot');
      expect(front.failed()).toBe(ways.length);
      const row = orderRow('s1');
      const columns = Object.keys(row);
      await pool.query(`INSERT INTO orders (${columns.join(', ')}) VALUES (${columns.map((_, n) => `$${n + 1}`).join(', ')})`, Object.values(row));
      const id = eventId(['demo-cinema', 's1', 'TRADE_SUCCESS']);
      await until(() => sims.antchain.stats().effectKeys.includes(id) && sims.zhima.stats().effectKeys.includes(id), 'the event delivered');
      connector.child.kill('SIGTERM');
      expect((await connector.exited).code, connector.output().slice(-4000)).toBe(0);
    } finally {
      connector.child.kill('SIGKILL');
      await front.close();
      await pool.end();
    }
  }, 120_000);
});
