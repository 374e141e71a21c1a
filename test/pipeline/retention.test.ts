import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusinessEvent } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import { createLedger, type Ledger, type LogEntry } from '../../src/ledger/ledger.js';
import { startMaintenance, nextRange, rotateEveryMs, rotationDue, maintenanceIntervalMs, type Maintenance } from '../../src/ledger/maintenance.js';
import { PARTITION_WIDTH, SEQ_CEILING } from '../../src/ledger/maintenance-sql.js';
import { migrate } from '../../src/ledger/migrations.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Ledger maintenance (src/ledger/maintenance.ts) on a real PostgreSQL: partitions rotate
 * and are dropped only past the window with every cursor past them, exceptions that are
 * still open stay, a ledger under constant load stops growing, and event ids outlive the
 * payloads they drop repeats of.
 */

const SHARDS = 4;
const P1 = PARTITION_WIDTH; // the first seq of the second partition
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('retention');
});
afterAll(async () => {
  await db?.drop();
});

async function freshLedger(schema: string): Promise<Ledger> {
  const c = await db.pool.connect();
  await migrate(c, schema, { shards: SHARDS });
  c.release();
  return createLedger(db.pool, schema);
}

/** Maintenance driven by the test alone: the run at start is awaited, the timer stopped. */
async function manual(ledger: Ledger, retentionMs: number, idRetentionMs = 10 * retentionMs): Promise<Maintenance> {
  const m = startMaintenance({ pool: db.pool, schema: ledger.schema, lockClass: ledger.lockClass, retentionMs, idRetentionMs, logger: silentLogger() });
  await m.stop();
  return m;
}

const filler = 'x'.repeat(600);
function event(order: string, code: BusinessEvent['code'] = 'TRADE_SUCCESS'): BusinessEvent {
  return { id: eventId(['retention', order, code]), code, kind: 'TRADE', orderKey: order, orderNo: order, occurredAt: new Date().toISOString(), order: { order_no: order, note: filler } };
}

async function append(ledger: Ledger, events: BusinessEvent[], sinks: string[], orders = true) {
  const now = new Date().toISOString();
  return ledger.append({
    source: 'test',
    events: events.map((e) => ({ event: e, sinks, position: '0/1', committedAt: now })),
    orders: orders ? events.map((e) => ({ orderNo: e.orderNo!, row: { order_no: e.orderNo!, status: 'PAID', note: filler } })) : [],
    bad: [],
    checkpoints: [],
  });
}

/** Every cursor of the sink to `seq` (made first when missing). */
async function moveCursors(ledger: Ledger, sink: string, seq: number): Promise<void> {
  await ledger.cursors(sink);
  await ledger.flushLog({ sink, outcomes: [], exceptions: [], attempts: [], cursors: Array.from({ length: SHARDS }, (_, shard) => ({ shard, seq })) });
}

interface PartitionRow { lo: number; hi: number; closed: boolean; dropped: boolean; closedAgoMs: number | null }
async function partitions(schema: string): Promise<PartitionRow[]> {
  const { rows } = await db.pool.query<{ lo: string; hi: string; closed: boolean; dropped: boolean; ago: number | null }>(
    `SELECT lo::text, hi::text, closed_at IS NOT NULL AS closed, dropped_at IS NOT NULL AS dropped,
            (extract(epoch FROM clock_timestamp() - closed_at) * 1000)::float8 AS ago
       FROM ${schema}.log_partitions ORDER BY lo`,
  );
  return rows.map((r) => ({ lo: Number(r.lo), hi: Number(r.hi), closed: r.closed, dropped: r.dropped, closedAgoMs: r.ago }));
}

const exists = async (name: string) => (await db.pool.query<{ t: string | null }>(`SELECT to_regclass($1)::text AS t`, [name])).rows[0]!.t !== null;
const count = async (q: string, params: unknown[] = []) => (await db.pool.query<{ n: number }>(`SELECT (${q})::int AS n`, params)).rows[0]!.n;

