import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FencedError } from '../../src/core/source.js';
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

  it('refuses a Kafka batch whole when the ledger holds another position than its writer read: a zombie\'s late record is not parked twice', async () => {
    const bad = (position: string) => ({ stream: 'pay/3', position, reason: 'not JSON', raw: 'x' });
    const parked = async () => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM l.parked_inputs WHERE stream = 'pay/3'`)).rows[0]!.n;
    // The owner of the partition stores offsets 0..9 (one bad record), then the partition moves.
    await ledger.append({ source: 'kafka', events: [], orders: [], bad: [bad('5')], checkpoints: [{ stream: 'pay/3', position: '10', expected: null }] });
    // The new consumer read 10 from the ledger and stores up to 20.
    await ledger.append({ source: 'kafka', events: [], orders: [], bad: [], checkpoints: [{ stream: 'pay/3', position: '20', expected: '10' }] });
    // The old one wakes with a stale batch (it read nothing stored: offsets 0..9 again).
    const late = ledger.append({ source: 'kafka', events: [], orders: [], bad: [bad('5')], checkpoints: [{ stream: 'pay/3', position: '10', expected: null }] });
    await expect(late).rejects.toBeInstanceOf(FencedError);
    await expect(late).rejects.toThrow(/holds position 20, this writer read \(none\)/);
    expect(await parked()).toBe(1);
    expect(await position('kafka', 'pay/3')).toBe('20');
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

/** Makes the event at `seq` a delivery row of `sink` (as the dispatcher does when it cannot settle it quickly). */
async function toRow(l: Ledger, sink: string, status: 'pending' | 'rejected' = 'pending'): Promise<void> {
  await l.cursors(sink);
  const { entries } = await l.readLog(sink, 0, 100);
  await l.flushLog({
    sink,
    outcomes: [],
    exceptions: entries.map((entry) => ({ entry, status, attempts: 0, delayMs: 0 })),
    attempts: [],
    cursors: entries.map((e) => ({ shard: e.shard, seq: e.seq })),
  });
}

const hexId = (n: number) => n.toString(16).padStart(32, '0');

describe('ledger outcomes of delivery rows', () => {
  it('record every attempt, keep only the last `attemptHistory`, and drop a stale outcome', async () => {
    const c = await db.pool.connect();
    await migrate(c, 'l3');
    c.release();
    const small = createLedger(db.pool, 'l3', { attemptHistory: 2 });
    const event = { id: hexId(1), code: 'TRADE_SUCCESS', kind: 'TRADE', orderKey: 'o1', orderNo: 'o1', occurredAt: '2026-11-21T10:00:00Z', order: { order_no: 'o1', note: 'quote " and \\ backslash, 票' } } as const;
    await small.append({ source: 's', events: [{ event, sinks: ['a'], position: '0/1', committedAt: '2026-11-21T10:00:00Z' }], orders: [], bad: [], checkpoints: [] });
    await toRow(small, 'a');
    let id = '';
    for (let n = 1; n <= 4; n++) {
      const [claim] = await small.claim('a', 10, 60_000);
      expect(claim?.attempt).toBe(n);
      expect(claim?.event).toEqual(event);
      id = claim!.id;
      const last = n === 4;
      const applied = await small.settle([
        {
          eventId: event.id, sink: 'a', deliveryId: claim!.id, attempt: n,
          status: last ? 'delivered' : 'pending', delayMs: 0, outcome: last ? 'delivered' : 'retry',
          code: last ? '10000' : 'HTTP_503', message: last ? undefined : 'busy "now"',
          result: last ? { event_id: 'E1', note: 'ü "q"' } : undefined,
          info: { requestId: `req${n}`, httpStatus: last ? 200 : 503, durationMs: 1.4 },
        },
      ]);
      expect(applied).toBe(1);
    }
    // Attempt 3's outcome arriving late (its lease had run out) changes nothing.
    expect(await small.settle([{ eventId: event.id, sink: 'a', deliveryId: id, attempt: 3, status: 'rejected', outcome: 'rejected' }])).toBe(0);
    const { rows: attempts } = await db.pool.query(`SELECT sink, attempt, outcome, request_id, http_status, duration_ms FROM l3.attempts ORDER BY attempt`);
    expect(attempts).toEqual([
      { sink: 'a', attempt: 3, outcome: 'retry', request_id: 'req3', http_status: 503, duration_ms: 1 },
      { sink: 'a', attempt: 4, outcome: 'delivered', request_id: 'req4', http_status: 200, duration_ms: 1 },
    ]);
    const { rows: d } = await db.pool.query(`SELECT status, attempts, last_code, result FROM l3.deliveries`);
    expect(d).toEqual([{ status: 'delivered', attempts: 4, last_code: '10000', result: { event_id: 'E1', note: 'ü "q"' } }]);
  });
});

describe('ledger appends', () => {
  const ev = (n: number, order: string, sinks: string[]) => ({
    event: { id: hexId(n), code: 'TRADE_SUCCESS', kind: 'TRADE', orderKey: order, orderNo: order, occurredAt: '2026-11-21T10:00:00Z', order: { order_no: order } } as const,
    sinks,
    position: '0/1',
    committedAt: '2026-11-21T10:00:00Z',
  });

  it('number new events in order, drop repeats by id, and say which wait behind an open delivery row of their order', async () => {
    const c = await db.pool.connect();
    await migrate(c, 'l4');
    c.release();
    const l = createLedger(db.pool, 'l4');
    const first = await l.append({ source: 's', events: [ev(1, 'A', ['a', 'b']), ev(2, 'A', ['a']), ev(3, 'B', ['a'])], orders: [], bad: [], checkpoints: [], handOver: ['a', 'b'] });
    expect(first.inserted).toBe(3);
    expect(first.deliveries).toEqual({ a: 3, b: 1 });
    expect(first.appended.after).toBe(0);
    expect(first.appended.entries.map((e) => [e.eventId, e.seq, [...e.blocked]])).toEqual([
      [hexId(1), 1, []],
      [hexId(2), 2, []],
      [hexId(3), 3, []],
    ]);
    // Order A gets a parked row at a: its next event waits there, not at b; repeats are dropped (their seqs are a gap).
    await l.cursors('a');
    const { entries } = await l.readLog('a', 0, 1);
    await l.flushLog({ sink: 'a', outcomes: [], exceptions: [{ entry: entries[0]!, status: 'rejected', attempts: 1, delayMs: 0, code: 'BAD' }], attempts: [], cursors: [{ shard: entries[0]!.shard, seq: 1 }] });
    const second = await l.append({ source: 's', events: [ev(1, 'A', ['a', 'b']), ev(4, 'A', ['a', 'b']), ev(5, 'C', ['a'])], orders: [], bad: [], checkpoints: [], handOver: ['a', 'b'] });
    expect(second.inserted).toBe(2);
    expect(second.appended.after).toBe(3);
    expect(second.appended.entries.map((e) => [e.eventId, [...e.blocked]])).toEqual([
      [hexId(4), ['a']],
      [hexId(5), []],
    ]);
    expect(second.appended.entries[0]!.seq).toBeGreaterThan(3);
    // A read shows the same: in seq order, with the block, only the sink's events.
    const read = await l.readLog('b', 0, 10);
    expect(read.entries.map((e) => [e.eventId, e.blocked.has('b')])).toEqual([[hexId(1), false], [hexId(4), false]]);
    const readA = await l.readLog('a', 1, 10);
    expect(readA.entries.map((e) => [e.eventId, e.blocked.has('a')])).toEqual([[hexId(2), true], [hexId(3), false], [hexId(4), true], [hexId(5), false]]);
    expect(readA.horizon).toBe(second.appended.entries.at(-1)!.seq);
    // Without a hand-over the append looks nothing up.
    const third = await l.append({ source: 's', events: [ev(6, 'A', ['a'])], orders: [], bad: [], checkpoints: [] });
    expect(third.appended.entries[0]!.blocked.size).toBe(0);
    expect(third.handOver).toEqual([]);
  });

  it('write a flush sent again after it committed (its answer lost) once', async () => {
    const c = await db.pool.connect();
    await migrate(c, 'l6');
    c.release();
    const l = createLedger(db.pool, 'l6');
    await l.append({ source: 's', events: [ev(7, 'A', ['a'])], orders: [], bad: [], checkpoints: [] });
    await l.cursors('a');
    const [e] = (await l.readLog('a', 0, 10)).entries;
    const flush = { sink: 'a', outcomes: [{ seq: e!.seq, shard: e!.shard, status: 'delivered' as const, attempts: 1, result: { event_id: 'E7' } }], exceptions: [], attempts: [], cursors: [{ shard: e!.shard, seq: e!.seq }] };
    await l.flushLog(flush);
    await l.flushLog(flush);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM l6.outcomes`);
    expect(rows[0].n).toBe(1);
  });

  it('refuses to change the shard count of an existing ledger only through the config check: the stored count decides', async () => {
    const c = await db.pool.connect();
    await migrate(c, 'l5', { shards: 3 });
    await migrate(c, 'l5', { shards: 7 });
    c.release();
    const l = createLedger(db.pool, 'l5');
    expect(await l.cursors('a')).toEqual([0, 0, 0]);
    const r = await l.append({ source: 's', events: Array.from({ length: 30 }, (_, i) => ev(100 + i, `o${i}`, ['a'])), orders: [], bad: [], checkpoints: [] });
    expect(new Set(r.appended.entries.map((e) => e.shard))).toEqual(new Set([0, 1, 2]));
  });
});
