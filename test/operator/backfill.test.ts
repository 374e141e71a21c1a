import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backfill } from '../../src/cli/backfill.js';
import { startConnector, type RunningConnector } from '../../src/cli/connector.js';
import { migrateLedger } from '../../src/app.js';
import type { Config } from '../../src/config/schema.js';
import type { BusinessEvent, Row } from '../../src/core/events.js';
import { createLedger } from '../../src/ledger/ledger.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';
import { id, operatorConfig, startSims } from './helpers.js';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;

beforeAll(async () => {
  db = await createTestDatabase('backfill');
  await createOrderTables(db.pool);
  sims = await startSims();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

// The demo config's rules: with its refunds table, refunds come from the refund rows only.
const STATUSES: Record<string, string[]> = { PAID: ['TRADE_SUCCESS'], USED: ['TRADE_SUCCESS', 'TRADE_CONFIRM'], REFUNDED: ['TRADE_SUCCESS'] };

async function insertOrder(no: string, status: string, alipay: boolean): Promise<void> {
  await db.pool.query(
    `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
     VALUES ($1, $2, '13800138000', $3, '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`,
    [no, status, alipay ? '2088000000000001' : null],
  );
}

const setStatus = (no: string, status: string) => db.pool.query(`UPDATE orders SET status = $2 WHERE order_no = $1`, [no, status]);

/** Events the final state of the source tables calls for (the scenario's statuses only move forward). */
async function expectedFromTables(): Promise<{ all: string[]; alipay: string[] }> {
  const { rows: orders } = await db.pool.query<{ order_no: string; status: string; alipay_user_id: string | null }>(
    `SELECT order_no, status, alipay_user_id FROM orders WHERE order_no NOT LIKE 'MARK%'`,
  );
  const { rows: refunds } = await db.pool.query<{ order_no: string; refund_id: string }>(`SELECT order_no, refund_id FROM refunds WHERE status = 'SUCCESS'`);
  const all = new Set<string>();
  const alipay = new Set<string>();
  const withAlipay = new Set(orders.filter((o) => o.alipay_user_id).map((o) => o.order_no));
  const add = (order: string, e: string) => {
    all.add(e);
    if (withAlipay.has(order)) alipay.add(e);
  };
  for (const o of orders) for (const code of STATUSES[o.status] ?? []) add(o.order_no, id(o.order_no, code));
  for (const r of refunds) {
    add(r.order_no, id(r.order_no, 'TRADE_SUCCESS'));
    add(r.order_no, id(r.order_no, 'REFUND_SUCCESS', r.refund_id));
  }
  return { all: [...all].sort(), alipay: [...alipay].sort() };
}

/** Waits until the stream has ingested everything committed so far (a marker row reached the ledger). */
async function caughtUp(connector: RunningConnector): Promise<void> {
  const marker = `MARK${Date.now()}${Math.random().toString(16).slice(2, 6)}`;
  await insertOrder(marker, 'CREATED', false);
  await waitFor(async () => (await connector.app.ledger.loadOrders([marker])).has(marker), 'the stream to reach the marker', 20_000);
}

/** Every (event, sink) settled: none past its sink's cursor without an outcome, no pending delivery row. */
async function drained(schema: string): Promise<boolean> {
  const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.delivery_states WHERE status = 'pending'`);
  return rows[0].n === 0;
}

describe('backfill', () => {
  it('pre-existing orders + live stream, interrupted and resumed: every event exactly once, no transition skipped', async () => {
    // 40 orders (and refunds) that exist before any slot.
    for (let i = 1; i <= 40; i++) {
      const no = `B${String(i).padStart(3, '0')}`;
      const status = ['CREATED', 'PAID', 'USED', 'REFUNDED'][i % 4]!;
      await insertOrder(no, status, i % 2 === 0);
      if (status === 'PAID' && i % 5 === 0) await db.pool.query(`INSERT INTO refunds VALUES ($1, $2, 'SUCCESS', 10.00, 1)`, [`${no}-r1`, no]);
      if (status === 'PAID' && i % 7 === 0) await db.pool.query(`INSERT INTO refunds VALUES ($1, $2, 'PENDING', 10.00, 1)`, [`${no}-r1`, no]);
    }
    const { config } = operatorConfig(db.url, sims, { ledger: { schema: 'ledger_a' } });
    const stop = new AbortController();
    const env = { ...process.env, ...sims.env };
    const connector = await startConnector(config, { logger: silentLogger(), env, signal: stop.signal, listen: 'off', defaultMetrics: false });
    try {
      await waitFor(() => connector.probe.live().sources.every((s) => s.connected), 'the connector to stream');
      // Live changes before the backfill starts.
      await setStatus('B001', 'USED');
      await insertOrder('N001', 'PAID', true);
      await db.pool.query(`INSERT INTO refunds VALUES ('B005-r2', 'B005', 'SUCCESS', 5.00, 1)`);
      await caughtUp(connector);

      // First run: 7 rows a page, interrupted after the third page; live changes between pages,
      // on orders already backfilled (B009) and not yet (B021, B029).
      const interrupt = new AbortController();
      let pages = 0;
      const first = await backfill(config, {
        logger: silentLogger(),
        env,
        batchSize: 7,
        signal: interrupt.signal,
        afterPage: async () => {
          pages++;
          if (pages === 2) {
            await setStatus('B009', 'USED');
            await setStatus('B021', 'USED');
            await setStatus('B029', 'REFUNDED');
            await db.pool.query(`UPDATE refunds SET status = 'SUCCESS' WHERE refund_id = 'B021-r1'`);
            await caughtUp(connector);
          }
          if (pages === 3) interrupt.abort();
        },
      });
      expect(first.interrupted).toBe(true);
      expect(first.slotCreated).toBe(false);
      expect(first.tables[0]).toMatchObject({ table: 'public.orders', rows: 21 });
      const { rows: cursor } = await db.pool.query(`SELECT position FROM ledger_a.checkpoints WHERE source = 'backfill'`);
      expect(JSON.parse(cursor[0].position)).toEqual({ after: 'B021', rows: 21, done: false });

      // Resume: continues after B021, does not start over.
      const counts = (await db.pool.query<{ o: number; r: number }>(`SELECT (SELECT count(*)::int FROM orders) AS o, (SELECT count(*)::int FROM refunds) AS r`)).rows[0]!;
      const second = await backfill(config, { logger: silentLogger(), env, batchSize: 7 });
      expect(second.interrupted).toBe(false);
      expect(second.tables.map((t) => [t.table, t.rows])).toEqual([
        ['public.orders', counts.o - 21],
        ['public.refunds', counts.r],
      ]);

      // After the backfill: a backfilled order's next transition is streamed (its ledger row
      // must not make the stream believe it already saw it), and flapping yields nothing new.
      await setStatus('B013', 'USED'); // backfilled as PAID, never changed before
      await setStatus('B017', 'CREATED');
      await setStatus('B017', 'PAID');
      await caughtUp(connector);
      await waitFor(() => drained('ledger_a'), 'every delivery settled');

      const expected = await expectedFromTables();
      const { rows: events } = await db.pool.query<{ id: string }>(`SELECT id FROM ledger_a.events ORDER BY id`);
      expect(events.map((e) => e.id)).toEqual(expected.all);
      expect(expected.all).toContain(id('B013', 'TRADE_CONFIRM'));
      // Exactly once at the gateways too: every expected event, and nothing sent twice.
      const a = sims.antchain.stats();
      const z = sims.zhima.stats();
      expect([...a.effectKeys].sort()).toEqual(expected.all);
      expect([...z.effectKeys].sort()).toEqual(expected.alipay);
      expect(a.duplicates + z.duplicates).toBe(0);
      expect(a.violations).toEqual([]);
      // Running it again (from scratch) adds nothing.
      const again = await backfill(config, { logger: silentLogger(), env, batchSize: 50, restart: true });
      expect(again.tables.reduce((n, t) => n + t.newEvents, 0)).toBe(0);
    } finally {
      stop.abort();
      await connector.done;
    }
  });

  it('completes a ledger order row that lacks columns, keeping its values, so the order\'s next streamed events carry them', async () => {
    await db.pool.query(`TRUNCATE refunds, orders`);
    sims.antchain.reset();
    sims.zhima.reset();
    await insertOrder('K001', 'USED', true);
    await insertOrder('K002', 'PAID', true);
    const { config } = operatorConfig(db.url, sims, { ledger: { schema: 'ledger_k' } });
    const env = { ...process.env, ...sims.env };
    await migrateLedger(config);
    // As an update with an unchanged-TOAST seat list left them before the source table was
    // read back: the stream saw K001 at PAID, without seat_ids. K002 is complete already.
    const ledger = createLedger(db.pool, 'ledger_k');
    const full = (await db.pool.query<{ row: Row }>(`SELECT to_jsonb(o) AS row FROM orders o WHERE order_no = 'K002'`)).rows[0]!.row;
    await ledger.append({
      source: 'postgres',
      events: [],
      orders: [
        { orderNo: 'K001', row: { order_no: 'K001', status: 'PAID', buyer_phone: '13800138000' } },
        { orderNo: 'K002', row: full },
      ],
      bad: [],
      checkpoints: [],
    });

    const result = await backfill(config, { logger: silentLogger(), env });
    expect(result.tables[0]).toMatchObject({ table: 'public.orders', rows: 2, ordersCompleted: 1 });
    const rows = await ledger.loadOrders(['K001', 'K002']);
    // The missing columns come from the table; the stored ones (status included) stay, so the
    // stream still sees K001's move to USED as the transition it last knew of.
    expect(rows.get('K001')).toMatchObject({ order_no: 'K001', status: 'PAID', seat_ids: '5-6', cinema_name: 'Cinema', ticket_count: 2 });
    expect(rows.get('K002')).toEqual(full);
    // Read again: nothing is missing any more, nothing is touched.
    const again = await backfill(config, { logger: silentLogger(), env, restart: true });
    expect(again.tables[0]!.ordersCompleted).toBe(0);

    // K001's next streamed event is built from the completed row: a refund carries the seats.
    const stop = new AbortController();
    const connector = await startConnector(config, { logger: silentLogger(), env, signal: stop.signal, listen: 'off', defaultMetrics: false });
    try {
      await waitFor(() => connector.probe.live().sources.every((s) => s.connected), 'the connector to stream');
      await db.pool.query(`INSERT INTO refunds VALUES ('K001-r1', 'K001', 'SUCCESS', 10.00, 1)`);
      const refund = await waitFor(
        async () => (await db.pool.query<{ payload: BusinessEvent }>(`SELECT payload FROM ledger_k.events WHERE id = $1`, [id('K001', 'REFUND_SUCCESS', 'K001-r1')])).rows[0],
        'the refund event',
      );
      expect(refund.payload.order).toMatchObject({ status: 'PAID', seat_ids: '5-6' });
      await waitFor(() => drained('ledger_k'), 'every delivery settled');
      const { rows: parked } = await db.pool.query(`SELECT sink, last_message FROM ledger_k.deliveries WHERE status = 'rejected'`);
      expect(parked).toEqual([]);
    } finally {
      stop.abort();
      await connector.done;
    }
  });

  it('before the first run: creates the slot first, so changes made after the backfill are streamed', async () => {
    await db.pool.query(`TRUNCATE refunds, orders`);
    sims.antchain.reset();
    sims.zhima.reset();
    await insertOrder('C001', 'PAID', false);
    await insertOrder('C002', 'USED', false);
    const { config } = operatorConfig(db.url, sims, { ledger: { schema: 'ledger_b' } });
    const result = await backfill(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    expect(result.slotCreated).toBe(true);
    expect(result.tables[0]).toMatchObject({ rows: 2, newEvents: 3 });
    // Changes between the backfill and the first run: the slot holds them.
    await setStatus('C001', 'USED');
    await insertOrder('C003', 'PAID', false);
    const stop = new AbortController();
    const connector = await startConnector(config as Config, { logger: silentLogger(), env: { ...process.env, ...sims.env }, signal: stop.signal, listen: 'off', defaultMetrics: false });
    try {
      await caughtUp(connector);
      const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM ledger_b.events ORDER BY id`);
      expect(rows.map((r) => r.id)).toEqual(
        [id('C001', 'TRADE_SUCCESS'), id('C001', 'TRADE_CONFIRM'), id('C002', 'TRADE_SUCCESS'), id('C002', 'TRADE_CONFIRM'), id('C003', 'TRADE_SUCCESS')].sort(),
      );
    } finally {
      stop.abort();
      await connector.done;
    }
  });
});
