import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { eventId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, startSimulators, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

const PROJECT = 'demo-cinema';
const id = (order: string, code: string, refund?: string) => eventId(refund ? [PROJECT, order, code, refund] : [PROJECT, order, code]);

let db: TestDatabase;
let sims: Simulators;

beforeAll(async () => {
  db = await createTestDatabase('e2e');
  await createOrderTables(db.pool);
  sims = await startSimulators();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

function order(no: string, status: string, alipay: string | null = null): string {
  return `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
          VALUES ('${no}', '${status}', '138001380${no.slice(-2)}', ${alipay ? `'${alipay}'` : 'NULL'}, '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`;
}

async function drained(schema = 'order_relay'): Promise<boolean> {
  const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.delivery_states WHERE status = 'pending'`);
  return rows[0].n === 0;
}

describe('Postgres → ledger → both gateways', () => {
  it('turns inserts, transitions, partial refunds and flapping into exactly the expected effects', async () => {
    const { config } = writeConfig(testConfig(db.url, sims), sims.env);
    const app = createApp(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const stop = new AbortController();
    const running = app.run(stop.signal);
    await waitFor(async () => (await db.pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'slot');

    await db.pool.query(order('A01', 'CREATED', '2088000000000001'));
    await db.pool.query(`UPDATE orders SET status = 'PAID' WHERE order_no = 'A01'`);
    await db.pool.query(order('B02', 'PAID'));
    await db.pool.query(`UPDATE orders SET status = 'USED' WHERE order_no = 'B02'`);
    await db.pool.query(`BEGIN; ${order('C03', 'PAID', '2088000000000003')}; INSERT INTO refunds VALUES ('R1', 'C03', 'SUCCESS', 40.00, 1); INSERT INTO refunds VALUES ('R2', 'C03', 'PENDING', 40.00, 1); COMMIT`);
    await db.pool.query(`UPDATE refunds SET status = 'SUCCESS' WHERE refund_id = 'R2'`);
    // Flapping: PAID → CREATED → PAID must not yield a second TRADE_SUCCESS.
    await db.pool.query(order('D04', 'PAID'));
    await db.pool.query(`UPDATE orders SET status = 'CREATED' WHERE order_no = 'D04'`);
    await db.pool.query(`UPDATE orders SET status = 'PAID', notes = 'x' WHERE order_no = 'D04'`);
    // First seen already refunded: its TRADE_SUCCESS is still sent first.
    await db.pool.query(`BEGIN; ${order('E05', 'REFUNDED', '2088000000000005')}; INSERT INTO refunds VALUES ('R5', 'E05', 'SUCCESS', 80.00, 2); COMMIT`);
    // A status without rules and a non-business update: nothing.
    await db.pool.query(order('F06', 'CREATED'));
    await db.pool.query(`UPDATE orders SET notes = 'seat change' WHERE order_no = 'A01'`);

    const withAlipay = [
      id('A01', 'TRADE_SUCCESS'),
      id('C03', 'TRADE_SUCCESS'), id('C03', 'REFUND_SUCCESS', 'R1'), id('C03', 'REFUND_SUCCESS', 'R2'),
      id('E05', 'TRADE_SUCCESS'), id('E05', 'REFUND_SUCCESS', 'R5'),
    ].sort();
    const expected = [...withAlipay, id('B02', 'TRADE_SUCCESS'), id('B02', 'TRADE_CONFIRM'), id('D04', 'TRADE_SUCCESS')].sort();

    await waitFor(() => sims.antchain.stats().effects >= expected.length && sims.zhima.stats().effects >= withAlipay.length, 'effects at both gateways');
    await waitFor(() => drained(), 'no pending deliveries');

    const { rows: events } = await db.pool.query<{ id: string }>('SELECT id FROM order_relay.events ORDER BY id');
    expect(events.map((e) => e.id)).toEqual(expected);
    expect([...sims.antchain.stats().effectKeys].sort()).toEqual(expected);
    expect([...sims.zhima.stats().effectKeys].sort()).toEqual(withAlipay);
    expect(sims.antchain.stats().violations).toEqual([]);
    const { rows: statuses } = await db.pool.query<{ sink: string; status: string; n: number }>(
      `SELECT sink, status, count(*)::int AS n FROM order_relay.delivery_states GROUP BY 1, 2 ORDER BY 1, 2`,
    );
    expect(statuses).toEqual([
      { sink: 'antchain', status: 'delivered', n: 9 },
      { sink: 'zhima', status: 'delivered', n: 6 },
      { sink: 'zhima', status: 'not_applicable', n: 3 },
    ]);
    // The slot never runs ahead of the ledger.
    const { rows: pos } = await db.pool.query(
      `SELECT s.confirmed_flush_lsn <= c.position::pg_lsn + 1 AS ok FROM pg_replication_slots s, order_relay.checkpoints c WHERE s.slot_name = $1`,
      [config.source!.slot],
    );
    expect(pos[0].ok).toBe(true);

    stop.abort();
    await running;
  });

  it('gives exactly one effect per event under 5xx, business retries, hangs, drops after commit and bad signatures', async () => {
    const faulty = await startSimulators();
    faulty.antchain.setFaults({ http5xxRate: 0.15, needRetryRate: 0.1, failedNeedRetryRate: 0.1, hangRate: 0.05, dropAfterCommitRate: 0.15, latencyMs: 2, jitterMs: 5 });
    faulty.zhima.setFaults({ http5xxRate: 0.15, code20000Rate: 0.1, hangRate: 0.05, dropAfterCommitRate: 0.15, corruptSignatureRate: 0.1 });
    const raw = testConfig(db.url, faulty, {
      ledger: { schema: 'ledger_faults' },
      sinks: { antchain: { timeout: '300ms' }, zhima: { timeout: '300ms' } },
      dispatcher: { leaseMargin: '200ms' },
    });
    const { config } = writeConfig(raw, faulty.env);
    const app = createApp(config, { logger: silentLogger(), env: { ...process.env, ...faulty.env } });
    const stop = new AbortController();
    const running = app.run(stop.signal);
    await waitFor(async () => (await db.pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'slot');

    const expectedAntchain: string[] = [];
    const expectedZhima: string[] = [];
    for (let i = 0; i < 40; i++) {
      const no = `F${String(i).padStart(3, '0')}`;
      await db.pool.query(order(no, 'PAID', `20880000000${String(i).padStart(5, '0')}`));
      const ids = [id(no, 'TRADE_SUCCESS')];
      if (i % 3 === 0) {
        await db.pool.query(`UPDATE orders SET status = 'USED' WHERE order_no = '${no}'`);
        ids.push(id(no, 'TRADE_CONFIRM'));
      } else if (i % 3 === 1) {
        await db.pool.query(`INSERT INTO refunds VALUES ('${no}-r', '${no}', 'SUCCESS', 10.00, 1)`);
        ids.push(id(no, 'REFUND_SUCCESS', `${no}-r`));
      }
      expectedAntchain.push(...ids);
      expectedZhima.push(...ids);
    }

    await waitFor(async () => (await drained('ledger_faults')) && faulty.antchain.stats().effects >= expectedAntchain.length, 'all deliveries settled', 60_000);
    const a = faulty.antchain.stats();
    const z = faulty.zhima.stats();
    expect([...a.effectKeys].sort()).toEqual(expectedAntchain.sort());
    expect([...z.effectKeys].sort()).toEqual(expectedZhima.sort());
    expect(a.violations).toEqual([]);
    // The faults really happened, and ambiguous ones came back as duplicates, not effects.
    expect(a.faultsInjected.dropAfterCommit + z.faultsInjected.dropAfterCommit).toBeGreaterThan(0);
    expect(a.duplicates + z.duplicates).toBeGreaterThan(0);
    const { rows } = await db.pool.query(`SELECT status, count(*)::int AS n FROM ledger_faults.delivery_states GROUP BY 1`);
    expect(rows).toEqual([{ status: 'delivered', n: expectedAntchain.length + expectedZhima.length }]);
    // Every delivery is on record with the per-request id of the attempt that delivered it,
    // and the failed attempts before it with theirs.
    const { rows: out } = await db.pool.query(`SELECT count(*)::int AS n, count(request_id)::int AS with_id FROM ledger_faults.outcomes`);
    expect(out[0].with_id).toBe(out[0].n);
    const { rows: att } = await db.pool.query(`SELECT count(*)::int AS n, count(request_id)::int AS with_id, count(*) FILTER (WHERE outcome <> 'delivered')::int AS failed FROM ledger_faults.attempts`);
    expect(att[0].failed).toBeGreaterThan(0);
    expect(att[0].with_id).toBe(att[0].n);

    stop.abort();
    await running;
    await faulty.close();
  });
});
