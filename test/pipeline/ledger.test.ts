import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { MIGRATIONS, migrate } from '../../src/ledger/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let ledger: Ledger;

beforeAll(async () => {
  db = await createTestDatabase('ledger');
  const c = await db.pool.connect();
  await migrate(c, 'l');
  c.release();
  ledger = createLedger(db.pool, 'l');
});
afterAll(async () => {
  await db?.drop();
});

const store = (source: string, stream: string, position: string) => ledger.append({ source, events: [], orders: [], bad: [], checkpoints: [{ stream, position }] });
const position = async (source: string, stream: string) => (await ledger.loadCheckpoints(source)).find((c) => c.stream === stream)?.position;

describe('ledger checkpoints', () => {
  it('never move backwards: a late write from an instance that lost its partition or slot is ignored', async () => {
    await store('kafka', 'orders/0', '100');
    await store('kafka', 'orders/0', '40'); // the zombie's late commit
    expect(await position('kafka', 'orders/0')).toBe('100');
    await store('kafka', 'orders/0', '101');
    expect(await position('kafka', 'orders/0')).toBe('101');

    await store('postgres', 'slot', '1/A0');
    await store('postgres', 'slot', '0/FFFFFFFF'); // lower, although longer as text
    expect(await position('postgres', 'slot')).toBe('1/A0');
    await store('postgres', 'slot', '1/A1');
    expect(await position('postgres', 'slot')).toBe('1/A1');
  });

  it('leaves other cursors (backfill) to their owner', async () => {
    await store('backfill', 'public.orders', '{"after":"b","rows":2,"done":false}');
    await store('backfill', 'public.orders', '{"after":"a","rows":1,"done":false}');
    expect(await position('backfill', 'public.orders')).toBe('{"after":"a","rows":1,"done":false}');
  });

  it('migrates once, even when two instances start at the same time', async () => {
    const clients = await Promise.all([db.pool.connect(), db.pool.connect()]);
    const applied = await Promise.all(clients.map((c) => migrate(c, 'l2')));
    clients.forEach((c) => c.release());
    expect(applied.map((a) => a.length).sort()).toEqual([0, MIGRATIONS.length]);
    const { rows } = await db.pool.query('SELECT version FROM l2.schema_migrations ORDER BY version');
    expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version })));
  });
});

describe('ledger outcomes', () => {
  it('record every attempt, keep only the last `attemptHistory`, and drop a stale outcome', async () => {
    const c = await db.pool.connect();
    await migrate(c, 'l3');
    c.release();
    const small = createLedger(db.pool, 'l3', { attemptHistory: 2 });
    const event = { id: 'e1', code: 'TRADE_SUCCESS', kind: 'TRADE', orderKey: 'o1', orderNo: 'o1', occurredAt: '2026-11-21T10:00:00Z', order: { order_no: 'o1', note: 'quote " and \\ backslash, 票' } } as const;
    await small.append({ source: 's', events: [{ event, sinks: ['a'], position: '0/1', committedAt: '2026-11-21T10:00:00Z' }], orders: [], bad: [], checkpoints: [] });
    for (let n = 1; n <= 4; n++) {
      const [claim] = await small.claim('a', 10, 60_000);
      expect(claim?.attempt).toBe(n);
      expect(claim?.event).toEqual(event);
      const last = n === 4;
      const applied = await small.settle([
        {
          eventId: 'e1', sink: 'a', deliveryId: claim!.id, attempt: n,
          status: last ? 'delivered' : 'pending', delayMs: 0, outcome: last ? 'delivered' : 'retry',
          code: last ? '10000' : 'HTTP_503', message: last ? undefined : 'busy "now"',
          result: last ? { event_id: 'E1', note: 'ü "q"' } : undefined,
          info: { requestId: `req${n}`, httpStatus: last ? 200 : 503, durationMs: 1.4 },
        },
      ]);
      expect(applied).toBe(1);
    }
    // Attempt 3's outcome arriving late (its lease had run out) changes nothing.
    expect(await small.settle([{ eventId: 'e1', sink: 'a', deliveryId: '1', attempt: 3, status: 'rejected', outcome: 'rejected' }])).toBe(0);
    const { rows: attempts } = await db.pool.query(`SELECT attempt, outcome, request_id, http_status, duration_ms FROM l3.attempts ORDER BY attempt`);
    expect(attempts).toEqual([
      { attempt: 3, outcome: 'retry', request_id: 'req3', http_status: 503, duration_ms: 1 },
      { attempt: 4, outcome: 'delivered', request_id: 'req4', http_status: 200, duration_ms: 1 },
    ]);
    const { rows: d } = await db.pool.query(`SELECT status, attempts, last_code, result FROM l3.deliveries`);
    expect(d).toEqual([{ status: 'delivered', attempts: 4, last_code: '10000', result: { event_id: 'E1', note: 'ü "q"' } }]);
  });
});

