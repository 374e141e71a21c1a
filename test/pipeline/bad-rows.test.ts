import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { requeueParked } from '../../src/ledger/replay.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { startSimulators, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

let db: TestDatabase;
let sims: Simulators;

beforeAll(async () => {
  db = await createTestDatabase('bad');
  // A table with no constraints, as legacy order tables often are.
  await db.pool.query(`CREATE TABLE lax_orders (id serial PRIMARY KEY, order_no text, status text, buyer_phone text, alipay_user_id text,
    movie_id text, cinema_id int, cinema_name text, schedule_id text, seat_ids text, show_start timestamp, ticket_count int,
    original_amount numeric, paid_amount numeric)`);
  sims = await startSimulators();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

describe('bad rows', () => {
  it('parks a row without an order number and a row no API accepts, and keeps every other order flowing', async () => {
    const raw = testConfig(db.url, sims, { orders: { table: 'public.lax_orders' } });
    delete (raw as { refunds?: unknown }).refunds;
    const { config } = writeConfig(raw, sims.env);
    const app = createApp(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const stop = new AbortController();
    const running = app.run(stop.signal);
    await waitFor(async () => (await db.pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'slot');

    const row = (no: string | null, phone: string) =>
      db.pool.query(`INSERT INTO lax_orders (order_no, status, buyer_phone, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
                     VALUES ($1, 'PAID', $2, 'm1', 1, 'C', 'S', '1', '2026-12-01 10:00:00', 1, 10, 9)`, [no, phone]);
    await row('G1', '13800138000');
    await row(null, '13800138000'); // no order number: parked at ingest
    await row('G2', '12345'); // not a phone number: rejected by the AntChain sink before sending
    await row('G3', '13900139000');
    await db.pool.query(`UPDATE lax_orders SET status = 'USED' WHERE order_no = 'G2'`); // waits behind G2's parked TRADE_SUCCESS

    await waitFor(() => sims.antchain.stats().effects >= 2, 'G1 and G3 delivered');
    await waitFor(async () => (await db.pool.query(`SELECT count(*)::int AS n FROM order_relay.parked_inputs`)).rows[0].n === 1, 'parked input');
    const parked = (await db.pool.query(`SELECT stream, reason, raw FROM order_relay.parked_inputs`)).rows[0];
    expect(parked.stream).toBe('public.lax_orders');
    expect(parked.reason).toBe('public.lax_orders: order number column "order_no" is missing or empty');
    expect(JSON.parse(parked.raw).after.buyer_phone).toBe('13800138000');

    const rejected = await waitFor(async () => (await db.pool.query(
      `SELECT d.last_code, d.last_message FROM order_relay.deliveries d
        WHERE d.sink = 'antchain' AND d.status = 'rejected' AND d.order_no = 'G2'`)).rows[0], 'G2 parked');
    expect(rejected).toEqual({ last_code: 'INVALID_EVENT', last_message: expect.stringContaining('column "buyer_phone"') });
    // G2's TRADE_CONFIRM waits behind its parked TRADE_SUCCESS instead of overtaking it.
    // (The rejection and the confirm behind it may be written by two flushes of the cursor.)
    const g2 = async () =>
      (await db.pool.query<{ code: string; status: string }>(`SELECT d.code, d.status FROM order_relay.deliveries d
        WHERE d.sink = 'antchain' AND d.order_no = 'G2' ORDER BY d.id`)).rows;
    await waitFor(async () => (await g2()).length === 2, 'G2\'s confirm as a row behind it');
    expect(await g2()).toEqual([{ code: 'TRADE_SUCCESS', status: 'rejected' }, { code: 'TRADE_CONFIRM', status: 'pending' }]);
    expect(sims.antchain.stats().effectList.map((e: { orderNo?: string }) => e.orderNo).sort()).toEqual(['G1', 'G3']);

    // Fix the data, replay the parked delivery: it goes out with its original key, then the confirm follows.
    await db.pool.query(`UPDATE order_relay.deliveries SET payload = jsonb_set(payload::jsonb, '{order,buyer_phone}', '"13700137000"')::json WHERE order_no = 'G2'`);
    expect((await requeueParked(app.ledger.pool, 'order_relay', { sink: 'antchain' })).changed).toBe(1);
    app.dispatcher.wake();
    await waitFor(() => sims.antchain.stats().effects === 4, 'G2 trade and confirm after replay');
    expect(sims.antchain.stats().violations).toEqual([]);

    stop.abort();
    await running;
  });
});
