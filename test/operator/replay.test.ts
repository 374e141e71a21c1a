import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { matchParked, replayDeliveries, reprocessInputs, skipDeliveries } from '../../src/cli/replay.js';
import type { Config } from '../../src/config/schema.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { id, operatorConfig, startSims, tradeEvent } from './helpers.js';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let config: Config;
let ledger: Ledger;
let schema: string;

beforeAll(async () => {
  db = await createTestDatabase('replay');
  await createOrderTables(db.pool);
  sims = await startSims();
  config = operatorConfig(db.url, sims).config;
  schema = config.ledger.schema;
  const c = await db.pool.connect();
  await migrate(c, schema);
  c.release();
  ledger = createLedger(db.pool, schema);
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

type Row = { event_id: string; sink: string; status: string; attempts: number; id: string };
async function deliveries(): Promise<Map<string, Row>> {
  const { rows } = await db.pool.query<Row>(`SELECT event_id, sink, status, attempts, id::text FROM ${schema}.deliveries`);
  return new Map(rows.map((r) => [`${r.sink}:${r.event_id}`, r]));
}

/**
 * Fresh deliveries: P1/TS, P2/TC and P3/RS(R1) parked at both sinks; P1/TC pending behind
 * P1/TS at antchain.
 */
beforeEach(async () => {
  await db.pool.query(`TRUNCATE ${schema}.events, ${schema}.deliveries, ${schema}.attempts, ${schema}.parked_inputs, ${schema}.orders`);
  const ev = (e: ReturnType<typeof tradeEvent>, sinks: string[]) => ({ event: e, sinks, position: '0/1', committedAt: new Date().toISOString() });
  await ledger.append({
    source: 'postgres',
    events: [
      ev(tradeEvent('P1', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('P2', 'TRADE_CONFIRM'), ['antchain', 'zhima']),
      ev(tradeEvent('P3', 'REFUND_SUCCESS', 'R1'), ['antchain', 'zhima']),
    ],
    orders: [],
    bad: [],
    checkpoints: [],
  });
  for (const sink of ['antchain', 'zhima']) {
    const claimed = await ledger.claim(sink, 10, 60_000);
    await ledger.settle(
      claimed.map((c) => ({ eventId: c.eventId, sink, deliveryId: c.id, attempt: c.attempt, status: 'rejected' as const, outcome: 'rejected', code: 'INVALID_PARAMETER', message: 'bad' })),
    );
  }
  await ledger.append({ source: 'postgres', events: [ev(tradeEvent('P1', 'TRADE_CONFIRM'), ['antchain'])], orders: [], bad: [], checkpoints: [] });
});

describe('replay of parked deliveries', () => {
  it('by event id re-queues that event at every sink, same delivery row (same idempotency key), attempts kept', async () => {
    const before = await deliveries();
    const n = await replayDeliveries(db.pool, schema, { eventIds: [id('P1', 'TRADE_SUCCESS')] });
    expect(n).toBe(2);
    const after = await deliveries();
    for (const sink of ['antchain', 'zhima']) {
      const k = `${sink}:${id('P1', 'TRADE_SUCCESS')}`;
      expect(after.get(k)).toMatchObject({ status: 'pending', attempts: 1, id: before.get(k)!.id });
    }
    expect([...after.values()].filter((d) => d.status === 'rejected')).toHaveLength(4);
    // It is claimable again, with the same event id the sinks turn into request_id / out_biz_no.
    const claimed = await ledger.claim('zhima', 10, 60_000);
    expect(claimed.map((c) => c.eventId)).toEqual([id('P1', 'TRADE_SUCCESS')]);
  });

  it('by sink', async () => {
    expect(await replayDeliveries(db.pool, schema, { sink: 'zhima' })).toBe(3);
    const after = await deliveries();
    expect([...after.values()].filter((d) => d.status === 'rejected').map((d) => d.sink)).toEqual(['antchain', 'antchain', 'antchain']);
  });

  it('by code', async () => {
    expect(await replayDeliveries(db.pool, schema, { code: 'REFUND_SUCCESS' })).toBe(2);
    const after = await deliveries();
    expect(after.get(`antchain:${id('P3', 'REFUND_SUCCESS', 'R1')}`)!.status).toBe('pending');
    expect(after.get(`zhima:${id('P3', 'REFUND_SUCCESS', 'R1')}`)!.status).toBe('pending');
    expect(after.get(`zhima:${id('P2', 'TRADE_CONFIRM')}`)!.status).toBe('rejected');
  });

  it('all, and filters combine', async () => {
    expect(await replayDeliveries(db.pool, schema, { sink: 'antchain', code: 'TRADE_CONFIRM' })).toBe(1);
    expect(await replayDeliveries(db.pool, schema, { all: true })).toBe(5);
    expect([...(await deliveries()).values()].every((d) => d.status === 'pending')).toBe(true);
  });

  it('refuses to run without a filter, and a dry run changes nothing', async () => {
    await expect(replayDeliveries(db.pool, schema, {})).rejects.toThrow(/--event <id>, --sink <name>, --code <EVENT_CODE>, or --all/);
    const matched = await matchParked(db.pool, schema, { all: true });
    expect(matched).toHaveLength(6);
    expect([...(await deliveries()).values()].filter((d) => d.status === 'rejected')).toHaveLength(6);
  });

  it('--skip marks parked deliveries skipped, and the order behind them flows on', async () => {
    // P1/TC waits behind the parked P1/TS at antchain.
    expect((await ledger.claim('antchain', 10, 60_000)).map((c) => c.eventId)).toEqual([]);
    expect(await skipDeliveries(db.pool, schema, { eventIds: [id('P1', 'TRADE_SUCCESS')], sink: 'antchain' })).toBe(1);
    const after = await deliveries();
    expect(after.get(`antchain:${id('P1', 'TRADE_SUCCESS')}`)!.status).toBe('skipped');
    expect(after.get(`zhima:${id('P1', 'TRADE_SUCCESS')}`)!.status).toBe('rejected');
    expect((await ledger.claim('antchain', 10, 60_000)).map((c) => c.eventId)).toEqual([id('P1', 'TRADE_CONFIRM')]);
    // A skipped delivery can be brought back explicitly.
    expect(await replayDeliveries(db.pool, schema, { eventIds: [id('P1', 'TRADE_SUCCESS')], sink: 'antchain' })).toBe(0);
    expect(await replayDeliveries(db.pool, schema, { eventIds: [id('P1', 'TRADE_SUCCESS')], sink: 'antchain' }, { includeSkipped: true })).toBe(1);
  });
});

describe('replay --inputs: re-processing parked source input', () => {
  it('re-reads the rows parked input names, ingests their current state once, and leaves what it cannot re-read', async () => {
    await db.pool.query(`TRUNCATE public.refunds, public.orders`);
    await db.pool.query(
      `INSERT INTO orders (order_no, status, buyer_phone, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
       VALUES ('Q1', 'PAID', '13800138001', 'm1', 7, 'C', 'S', '1-1', '2026-12-01 19:30:00', 1, 40, 40),
              ('Q2', 'USED', '13800138002', 'm1', 7, 'C', 'S', '1-2', '2026-12-01 19:30:00', 1, 40, 40)`,
    );
    await db.pool.query(`INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count) VALUES ('QR1', 'Q1', 'SUCCESS', 10, 1)`);
    // The stream already knows Q2 as PAID: re-processing must not roll that row back or forward.
    await db.pool.query(`INSERT INTO ${schema}.orders (order_no, row) VALUES ('Q2', '{"order_no":"Q2","status":"PAID","stream":true}')`);
    const change = (table: string, after: Record<string, unknown> | null) => JSON.stringify({ table, op: 'insert', after, before: null, position: '0/9', committedAt: new Date().toISOString() });
    const park = async (raw: string, reason: string) =>
      (await db.pool.query<{ id: string }>(`INSERT INTO ${schema}.parked_inputs (source, stream, position, reason, raw) VALUES ('postgres', 'public.orders', '0/9', $1, $2) RETURNING id::text`, [reason, raw])).rows[0]!.id;
    const refund = await park(change('public.refunds', { refund_id: 'QR1', order_no: 'Q1', status: 'SUCCESS' }), 'order Q1 unknown');
    const order = await park(change('public.orders', { order_no: 'Q2', status: 'USED' }), 'cannot classify: bug');
    const garbage = await park('not json at all', 'undecodable');
    const noKey = await park(change('public.orders', { order_no: null, status: 'PAID' }), 'order number missing');
    const gone = await park(change('public.orders', { order_no: 'Q9', status: 'PAID' }), 'cannot classify: bug');

    const run = () => reprocessInputs(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const outcomes = await run();
    const byId = new Map(outcomes.map((o) => [o.id, o]));
    expect(byId.get(refund)).toMatchObject({ result: 'resolved', newEvents: 2 });
    expect(byId.get(order)).toMatchObject({ result: 'resolved', newEvents: 2 });
    expect(byId.get(garbage)).toMatchObject({ result: 'left', detail: expect.stringMatching(/not a decoded row change/) });
    expect(byId.get(noKey)).toMatchObject({ result: 'left', detail: expect.stringMatching(/no order_no: nothing to re-read/) });
    expect(byId.get(gone)).toMatchObject({ result: 'left', detail: expect.stringMatching(/no row with order_no = Q9/) });

    const { rows: events } = await db.pool.query<{ id: string }>(`SELECT id FROM ${schema}.events WHERE order_no IN ('Q1', 'Q2') ORDER BY id`);
    expect(events.map((e) => e.id)).toEqual(
      [id('Q1', 'TRADE_SUCCESS'), id('Q1', 'REFUND_SUCCESS', 'QR1'), id('Q2', 'TRADE_SUCCESS'), id('Q2', 'TRADE_CONFIRM')].sort(),
    );
    const { rows: known } = await db.pool.query<{ row: { stream?: boolean } }>(`SELECT row FROM ${schema}.orders WHERE order_no = 'Q2'`);
    expect(known[0]!.row.stream).toBe(true);
    const { rows: open } = await db.pool.query<{ id: string }>(`SELECT id::text FROM ${schema}.parked_inputs WHERE resolved_at IS NULL ORDER BY id`);
    expect(open.map((r) => r.id)).toEqual([garbage, noKey, gone]);

    // Again: nothing new, nothing duplicated. Then dismiss one explicitly.
    expect((await run()).every((o) => o.result === 'left')).toBe(true);
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.events WHERE order_no IN ('Q1', 'Q2')`)).rows[0].n).toBe(4);
    expect(await reprocessInputs(config, { ids: [garbage], dismiss: true, logger: silentLogger(), env: { ...process.env, ...sims.env } })).toEqual([
      { id: garbage, result: 'dismissed', detail: 'marked resolved without re-processing' },
    ]);
  });
});