async function sequence(schema: string): Promise<{ last: number; called: boolean }> {
  const { rows } = await db.pool.query<{ last: string; called: boolean }>(`SELECT last_value::text AS last, is_called AS called FROM ${schema}.log_seq`);
  return { last: Number(rows[0]!.last), called: rows[0]!.called };
}

/** Sum of pg_total_relation_size over the schema's tables (partitions included; the partitioned parents have no storage). */
async function ledgerBytes(schema: string): Promise<number> {
  const { rows } = await db.pool.query<{ b: string }>(
    `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::text AS b
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')`,
    [schema],
  );
  return Number(rows[0]!.b);
}

describe('rotation timing', () => {
  it('closes a partition every retention / 10 (1 s to 1 day), runs at most every minute, and refuses long before 2^53', () => {
    expect(rotateEveryMs(30 * 86_400_000)).toBe(86_400_000);
    expect(rotateEveryMs(2_000)).toBe(1_000);
    expect(rotateEveryMs(3_600_000)).toBe(360_000);
    expect(maintenanceIntervalMs(30 * 86_400_000)).toBe(60_000);
    expect(maintenanceIntervalMs(2_000)).toBe(1_000);
    const p = { lo: 0, hi: P1, ageMs: 5_000, hasRows: true, lastSeq: 10 };
    expect(rotationDue(p, 1_000)).toBe('age');
    expect(rotationDue({ ...p, hasRows: false }, 1_000)).toBeNull(); // an empty partition is not closed for its age
    expect(rotationDue({ ...p, ageMs: 10 }, 1_000)).toBeNull();
    expect(rotationDue({ ...p, ageMs: 10, hasRows: false, lastSeq: P1 / 2 }, 1_000)).toBe('half used');
    expect(nextRange(P1)).toEqual({ lo: P1, hi: 2 * P1 });
    expect(nextRange(SEQ_CEILING - P1)).toEqual({ lo: SEQ_CEILING - P1, hi: SEQ_CEILING });
    expect(() => nextRange(SEQ_CEILING)).toThrow(/refusing to rotate.*2\^53/);
    expect(SEQ_CEILING).toBeLessThanOrEqual((Number.MAX_SAFE_INTEGER + 1) / 2);
  });
});

