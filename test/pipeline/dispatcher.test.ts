import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusinessEvent, EventCode } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import type { DeliveryOutcome, Sink } from '../../src/core/sink.js';
import { createDispatcher } from '../../src/dispatch/dispatcher.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { deliveryStates, statusCounts } from '../helpers/ledger-state.js';
import { waitFor } from '../helpers/wait.js';

let db: TestDatabase;
let schemaN = 0;

beforeAll(async () => {
  db = await createTestDatabase('disp');
});
afterAll(async () => {
  await db?.drop();
});

async function freshLedger(): Promise<Ledger> {
  const schema = `l${++schemaN}`;
  const c = await db.pool.connect();
  await migrate(c, schema);
  c.release();
  return createLedger(db.pool, schema);
}

function event(order: string, code: EventCode): BusinessEvent {
  return { id: eventId(['t', order, code]), code, kind: 'TRADE', orderKey: order, orderNo: order, occurredAt: new Date().toISOString(), order: { order_no: order } };
}

async function store(ledger: Ledger, events: BusinessEvent[], sink = 'fake'): Promise<void> {
  const now = new Date().toISOString();
  await ledger.append({ source: 'test', events: events.map((e) => ({ event: e, sinks: [sink], position: '0/1', committedAt: now })), orders: [], bad: [], checkpoints: [] });
}

/** A sink whose answer the test decides, recording when each attempt started and ended. */
function fakeSink(answer: (e: BusinessEvent, n: number) => Promise<DeliveryOutcome> | DeliveryOutcome) {
  const log: Array<{ id: string; code: string; start: number; end: number }> = [];
  let calls = 0;
  const sink: Sink = {
    name: 'fake',
    kind: 'fake',
    handles: () => true,
    async deliver(e) {
      const start = performance.now();
      const outcome = await answer(e, ++calls);
      log.push({ id: e.id, code: e.code, start, end: performance.now() });
      return outcome;
    },
    preview: () => ({ status: 'not_applicable', reason: 'test' }),
    close: async () => {},
  };
  return { sink, log, calls: () => calls };
}

const info = { durationMs: 1 };
const policy = { concurrency: 8, timeout: 2_000, retry: { initialBackoff: 20, maxBackoff: 100 } };
const options = { claimBatch: 64, pollInterval: 20, leaseMargin: 500, drainTimeout: 2_000, window: 4096, flushInterval: 10, quickRetries: 2 };

const statuses = (ledger: Ledger) => statusCounts(db.pool, ledger.schema);

