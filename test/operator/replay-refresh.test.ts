import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { renderReplay, replayParked } from '../../src/cli/replay.js';
import type { Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';
import { deliveryOf, id, operatorConfig, startSims } from './helpers.js';

/**
 * The demo's advice, end to end: a row no API accepts is parked; fix the row in the source
 * table and replay. The stream carries the fix to the ledger's order row, but the event's
 * stored payload is what goes out: the replay must re-read it from the fixed row.
 */

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let config: Config;
let stop: AbortController;
let running: Promise<void>;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  db = await createTestDatabase('replay_refresh');
  await createOrderTables(db.pool);
  sims = await startSims();
  config = operatorConfig(db.url, sims).config;
  app = createApp(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
  stop = new AbortController();
  running = app.run(stop.signal);
  await waitFor(async () => (await db.pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'slot');
});

afterAll(async () => {
  stop?.abort();
  await running;
  await sims?.close();
  await db?.drop();
});

const insertOrder = (no: string, phone: string, alipay: string | null) =>
  db.pool.query(
    `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
     VALUES ($1, 'PAID', $2, $3, 'm1', 7, 'C', 'S', '1-1', '2026-12-01 19:30:00', 1, 40, 40)`,
    [no, phone, alipay],
  );

/** The sink's record of the event: its delivery row (an exception), else the outcome its cursor wrote as it passed it. */
const delivery = (sink: string, eventId: string) => deliveryOf(db.pool, 'order_relay', sink, eventId);

const replay = (o: Parameters<typeof replayParked>[1]) => replayParked(config, o, { logger: silentLogger(), env: { ...process.env, ...sims.env } });

describe('replay after a data fix', () => {
  it('re-reads the fixed row: the parked TRADE_SUCCESS goes out fixed under its event id, and the confirm waiting behind it follows, fixed too', async () => {
    const TS = id('F1', 'TRADE_SUCCESS'), TC = id('F1', 'TRADE_CONFIRM');
    await insertOrder('F1', '12345', null); // not a phone number: the AntChain sink refuses it
    await db.pool.query(`UPDATE orders SET status = 'USED' WHERE order_no = 'F1'`);
    await waitFor(async () => (await delivery('antchain', TS))?.status === 'rejected', 'F1 parked at antchain');
    await waitFor(async () => (await delivery('antchain', TC))?.status === 'pending', 'F1 confirm waiting behind it');

    await db.pool.query(`UPDATE orders SET buyer_phone = '13700137000' WHERE order_no = 'F1'`);
    // The stream brings the fix to the ledger's order row; the stored payloads still hold the old phone.
    await waitFor(async () => (await db.pool.query(`SELECT row->>'buyer_phone' AS p FROM order_relay.orders WHERE order_no = 'F1'`)).rows[0]?.p === '13700137000', 'fixed row in the ledger');

    const report = await replay({ sink: 'antchain', code: 'TRADE_SUCCESS' });
    expect(report.deliveries.map((d) => [d.eventId, d.action, d.payload?.result, d.payload?.fields])).toEqual([
      // The purchase was stored when the row said PAID: re-read now, its snapshot says USED too.
      [TS, 're-queued', 'refreshed', ['order.buyer_phone', 'order.status']],
      [TC, 'waiting', 'refreshed', ['order.buyer_phone']],
    ]);
    const text = renderReplay(report);
    expect(text).toMatch(new RegExp(`^antchain\\s+${TS}\\s+TRADE_SUCCESS\\s+F1\\s+parked\\s+re-queued\\s+re-read from source \\(public\\.orders F1\\): fields changed: order\\.buyer_phone, order\\.status$`, 'm'));
    expect(text).toContain('re-queued 1 delivery (sink antchain, code TRADE_SUCCESS), 2 payloads re-read from the source with changes (see PAYLOAD)');

    app.dispatcher.wake();
    await waitFor(async () => (await delivery('antchain', TC))?.status === 'delivered', 'F1 confirm delivered after its purchase');
    expect((await delivery('antchain', TS))?.status).toBe('delivered');
    const effects = sims.antchain.stats().effectList.filter((e) => e.orderNo === 'F1');
    expect(effects.map((e) => [e.requestId, e.code])).toEqual([[TS, 'TRADE_SUCCESS'], [TC, 'TRADE_CONFIRM']]);
    expect(sims.antchain.stats().violations).toEqual([]);
  });

  it('keeps what a sink that delivered the event was sent, and sends the fixed payload to the sink that parked it', async () => {
    const TS = id('F2', 'TRADE_SUCCESS');
    await insertOrder('F2', '13800138002', '2O88-not-an-id'); // AntChain takes it, Zhima refuses the user id
    await waitFor(async () => (await delivery('zhima', TS))?.status === 'rejected', 'F2 parked at zhima');
    await waitFor(async () => (await delivery('antchain', TS))?.status === 'delivered', 'F2 delivered at antchain');
    await db.pool.query(`UPDATE orders SET alipay_user_id = '2088000000000002' WHERE order_no = 'F2'`);

    const report = await replay({ eventIds: [TS] });
    expect(report.deliveries.map((d) => [d.sink, d.action, d.payload?.result, d.payload?.deliveredTo])).toEqual([['zhima', 're-queued', 'refreshed', ['antchain']]]);
    expect(report.deliveries[0]!.payload!.detail).toBe(
      're-read from source (public.orders F2): fields changed: order.alipay_user_id; antchain delivered the stored version and keeps it (sent_payload), not sent again',
    );
    app.dispatcher.wake();
    await waitFor(async () => (await delivery('zhima', TS))?.status === 'delivered', 'F2 delivered at zhima');
    expect(sims.zhima.stats().effectsList.find((e) => e.out_biz_no === TS)).toMatchObject({ user_id: '2088000000000002' });
    // AntChain got the event once, and its delivery still says what it was sent.
    expect(sims.antchain.stats().effectList.filter((e) => e.orderNo === 'F2')).toHaveLength(1);
    const antchain = await delivery('antchain', TS);
    expect(antchain).toMatchObject({ status: 'delivered', result: { sent_payload: { id: TS, order: { alipay_user_id: '2O88-not-an-id' } } } });
  });
});
