import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { createClassifier } from '../../src/classify/classifier.js';
import type { BusinessEvent, Row } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import type { Sink } from '../../src/core/sink.js';
import type { SourceBatch, SourceChange } from '../../src/core/source.js';
import { createLedger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { silentLogger } from '../../src/log.js';
import { createIngest } from '../../src/pipeline/ingest.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, startSimulators, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Unchanged TOAST (issue 12). Under REPLICA IDENTITY DEFAULT, an UPDATE that leaves a value
 * stored out of line alone is sent by pgoutput as "unchanged toast": the source reports the
 * column in `unknownColumns` and leaves it out of the row. For an order the ledger never saw
 * (older than the slot) nothing else knows it; without reading the row back, its events lacked
 * the column, the Zhima delivery was parked (`biz_data.seatId: column seat_ids is missing or
 * null`) and the order's later events waited behind it for good.
 */
const PROJECT = 'demo-cinema';
const id = (order: string, code: string) => eventId([PROJECT, order, code]);

let db: TestDatabase;
let sims: Simulators;

beforeAll(async () => {
  db = await createTestDatabase('toast');
  await createOrderTables(db.pool);
  // Out of line and uncompressed: a long seat list of random hex (> 2 kB, incompressible).
  await db.pool.query(`ALTER TABLE orders ALTER COLUMN seat_ids SET STORAGE EXTERNAL`);
  sims = await startSimulators();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

const seats = () => randomBytes(1300).toString('hex'); // 2,600 characters
const insertOrder = (no: string, seatIds: string) =>
  db.pool.query(
    `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
     VALUES ($1, 'PAID', '13800138000', '2088000000000001', '1303902', 7, 'Cinema', 'S1', $2, '2026-12-01 19:30:00', 2, 90.00, 80.00)`,
    [no, seatIds],
  );

describe('unchanged TOAST through the Postgres source', () => {
  it('an order older than the slot, first seen through an update of another column, becomes events with the whole TOASTed column', async () => {
    const longSeats = { T1: seats(), T2: seats() };
    await insertOrder('T1', longSeats.T1);
    await insertOrder('T2', longSeats.T2);
    // The values really are stored out of line.
    const { rows: toast } = await db.pool.query<{ t: string }>(`SELECT reltoastrelid::regclass::text AS t FROM pg_class WHERE oid = 'public.orders'::regclass`);
    const { rows: chunks } = await db.pool.query(`SELECT count(DISTINCT chunk_id)::int AS n FROM ${toast[0]!.t}`);
    expect(chunks[0].n).toBe(2);

    const { config } = writeConfig(testConfig(db.url, sims), sims.env);
    const app = createApp(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    // Record what the source hands over, to see the column arrive as unchanged TOAST.
    const seen: SourceChange[] = [];
    const runner = app.sources[0]!;
    const ingest = runner.ingest;
    runner.ingest = (batch: SourceBatch) => (seen.push(...batch.changes), ingest(batch));
    const stop = new AbortController();
    const running = app.run(stop.signal);
    try {
      await waitFor(() => app.sources.every((s) => s.source.health().connected), 'the source to stream');
      // T2: the ledger already holds a row without the column, as an earlier version left it.
      await app.ledger.append({ source: 'test', events: [], orders: [{ orderNo: 'T2', row: { order_no: 'T2', status: 'PAID' } }], bad: [], checkpoints: [] });

      await db.pool.query(`UPDATE orders SET status = 'USED', updated_at = now() WHERE order_no IN ('T1', 'T2')`);
      const expected = [id('T1', 'TRADE_SUCCESS'), id('T1', 'TRADE_CONFIRM'), id('T2', 'TRADE_SUCCESS'), id('T2', 'TRADE_CONFIRM')].sort();
      // Settled, or a delivery parked (what happened without the read-back; the rest then waits behind it).
      await waitFor(async () => {
        const { rows } = await db.pool.query(`SELECT count(*) FILTER (WHERE status <> 'pending')::int AS settled, count(*) FILTER (WHERE status = 'rejected')::int AS parked FROM order_relay.delivery_states`);
        return rows[0].settled === 8 || rows[0].parked > 0;
      }, 'both events of both orders settled at both sinks');

      const updates = seen.filter((c) => c.op === 'update');
      expect(updates.map((c) => [c.after!.order_no, c.unknownColumns, Object.hasOwn(c.after!, 'seat_ids')])).toEqual([
        ['T1', ['seat_ids'], false],
        ['T2', ['seat_ids'], false],
      ]);
      const { rows: events } = await db.pool.query<{ id: string; payload: BusinessEvent }>(`SELECT id, payload FROM order_relay.events ORDER BY id`);
      expect(events.map((e) => e.id)).toEqual(expected);
      for (const e of events) expect(e.payload.order!.seat_ids, `${e.payload.code} of ${e.payload.orderNo}`).toBe(longSeats[e.payload.orderNo as 'T1' | 'T2']);
      const { rows: orders } = await db.pool.query<{ order_no: string; row: Row }>(`SELECT order_no, row FROM order_relay.orders ORDER BY order_no`);
      expect(orders.map((o) => [o.order_no, o.row.status, o.row.seat_ids])).toEqual([['T1', 'USED', longSeats.T1], ['T2', 'USED', longSeats.T2]]);
      // Delivered at both gateways, the confirm after the purchase; nothing parked.
      const { rows: deliveries } = await db.pool.query(`SELECT sink, status, count(*)::int AS n FROM order_relay.delivery_states GROUP BY 1, 2 ORDER BY 1, 2`);
      expect(deliveries).toEqual([{ sink: 'antchain', status: 'delivered', n: 4 }, { sink: 'zhima', status: 'delivered', n: 4 }]);
      expect([...sims.zhima.stats().effectKeys].sort()).toEqual(expected);
      expect(sims.antchain.stats().violations).toEqual([]);
    } finally {
      stop.abort();
      await running;
    }
  });
});

describe('ingest reads the source table only for unchanged-TOAST columns nobody knows', () => {
  const classifier = createClassifier({
    project: 'p',
    orders: { table: 'public.orders', orderNo: 'order_no', status: 'status', statuses: { PAID: ['TRADE_SUCCESS'], USED: ['TRADE_CONFIRM'] } },
  });
  const sink: Sink = {
    name: 's',
    kind: 's',
    handles: () => true,
    deliver: async () => ({ status: 'delivered', info: { durationMs: 0 } }),
    preview: () => ({ status: 'not_applicable', reason: 'test' }),
    close: async () => {},
  };
  const change = (op: SourceChange['op'], after: Row, unknownColumns?: string[]): SourceChange => ({
    table: 'public.orders', op, after, before: null, position: '0/1', committedAt: '2026-11-21T10:00:00Z', ...(unknownColumns ? { unknownColumns } : {}),
  });

  it('fills from the current row only what neither the ledger nor an earlier change of the batch has, and never takes its status', async () => {
    const schema = 'fill';
    const c = await db.pool.connect();
    await migrate(c, schema);
    c.release();
    const ledger = createLedger(db.pool, schema);
    // The table's current rows: what fetchOrders would read.
    const table: Record<string, Row> = {
      K: { order_no: 'K', status: 'USED', seats: 'table-K', notes: 'table-notes-K' },
      B: { order_no: 'B', status: 'USED', seats: 'table-B' },
      U: { order_no: 'U', status: 'USED', seats: 'table-U', notes: 'table-notes-U' },
      G: { order_no: 'G', status: 'USED' },
    };
    const reads: string[][] = [];
    const fetchOrders = async (nos: string[]) => {
      reads.push([...nos].sort());
      return new Map(nos.filter((n) => table[n]).map((n) => [n, table[n]!] as const));
    };
    const ingest = createIngest({ sourceId: 'postgres', ledger, classifier, sinks: [sink], fetchOrders });
    // K: the ledger has seats but not notes. B: inserted earlier in the same batch, with seats.
    await ledger.append({ source: 'postgres', events: [], orders: [{ orderNo: 'K', row: { order_no: 'K', status: 'PAID', seats: 'ledger-K' } }], bad: [], checkpoints: [] });
    await ingest({ changes: [change('update', { order_no: 'K', status: 'PAID', x: 1 }, ['seats'])], bad: [], checkpoints: [] });
    expect(reads).toEqual([]); // the ledger's row fills it: no read

    await ingest({
      changes: [
        change('insert', { order_no: 'B', status: 'PAID', seats: 'batch-B' }),
        change('update', { order_no: 'B', status: 'USED' }, ['seats']),
        change('update', { order_no: 'K', status: 'USED' }, ['seats', 'notes']),
        change('update', { order_no: 'U', status: 'USED' }, ['seats', 'notes']), // older than the slot, never seen
        change('update', { order_no: 'G', status: 'USED' }, ['seats']), // the table has no such column any more
      ],
      bad: [],
      checkpoints: [{ stream: 'slot', position: '0/10' }],
    });
    expect(reads).toEqual([['G', 'K', 'U']]);
    const { rows } = await db.pool.query<{ order_no: string; row: Row }>(`SELECT order_no, row FROM ${schema}.orders ORDER BY order_no`);
    expect(Object.fromEntries(rows.map((r) => [r.order_no, r.row]))).toEqual({
      B: { order_no: 'B', status: 'USED', seats: 'batch-B' },
      G: { order_no: 'G', status: 'USED' },
      K: { order_no: 'K', status: 'USED', seats: 'ledger-K', notes: 'table-notes-K' },
      U: { order_no: 'U', status: 'USED', seats: 'table-U', notes: 'table-notes-U' },
    });
    // The table's row filled columns but did not stand for what the ledger saw: U's status
    // (USED there too) still counts as a transition.
    const { rows: events } = await db.pool.query<{ order_no: string; code: string; payload: BusinessEvent }>(`SELECT order_no, code, payload FROM ${schema}.events ORDER BY order_no, code`);
    expect(events.map((e) => [e.order_no, e.code])).toEqual([['B', 'TRADE_CONFIRM'], ['B', 'TRADE_SUCCESS'], ['G', 'TRADE_CONFIRM'], ['K', 'TRADE_CONFIRM'], ['U', 'TRADE_CONFIRM']]);
    expect(events.find((e) => e.order_no === 'U')!.payload.order).toEqual({ order_no: 'U', status: 'USED', seats: 'table-U', notes: 'table-notes-U' });
  });
});
