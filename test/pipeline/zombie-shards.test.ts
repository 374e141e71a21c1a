import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startPostgres, type LocalPostgres } from '../../src/sandbox/postgres.js';
import { createOrderTables, spawnConnector, startSimulators, testConfig, writeConfig, type Connector, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A connector frozen (SIGSTOP) with an API's answer in hand, past its lease: another instance
 * takes its delivery shards (and the slot), sends what was not recorded again under the same
 * keys and records it; then the frozen one is resumed (SIGCONT). Nothing it writes lands:
 * one outcome per (event, sink), every event one effect at each API.
 */

let server: LocalPostgres;
let sims: Simulators;
let pool: pg.Pool;
const connectors: Connector[] = [];

beforeAll(async () => {
  [server, sims] = await Promise.all([startPostgres({ preferSystem: true, settings: { wal_sender_timeout: '3s' } }), startSimulators()]);
  pool = new pg.Pool({ connectionString: server.url, max: 2 });
  pool.on('error', () => {});
  await createOrderTables(pool);
});
afterAll(async () => {
  for (const c of connectors) {
    c.child.kill('SIGCONT');
    c.child.kill('SIGKILL');
  }
  await Promise.all(connectors.map((c) => c.exited));
  await pool?.end();
  await sims?.close();
  await server?.stop();
});

const insertPaid = (no: string) =>
  pool.query(
    `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
     VALUES ($1, 'PAID', '13800138000', '2088000000000042', 'm', 1, 'C', 'S', '1', '2026-12-01 10:00:00', 1, '10.00', '9.00')`,
    [no],
  );

describe('a frozen deliverer, resumed after another took its shards', () => {
  it('writes nothing: one outcome per event and sink, one effect per event at each API', async ({ onTestFailed }) => {
    const base = testConfig(server.url, sims, { source: { standbyPoll: '200ms', lease: '1s' }, dispatcher: { lease: '1s' }, log: { level: 'info' } });
    const { path } = writeConfig(base, sims.env);
    // A freezes when the first API answer reaches it, before the outcome is recorded.
    const a = spawnConnector(path, { ...sims.env, ORDER_RELAY_FAILPOINTS: 'dispatch.after-send=1:stop' });
    connectors.push(a);
    onTestFailed(() => connectors.forEach((c, i) => console.error(`connector ${i} output:\n${c.output().slice(-6000)}`)));
    const shardHolders = async () =>
      (await pool.query<{ app: string }>(`SELECT DISTINCT a.application_name AS app FROM pg_stat_activity a WHERE a.application_name LIKE 'order-relay-shards %'`)).rows.map((r) => r.app);
    await waitFor(async () => (await shardHolders()).some((x) => x.endsWith(`:${a.child.pid}`)), 'A to hold delivery shards', 60_000);
    await waitFor(async () => (await pool.query(`SELECT 1 FROM pg_replication_slots WHERE active`)).rowCount === 1, 'A to stream the slot', 60_000);
    await insertPaid('F1');
    await waitFor(() => /failpoint dispatch\.after-send: stopping/.test(a.output()), 'A frozen with an answer in hand', 60_000);

    const b = spawnConnector(path, sims.env);
    connectors.push(b);
    await waitFor(() => sims.antchain.stats().effects === 1 && sims.zhima.stats().effects === 1, 'F1 delivered to both APIs', 60_000);
    const outcomes = async () =>
      (await pool.query<{ sink: string; n: number }>(`SELECT sink, count(*)::int AS n FROM order_relay.outcomes GROUP BY sink ORDER BY sink`)).rows.map((r) => `${r.sink}:${r.n}`).join(',');
    await waitFor(async () => (await outcomes()) === 'antchain:1,zhima:1', 'B to record F1\'s outcomes', 60_000);
    // A wakes up with its answer and the shards it no longer holds.
    a.child.kill('SIGCONT');
    await waitFor(() => /lost the connection that holds this instance's shards|another instance took shards of this sink/.test(a.output()), 'A to learn it lost its shards', 30_000);
    expect(await outcomes()).toBe('antchain:1,zhima:1');

    // Both go on (A joins again and gets its share): each new event once.
    for (const no of ['F2', 'F3', 'F4', 'F5']) await insertPaid(no);
    await waitFor(() => sims.antchain.stats().effects === 5 && sims.zhima.stats().effects === 5, 'F2..F5 delivered', 60_000);
    await waitFor(async () => (await outcomes()) === 'antchain:5,zhima:5', 'their outcomes recorded once', 60_000);
    expect(sims.antchain.stats().violations).toEqual([]);
    expect(sims.zhima.stats().conflictingDuplicates).toBe(0);
  }, 240_000);
});