describe('ledger appends that claim', () => {
  it('store a delivery already claimed only when it could be claimed: first of its order, nothing unfinished before it, within the room', async () => {
    const c = await db.pool.connect();
    await migrate(c, 'l4');
    c.release();
    const l = createLedger(db.pool, 'l4');
    const ev = (id: string, order: string, sinks: string[]) => ({
      event: { id, code: 'TRADE_SUCCESS', kind: 'TRADE', orderKey: order, orderNo: order, occurredAt: '2026-11-21T10:00:00Z', order: { order_no: order } } as const,
      sinks,
      position: '0/1',
      committedAt: '2026-11-21T10:00:00Z',
    });
    const first = await l.append({
      source: 's',
      events: [ev('e1', 'A', ['a', 'b']), ev('e2', 'A', ['a']), ev('e3', 'B', ['a'])],
      orders: [],
      bad: [],
      checkpoints: [],
      room: [{ sink: 'a', n: 1, leaseMs: 60_000 }, { sink: 'b', n: 5, leaseMs: 60_000 }],
    });
    // a: e1 (first of A) fills the room of 1; e2 waits behind e1; e3 (B) waits for room.
    expect(first.leased.map((x) => `${x.eventId}/${x.sink}`).sort()).toEqual(['e1/a', 'e1/b']);
    const second = await l.append({
      source: 's',
      events: [ev('e4', 'A', ['b']), ev('e5', 'C', ['b'])],
      orders: [],
      bad: [],
      checkpoints: [],
      room: [{ sink: 'b', n: 5, leaseMs: 60_000 }],
    });
    // A still has e1 unfinished at b: e4 waits; C is free.
    expect(second.leased.map((x) => `${x.eventId}/${x.sink}`)).toEqual(['e5/b']);
    const { rows } = await db.pool.query(`SELECT event_id, sink, attempts, lease_until IS NOT NULL AS leased FROM l4.deliveries ORDER BY id`);
    expect(rows).toEqual([
      { event_id: 'e1', sink: 'a', attempts: 1, leased: true },
      { event_id: 'e1', sink: 'b', attempts: 1, leased: true },
      { event_id: 'e2', sink: 'a', attempts: 0, leased: false },
      { event_id: 'e3', sink: 'a', attempts: 0, leased: false },
      { event_id: 'e4', sink: 'b', attempts: 0, leased: false },
      { event_id: 'e5', sink: 'b', attempts: 1, leased: true },
    ]);
    // A claim takes what was left: e3 at a (e2 waits behind the leased e1), nothing at b.
    expect((await l.claim('a', 10, 60_000)).map((x) => x.eventId)).toEqual(['e3']);
    expect(await l.claim('b', 10, 60_000)).toEqual([]);
    // Without room, an append claims nothing.
    const third = await l.append({ source: 's', events: [ev('e6', 'D', ['a'])], orders: [], bad: [], checkpoints: [] });
    expect(third.leased).toEqual([]);
  });
});