describe('rotation and partition drops', () => {
  it('drops a closed partition only once it is past the window and every cursor (of every sink) is past it; open exceptions stay', async () => {
    const retention = 2_000;
    const ledger = await freshLedger('ra');
    const m = await manual(ledger, retention);
    await ledger.cursors('a');
    await ledger.cursors('b');

    // Batch A in log_p0, with exceptions of sink a: one parked, one retrying (due in an
    // hour), one that is delivered later (a finished delivery row with its attempts).
    const a = (await append(ledger, Array.from({ length: 40 }, (_, i) => event(`ra-${i % 10}-${i}`)), ['a', 'b'])).appended.entries;
    expect(a).toHaveLength(40);
    const maxA = a.at(-1)!.seq;
    expect(maxA).toBeLessThan(P1);
    const [parked, retrying, later, skippedAlone, skippedHead, heldBehind] = a as [LogEntry, LogEntry, LogEntry, LogEntry, LogEntry, LogEntry];
    const exceptionOf = (entry: LogEntry, status: 'pending' | 'rejected', delayMs: number) => ({ entry, status, attempts: 1, delayMs, code: 'X', message: 'test' });
    await ledger.flushLog({
      sink: 'a',
      outcomes: a.slice(6).map((e) => ({ seq: e.seq, shard: e.shard, status: 'delivered' as const, attempts: 1 })),
      exceptions: [
        exceptionOf(parked, 'rejected', 0),
        exceptionOf(retrying, 'pending', 3_600_000),
        exceptionOf(later, 'pending', 0),
        exceptionOf(skippedAlone, 'rejected', 0),
        exceptionOf(skippedHead, 'rejected', 0),
        exceptionOf(heldBehind, 'pending', 3_600_000),
      ],
      attempts: [parked, retrying, later].map((e) => ({ seq: e.seq, attempt: 1, outcome: 'retry' })),
      cursors: Array.from({ length: SHARDS }, (_, shard) => ({ shard, seq: maxA })),
    });
    const [claim] = await ledger.claim('a', 10, 60_000);
    expect(claim?.eventId).toBe(later.eventId);
    expect(await ledger.settle([{ eventId: later.eventId, sink: 'a', deliveryId: claim!.id, attempt: claim!.attempt, status: 'delivered', outcome: 'delivered', info: { durationMs: 1 } }])).toBe(1);
    // What `replay --skip` leaves: a skipped delivery, and one held behind another skipped one of its order.
    await db.pool.query(`UPDATE ra.deliveries SET status = 'skipped' WHERE event_id = ANY($1)`, [[skippedAlone.eventId, skippedHead.eventId]]);
    await db.pool.query(`UPDATE ra.deliveries SET status = 'rejected', last_code = 'HELD', order_key = $2 WHERE event_id = $1`, [heldBehind.eventId, skippedHead.orderKey]);

    const rotated = await waitFor(async () => {
      const r = await m.runOnce();
      return r.created.length ? r : null;
    }, 'the first rotation', 10_000);
    expect(rotated.created).toMatchObject([{ lo: P1, hi: 2 * P1, log: 'log_p1', outcomes: 'outcomes_p1', reason: 'age' }]);
    expect(rotated.errors).toEqual([]);
    expect(await exists('ra.log_p1')).toBe(true);
    expect(await exists('ra.outcomes_p1')).toBe(true);
    // The next seq is the new partition's first; last_value is a seq "taken" (is_called), below it.
    expect(await sequence('ra')).toEqual({ last: P1 - 1, called: true });
    expect((await partitions('ra')).map((p) => [p.lo, p.closed])).toEqual([[0, true], [P1, false]]);

    // Every cursor past log_p0, but it closed less than `retention` ago: kept.
    await moveCursors(ledger, 'a', maxA);
    await moveCursors(ledger, 'b', maxA);
    const young = await m.runOnce();
    expect((await partitions('ra'))[0]!.closedAgoMs!).toBeLessThan(retention); // the run above was inside the window
    expect(young.dropped).toEqual([]);
    expect(await exists('ra.log_p0')).toBe(true);

    // The new partition is empty: it stays open past rotateEvery.
    await waitFor(async () => (await count(`SELECT count(*) FROM ra.log_partitions WHERE lo = $1 AND opened_at < clock_timestamp() - interval '1.2 s'`, [P1])) === 1, 'log_p1 older than rotateEvery');
    expect((await m.runOnce()).created).toEqual([]);

    const b = await append(ledger, Array.from({ length: 10 }, (_, i) => event(`rb-${i}`)), ['a', 'b']);
    expect(b.appended.after).toBe(P1 - 1);
    expect(b.appended.entries.map((e) => e.seq)).toEqual(Array.from({ length: 10 }, (_, i) => P1 + i));
    expect(await count(`SELECT count(*) FROM ra.log_p1`)).toBe(10);

    // Past the window. A sink that starts now (cursors at the start), and a sink events were
    // stored for that has no cursors at all: both hold log_p0.
    await waitFor(async () => ((await partitions('ra'))[0]!.closedAgoMs ?? 0) > retention + 100, 'log_p0 closed longer ago than retention');
    await ledger.cursors('c');
    await ledger.sinkBit('d');
    const heldBoth = await m.runOnce();
    expect(heldBoth.dropped.filter((d) => d.lo === 0)).toEqual([]);
    const held0 = heldBoth.held.find((h) => h.lo === 0)!;
    expect(held0.maxSeq).toBe(maxA);
    expect(new Set(held0.behind.map((x) => x.sink))).toEqual(new Set(['c', 'd']));
    expect(held0.behind.filter((x) => x.sink === 'c').map((x) => x.shard).sort()).toEqual([0, 1, 2, 3]);
    expect(await exists('ra.log_p0')).toBe(true);

    await moveCursors(ledger, 'c', maxA);
    // One shard of d one seq short of the highest seq: still held.
    await ledger.cursors('d');
    await ledger.flushLog({ sink: 'd', outcomes: [], exceptions: [], attempts: [], cursors: [0, 1, 2, 3].map((shard) => ({ shard, seq: shard === 2 ? maxA - 1 : maxA })) });
    const heldOne = await m.runOnce();
    expect(heldOne.held.find((h) => h.lo === 0)?.behind).toEqual([{ sink: 'd', shard: 2, seq: maxA - 1 }]);
    expect(await exists('ra.log_p0')).toBe(true);

    await moveCursors(ledger, 'd', maxA);
    const dropped = await m.runOnce();
    expect(dropped.dropped).toMatchObject([{ lo: 0, log: 'log_p0', outcomes: 'outcomes_p0', maxSeq: maxA }]);
    expect(dropped.errors).toEqual([]);
    expect(await exists('ra.log_p0')).toBe(false);
    expect(await exists('ra.outcomes_p0')).toBe(false);
    const rows = await partitions('ra');
    expect(rows[0]).toMatchObject({ lo: 0, closed: true, dropped: true }); // its row stays
    // log_p1 is held by the cursors (batch B is not settled) whatever its age: intact.
    expect(await count(`SELECT count(*) FROM ra.log`)).toBe(10);
    expect((await ledger.readLog('a', 0, 100)).entries.map((e) => e.seq)).toEqual(b.appended.entries.map((e) => e.seq));

    // Exceptions: the delivered one is gone with its attempts (finished longer than
    // `retention` ago), so is the lone skipped one; the parked, the retrying, the held one
    // and the skipped one it is held behind stay, with their payloads, however old.
    await db.pool.query(`UPDATE ra.deliveries SET updated_at = now() - interval '400 days'`);
    await m.runOnce();
    const { rows: left } = await db.pool.query<{ event_id: string; status: string; payload: BusinessEvent }>(`SELECT event_id, status, payload FROM ra.deliveries ORDER BY id`);
    expect(left.map((r) => [r.event_id, r.status])).toEqual([
      [parked.eventId, 'rejected'],
      [retrying.eventId, 'pending'],
      [skippedHead.eventId, 'skipped'],
      [heldBehind.eventId, 'rejected'],
    ]);
    expect(left[0]!.payload).toEqual(parked.event);
    expect(await count(`SELECT count(*) FROM ra.attempts WHERE delivery_id = $1`, [later.seq])).toBe(0);
    expect(await count(`SELECT count(*) FROM ra.attempts WHERE delivery_id = ANY($1::bigint[])`, [[parked.seq, retrying.seq]])).toBe(2);
    // Ready to go out although their log partition is gone: claimed from their own row.
    await db.pool.query(`UPDATE ra.deliveries SET next_attempt_at = now() WHERE event_id = $1`, [retrying.eventId]);
    expect((await ledger.claim('a', 10, 60_000)).map((c) => [c.eventId, c.event])).toEqual([[retrying.eventId, retrying.event]]);
  });

  it('gives up a rotation that waits for the append lock, and rotates on a later run', async () => {
    const ledger = await freshLedger('rl');
    const m = await manual(ledger, 2_000);
    await append(ledger, [event('rl-1')], ['a']);
    await waitFor(async () => (await count(`SELECT count(*) FROM rl.log_partitions WHERE opened_at < clock_timestamp() - interval '1.1 s'`)) === 1, 'log_p0 older than rotateEvery');
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT pg_advisory_xact_lock($1, -1)`, [ledger.lockClass]); // an append in progress
      const started = Date.now();
      const r = await m.runOnce();
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(r.created).toEqual([]);
      expect(r.errors).toMatchObject([{ step: 'rotate', lockTimeout: true }]);
      expect(await exists('rl.log_p1')).toBe(false);
      expect(await sequence('rl')).toMatchObject({ last: 1 }); // untouched
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    expect((await m.runOnce()).created).toMatchObject([{ lo: P1 }]);
  });
});

describe('retention under load', () => {
  it('keeps the ledger from growing: appends in a loop with cursors following, size over two later windows', async () => {
    const schema = 'rs';
    const retention = 2_000;
    const ledger = await freshLedger(schema);
    await ledger.cursors('a');
    const m = startMaintenance({ pool: db.pool, schema, lockClass: ledger.lockClass, retentionMs: retention, idRetentionMs: 3_000, logger: silentLogger() });

    const t0 = Date.now();
    const RUN_MS = 17_000;
    const windows = [[5_000, 9_000], [13_000, 17_000]] as const;
    // A constant load: BATCH events every TICK_MS (about 1,700 a second), paced by the clock
    // so both windows see the same rate (as fast as possible, the rate drifted by 2x).
    const BATCH = 100;
    const TICK_MS = 60;
    const samples: Array<{ t: number; bytes: number; appended: number }> = [];
    let appendedBytes = 0;
    let events = 0;
    let lastSeq = 0;
    let n = 0;
    let stop = false;

    const load = (async () => {
      for (let tick = 1; !stop; tick++) {
        const batch = Array.from({ length: BATCH }, () => event(`rs-${n++}`));
        const r = await append(ledger, batch, ['a']);
        const entries = r.appended.entries;
        expect(entries).toHaveLength(batch.length);
        // Seqs keep rising across rotations (the appends never wait for a partition).
        expect(entries[0]!.seq).toBeGreaterThan(lastSeq);
        lastSeq = entries.at(-1)!.seq;
        events += entries.length;
        appendedBytes += batch.reduce((s, e) => s + 2 * JSON.stringify(e).length, 0); // payload and order row
        await ledger.flushLog({
          sink: 'a',
          outcomes: entries.map((e) => ({ seq: e.seq, shard: e.shard, status: 'delivered' as const, attempts: 1, result: { ok: true } })),
          exceptions: [],
          attempts: [],
          cursors: Array.from({ length: SHARDS }, (_, shard) => ({ shard, seq: lastSeq })),
        });
        const due = t0 + tick * TICK_MS - Date.now();
        if (due > 0) await new Promise((r) => setTimeout(r, due)); // pacing: the next batch's time
      }
    })();
    load.catch(() => {}); // awaited below; a failed append must not be an unhandled rejection meanwhile
    const vacuum = async () => {
      // Autovacuum's part, sped up: it makes the space of deleted order rows and event ids
      // reusable, once a minute by default; the test is shorter than that.
      for (const t of ['orders', 'event_ids', 'deliveries', 'attempts', 'parked_inputs']) await db.pool.query(`VACUUM ${schema}.${t}`);
    };
    try {
      while (Date.now() - t0 < RUN_MS) {
        await vacuum();
        samples.push({ t: Date.now() - t0, bytes: await ledgerBytes(schema), appended: appendedBytes });
        await new Promise((r) => setTimeout(r, 250)); // the sampling period: nothing to await
      }
    } finally {
      stop = true;
      await load;
      await m.stop();
    }

    const inWindow = (w: readonly [number, number]) => samples.filter((s) => s.t >= w[0] && s.t < w[1]);
    const [w1, w2] = windows.map(inWindow) as [typeof samples, typeof samples];
    expect(w1.length).toBeGreaterThan(4);
    expect(w2.length).toBeGreaterThan(4);
    const max1 = Math.max(...w1.map((s) => s.bytes));
    const max2 = Math.max(...w2.map((s) => s.bytes));
    const written = w2.at(-1)!.appended - w1.at(-1)!.appended;
    const parts = await partitions(schema);
    const figures = {
      events, eventsPerSecond: Math.round(events / (RUN_MS / 1000)), targetPerSecond: Math.round((BATCH * 1000) / TICK_MS), partitions: parts.length, dropped: parts.filter((p) => p.dropped).length,
      maxWindow1MB: +(max1 / 2 ** 20).toFixed(1), maxWindow2MB: +(max2 / 2 ** 20).toFixed(1), writtenBetweenMB: +(written / 2 ** 20).toFixed(1),
      finalMB: +(samples.at(-1)!.bytes / 2 ** 20).toFixed(1), eventIds: await count(`SELECT count(*) FROM ${schema}.event_ids`), orders: await count(`SELECT count(*) FROM ${schema}.orders`),
    };
    console.log('retention under load:', JSON.stringify(figures));
    expect(max2).toBeLessThan(max1 * 1.25);
    // And that says something: between the windows more was written (as JSON, less than it
    // takes stored) than the whole ledger held in the first one, so without retention the
    // second window would be at least twice the first.
    expect(written).toBeGreaterThan(max1);
    expect(figures.dropped).toBeGreaterThanOrEqual(5);
    // What is kept is the window and a little: at most a few partitions are still there.
    expect(parts.filter((p) => !p.dropped).length).toBeLessThanOrEqual(6);
    expect(figures.eventIds).toBeLessThan(events / 2);
    expect(figures.orders).toBeLessThan(events / 2);
  });
});

describe('what outlives the payloads', () => {
  it('drops a repeat of an event whose payload was dropped (ids outlive payloads); an order row older than the window is gone', async () => {
    const retention = 2_000;
    const ledger = await freshLedger('rc');
    const m = await manual(ledger, retention, 600_000);
    await ledger.cursors('a');
    const old = event('rc-old');
    const kept = event('rc-kept');
    const first = await append(ledger, [old, kept], ['a']);
    expect(first.inserted).toBe(2);
    await moveCursors(ledger, 'a', first.appended.entries.at(-1)!.seq);

    await waitFor(async () => (await m.runOnce()).dropped.some((d) => d.lo === 0), 'log_p0 dropped', 20_000, 200);
    expect(await count(`SELECT count(*) FROM rc.log`)).toBe(0);
    expect(await count(`SELECT count(*) FROM rc.event_ids WHERE id = decode($1, 'hex')`, [old.id])).toBe(1);

    // rc-kept changes now (its row is upserted again); rc-old has not changed for longer than the window.
    await ledger.append({ source: 'test', events: [], orders: [{ orderNo: 'rc-kept', row: { order_no: 'rc-kept', status: 'USED' } }], bad: [], checkpoints: [] });
    // (rc-old may have gone in one of the runs above already: it was old enough by then.)
    await m.runOnce();
    expect([...(await ledger.loadOrders(['rc-old', 'rc-kept'])).keys()]).toEqual(['rc-kept']);
    expect(await count(`SELECT count(*) FROM rc.orders`)).toBe(1);

    // The same event again (a backfill of old orders, a replayed stream): a repeat, dropped.
    const again = await append(ledger, [old], ['a'], false);
    expect(again.inserted).toBe(0);
    expect(again.appended.entries).toEqual([]);
    expect(await count(`SELECT count(*) FROM rc.log`)).toBe(0);
    // A new event is stored as usual (the append itself works on the new partition).
    expect((await append(ledger, [event('rc-new')], ['a'], false)).inserted).toBe(1);
  });

  it('forgets the ids of a dropped partition once it closed longer than idRetention ago (and not before)', async () => {
    const ledger = await freshLedger('ri');
    const idRetention = 4_000;
    const m = await manual(ledger, 2_000, idRetention);
    await ledger.cursors('a');
    const e = event('ri-1');
    const first = await append(ledger, [e], ['a'], false);
    await moveCursors(ledger, 'a', first.appended.entries[0]!.seq);
    await waitFor(async () => (await m.runOnce()).dropped.some((d) => d.lo === 0), 'log_p0 dropped', 20_000, 200);
    // Payload gone, id kept: still inside idRetention.
    expect((await partitions('ri'))[0]!.closedAgoMs!).toBeLessThan(idRetention);
    expect(await count(`SELECT count(*) FROM ri.event_ids`)).toBe(1);
    const ids = await waitFor(async () => {
      const r = await m.runOnce();
      return r.deleted.eventIds > 0 ? r : null;
    }, 'the ids of log_p0 deleted', 20_000, 200);
    expect(ids.deleted.eventIds).toBe(1);
    expect((await partitions('ri'))[0]!.closedAgoMs!).toBeGreaterThan(idRetention);
    expect(await count(`SELECT count(*) FROM ri.event_ids`)).toBe(0);
    // Past idRetention the event is new again (the documented limit of ledger.idRetention).
    expect((await append(ledger, [e], ['a'], false)).inserted).toBe(1);
  });
});