describe('dispatcher', () => {
  it('never starts a REFUND or CONFIRM before its order\'s TRADE_SUCCESS was delivered, while other orders run concurrently', async () => {
    const ledger = await freshLedger();
    const orders = Array.from({ length: 30 }, (_, i) => `o${i}`);
    await store(ledger, orders.flatMap((o) => [event(o, 'TRADE_SUCCESS'), event(o, 'REFUND_SUCCESS'), event(o, 'TRADE_CONFIRM')]));
    let inflight = 0;
    let maxInflight = 0;
    const fake = fakeSink(async (e) => {
      maxInflight = Math.max(maxInflight, ++inflight);
      await new Promise((r) => setTimeout(r, e.code === 'TRADE_SUCCESS' ? 15 : 2));
      inflight--;
      return { status: 'delivered', info };
    });
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options, logger: silentLogger() });
    d.start();
    await waitFor(() => fake.log.length === 90, 'all 90 delivered');
    await d.stop();
    for (const o of orders) {
      const mine = fake.log.filter((l) => l.id === eventId(['t', o, 'TRADE_SUCCESS']) || l.id === eventId(['t', o, 'REFUND_SUCCESS']) || l.id === eventId(['t', o, 'TRADE_CONFIRM']));
      const trade = mine.find((l) => l.code === 'TRADE_SUCCESS')!;
      for (const later of mine.filter((l) => l.code !== 'TRADE_SUCCESS')) expect(later.start).toBeGreaterThanOrEqual(trade.end);
    }
    expect(maxInflight).toBeGreaterThan(1);
    expect(maxInflight).toBeLessThanOrEqual(policy.concurrency);
    expect(await statuses(ledger)).toEqual({ delivered: 90 });
  });

  it.each([
    ['in memory (quick retries)', 2, 0],
    ['as a delivery row (no quick retries)', 0, 1],
  ])('retries with backoff under the same event, keeping its history of attempts: %s', async (_name, quickRetries, rows) => {
    const ledger = await freshLedger();
    await store(ledger, [event('r1', 'TRADE_SUCCESS')]);
    const fake = fakeSink((_e, n) => (n < 3 ? { status: 'retry', code: 'HTTP_503', message: 'busy', info: { requestId: `req${n}`, httpStatus: 503, durationMs: 1 } } : { status: 'delivered', info: { requestId: 'req3', durationMs: 1 }, result: { event_id: 'E1' } }));
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options: { ...options, quickRetries }, logger: silentLogger() });
    d.start();
    await waitFor(async () => (await statuses(ledger)).delivered === 1, 'delivered');
    await d.stop();
    const { rows: history } = await db.pool.query(`SELECT attempt, outcome, request_id, http_status FROM ${ledger.schema}.attempts ORDER BY attempt`);
    expect(history).toEqual([
      { attempt: 1, outcome: 'retry', request_id: 'req1', http_status: 503 },
      { attempt: 2, outcome: 'retry', request_id: 'req2', http_status: 503 },
      { attempt: 3, outcome: 'delivered', request_id: 'req3', http_status: null },
    ]);
    const gaps = fake.log.slice(1).map((l, i) => l.start - fake.log[i]!.end);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(5); // backoff, not a hot loop
    const [state] = await deliveryStates(db.pool, ledger.schema);
    expect(state).toMatchObject({ status: 'delivered', attempts: 3, result: { event_id: 'E1' } });
    const { rows: n } = await db.pool.query(`SELECT count(*)::int AS n FROM ${ledger.schema}.deliveries`);
    expect(n[0].n).toBe(rows);
  });

  it('parks a rejected event as a row, holds the later events of its order behind it as rows, and lets the cursor and other orders move on', async () => {
    const ledger = await freshLedger();
    await store(ledger, [event('bad', 'TRADE_SUCCESS'), event('ok1', 'TRADE_SUCCESS'), event('bad', 'TRADE_CONFIRM'), event('ok2', 'TRADE_SUCCESS')]);
    const fake = fakeSink((e) => (e.orderKey === 'bad' ? { status: 'rejected', code: 'BAD_PHONE', message: 'no such user', info } : { status: 'delivered', info }));
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options, logger: silentLogger() });
    d.start();
    await waitFor(async () => (await statuses(ledger)).delivered === 2 && (await statuses(ledger)).rejected === 1, 'settled');
    // Stored after the parking: it waits too, as a row (the ledger says its order is open).
    await store(ledger, [event('bad', 'REFUND_SUCCESS')]);
    d.wake();
    await waitFor(async () => (await statuses(ledger)).pending === 2 && (await db.pool.query(`SELECT 1 FROM ${ledger.schema}.deliveries WHERE code = 'REFUND_SUCCESS'`)).rowCount === 1, 'the refund waits as a row');
    await d.stop();
    expect(fake.log.map((l) => l.code).filter((c, i) => fake.log[i]!.id.length && c !== 'TRADE_SUCCESS')).toEqual([]);
    const { rows } = await db.pool.query(`SELECT code, status, attempts, last_code FROM ${ledger.schema}.deliveries ORDER BY id`);
    expect(rows).toEqual([
      { code: 'TRADE_SUCCESS', status: 'rejected', attempts: 1, last_code: 'BAD_PHONE' },
      { code: 'TRADE_CONFIRM', status: 'pending', attempts: 0, last_code: null },
      { code: 'REFUND_SUCCESS', status: 'pending', attempts: 0, last_code: null },
    ]);
    // Every cursor is past every event: nothing is held in memory or re-read.
    const { rows: behind } = await db.pool.query(
      `SELECT count(*)::int AS n FROM ${ledger.schema}.log l JOIN ${ledger.schema}.cursors c ON c.shard = l.shard AND c.sink = 'fake' WHERE l.seq > c.seq`,
    );
    expect(behind[0].n).toBe(0);
  });

  it('pauses a failing sink instead of parking its events, probes one at a time, and resumes by itself', async () => {
    const ledger = await freshLedger();
    await store(ledger, Array.from({ length: 40 }, (_, i) => event(`p${i}`, 'TRADE_SUCCESS')));
    let broken = true;
    let concurrentDuringOutage = 0;
    let inflight = 0;
    const fake = fakeSink(async () => {
      inflight++;
      if (broken) concurrentDuringOutage = Math.max(concurrentDuringOutage, inflight);
      await new Promise((r) => setTimeout(r, 1));
      inflight--;
      return broken ? { status: 'sink_failure', code: 'ACCESS_DENIED', message: 'signature does not match', info } : { status: 'delivered', info };
    });
    const changes: Array<[boolean, string | undefined]> = [];
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options, logger: silentLogger(), hooks: { onPauseChange: (_s, p, r) => changes.push([p, r]) } });
    d.start();
    await waitFor(() => d.state()[0]!.paused, 'paused');
    expect(d.state()[0]!.pausedReason).toBe('ACCESS_DENIED: signature does not match');
    // Let two probes happen (1 s backoff, then 2 s would be next): everything stays pending.
    await waitFor(() => fake.calls() >= 2, 'a probe', 5_000);
    const callsWhilePaused = fake.calls();
    expect(callsWhilePaused).toBeLessThanOrEqual(1 + policy.concurrency * 2);
    expect(concurrentDuringOutage).toBeLessThanOrEqual(policy.concurrency);
    expect((await statuses(ledger)).pending).toBe(40);
    broken = false;
    await waitFor(async () => (await statuses(ledger)).delivered === 40, 'all delivered after recovery', 10_000);
    expect(d.state()[0]!.paused).toBe(false);
    expect(changes).toEqual([[true, 'ACCESS_DENIED: signature does not match'], [false, undefined]]);
    await d.stop();
  });

  it('drains in-flight attempts on stop and releases claims that never started', async () => {
    const ledger = await freshLedger();
    await store(ledger, Array.from({ length: 20 }, (_, i) => event(`s${i}`, 'TRADE_SUCCESS')));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fake = fakeSink(async () => {
      await gate;
      return { status: 'delivered', info };
    });
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy: { ...policy, concurrency: 4 } }], options, logger: silentLogger() });
    d.start();
    await waitFor(() => d.state()[0]!.inflight === 4, '4 in flight');
    const stopping = d.stop();
    setTimeout(release, 50);
    await stopping;
    const s = await statuses(ledger);
    expect(s).toEqual({ delivered: 4, pending: 16 });
    // What never started left no row and no phantom attempt; a new dispatcher sends exactly those 16.
    // What never started became rows at the stop, with no phantom attempt, so the cursor could
    // pass the delivered ones behind them: nothing delivered is sent again.
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ${ledger.schema}.deliveries WHERE status = 'pending' AND attempts = 0 AND lease_until IS NULL`);
    expect(rows[0].n).toBe(16);
    const { rows: behind } = await db.pool.query(
      `SELECT count(*)::int AS n FROM ${ledger.schema}.log l JOIN ${ledger.schema}.cursors c ON c.shard = l.shard AND c.sink = 'fake' WHERE l.seq > c.seq`,
    );
    expect(behind[0].n).toBe(0);
    const again = fakeSink(() => ({ status: 'delivered', info }));
    const d2 = createDispatcher({ ledger, sinks: [{ sink: again.sink, policy }], options, logger: silentLogger() });
    d2.start();
    await waitFor(async () => (await statuses(ledger)).delivered === 20, 'the rest delivered');
    await d2.stop();
    expect(again.calls()).toBe(16);
    expect(new Set([...fake.log, ...again.log].map((l) => l.id)).size).toBe(20);
  });

  it('keeps the reason of an event the sink does not take', async () => {
    const ledger = await freshLedger();
    await store(ledger, [event('na1', 'TRADE_SUCCESS')]);
    const fake = fakeSink(() => ({ status: 'not_applicable', reason: 'no Alipay user id on the order' }));
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options, logger: silentLogger() });
    d.start();
    await waitFor(async () => (await statuses(ledger)).not_applicable === 1, 'settled');
    await d.stop();
    const { rows } = await db.pool.query(`SELECT status, last_message FROM ${ledger.schema}.delivery_states`);
    expect(rows).toEqual([{ status: 'not_applicable', last_message: 'no Alipay user id on the order' }]);
  });

  it('drops an outcome whose lease ran out and was claimed again', async () => {
    const ledger = await freshLedger();
    await store(ledger, [event('x1', 'TRADE_SUCCESS')]);
    await ledger.cursors('fake');
    const { entries } = await ledger.readLog('fake', 0, 10);
    await ledger.flushLog({ sink: 'fake', outcomes: [], exceptions: [{ entry: entries[0]!, status: 'pending', attempts: 1, delayMs: 0, code: 'HTTP_503' }], attempts: [], cursors: [{ shard: entries[0]!.shard, seq: entries[0]!.seq }] });
    const [first] = await ledger.claim('fake', 1, 1);
    await new Promise((r) => setTimeout(r, 5)); // let the 1 ms lease lapse
    const [second] = await ledger.claim('fake', 1, 60_000);
    expect(second!.attempt).toBe(3);
    const stale = await ledger.settle([{ eventId: first!.eventId, sink: 'fake', deliveryId: first!.id, attempt: first!.attempt, status: 'pending', delayMs: 0, outcome: 'retry' }]);
    expect(stale).toBe(0);
    expect(await ledger.settle([{ eventId: second!.eventId, sink: 'fake', deliveryId: second!.id, attempt: second!.attempt, status: 'delivered', outcome: 'delivered' }])).toBe(1);
  });

  it('a wake-up that arrives while a read of the log is running is not lost: new events go out without waiting for the poll', async () => {
    const ledger = await freshLedger();
    // The read that is in flight when the append and its wake-up happen comes back empty.
    let gateRead: (() => void) | null = null;
    let readStarted: (() => void) | null = null;
    const started = new Promise<void>((r) => (readStarted = r));
    const gated: Ledger = {
      ...ledger,
      async readLog(sink, after, limit) {
        if (readStarted) {
          const release = new Promise<void>((r) => (gateRead = r));
          const got = await ledger.readLog(sink, after, limit); // empty: nothing stored yet
          readStarted();
          readStarted = null;
          await release;
          return got;
        }
        return ledger.readLog(sink, after, limit);
      },
    };
    const fake = fakeSink(() => ({ status: 'delivered', info }));
    // A poll interval far longer than the test: only a wake-up can bring the event out.
    const d = createDispatcher({ ledger: gated, sinks: [{ sink: fake.sink, policy }], options: { ...options, pollInterval: 600_000 }, logger: silentLogger() });
    d.start();
    await started;
    await store(ledger, [event('w1', 'TRADE_SUCCESS')]);
    d.wake();
    gateRead!();
    await waitFor(async () => (await statuses(ledger)).delivered === 1, 'delivered after the wake-up', 5_000);
    await d.stop();
    expect(fake.calls()).toBe(1);
  });

  it('takes new events straight from the append without reading the log, and leaves them to the log when it cannot', async () => {
    const ledger = await freshLedger();
    let reads = 0;
    const counting: Ledger = { ...ledger, readLog: (...args) => (reads++, ledger.readLog(...args)) };
    const fake = fakeSink(() => ({ status: 'delivered', info }));
    const d = createDispatcher({ ledger: counting, sinks: [{ sink: fake.sink, policy }], options: { ...options, pollInterval: 600_000 }, logger: silentLogger() });
    d.start();
    await waitFor(() => reads >= 1 && d.handOverSinks().length === 1, 'the first (empty) read');
    const readsBefore = reads;
    const now = new Date().toISOString();
    const events = ['h1', 'h2', 'h3'].map((o) => event(o, 'TRADE_SUCCESS'));
    const stored = await ledger.append({ source: 'test', events: events.map((e) => ({ event: e, sinks: ['fake'], position: '0/1', committedAt: now })), orders: [], bad: [], checkpoints: [], handOver: d.handOverSinks() });
    expect(stored.appended.entries).toHaveLength(3);
    d.offer(stored.appended, stored.handOver);
    await waitFor(async () => (await statuses(ledger)).delivered === 3, 'handed-over events delivered');
    expect(reads).toBe(readsBefore);
    expect(fake.calls()).toBe(3);

    // Events appended by another writer in between: a hand-over after them is not taken (it
    // would skip them); the worker reads the log and sends all, in order.
    await store(ledger, [event('h4', 'TRADE_SUCCESS')]);
    const next = await ledger.append({ source: 'test', events: [{ event: event('h5', 'TRADE_SUCCESS'), sinks: ['fake'], position: '0/2', committedAt: now }], orders: [], bad: [], checkpoints: [], handOver: d.handOverSinks() });
    d.offer(next.appended, next.handOver);
    await waitFor(async () => (await statuses(ledger)).delivered === 5, 'all five delivered');
    expect(reads).toBeGreaterThan(readsBefore);
    expect(fake.log.slice(3).map((l) => l.id)).toEqual([event('h4', 'TRADE_SUCCESS').id, event('h5', 'TRADE_SUCCESS').id]);
    await d.stop();

    // A stopped worker takes no hand-over; what is offered anyway waits in the log.
    expect(d.handOverSinks()).toEqual([]);
    const late = await ledger.append({ source: 'test', events: [{ event: event('h6', 'TRADE_SUCCESS'), sinks: ['fake'], position: '0/3', committedAt: now }], orders: [], bad: [], checkpoints: [], handOver: ['fake'] });
    d.offer(late.appended, late.handOver);
    expect((await statuses(ledger)).pending).toBe(1);
    expect(fake.calls()).toBe(5);
  });
});
