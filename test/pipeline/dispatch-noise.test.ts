import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusinessEvent } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import type { DeliveryOutcome, Sink } from '../../src/core/sink.js';
import { createDispatcher } from '../../src/dispatch/dispatcher.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/observe/metrics.js';
import type { LiveProbe } from '../../src/observe/probe.js';
import { sinkFigures } from '../../src/observe/queries.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { stageAsExceptions } from '../helpers/ledger-fixtures.js';
import { waitFor } from '../helpers/wait.js';

let db: TestDatabase;
let schemaN = 0;

beforeAll(async () => {
  db = await createTestDatabase('noise');
});
afterAll(async () => {
  await db?.drop();
});

async function freshLedger(): Promise<Ledger> {
  const schema = `n${++schemaN}`;
  const c = await db.pool.connect();
  await migrate(c, schema);
  c.release();
  return createLedger(db.pool, schema);
}

function event(order: string): BusinessEvent {
  return { id: eventId(['noise', order, 'TRADE_SUCCESS']), code: 'TRADE_SUCCESS', kind: 'TRADE', orderKey: order, orderNo: order, occurredAt: new Date().toISOString(), order: { order_no: order } };
}

async function store(ledger: Ledger, orders: string[]): Promise<void> {
  const now = new Date().toISOString();
  await ledger.append({ source: 'test', events: orders.map((o) => ({ event: event(o), sinks: ['fake'], position: '0/1', committedAt: now })), orders: [], bad: [], checkpoints: [] });
}

function fakeSink(answer: (n: number) => DeliveryOutcome | Promise<DeliveryOutcome>) {
  let calls = 0;
  const sink: Sink = {
    name: 'fake',
    kind: 'fake',
    handles: () => true,
    deliver: async () => answer(++calls),
    preview: () => ({ status: 'not_applicable', reason: 'test' }),
    close: async () => {},
  };
  return { sink, calls: () => calls };
}

/** A logger whose JSON lines the test reads. */
function recordingLogger() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines };
}

const info = { durationMs: 1 };
const policy = { concurrency: 4, timeout: 2_000, retry: { initialBackoff: 20, maxBackoff: 100 } };
const options = { claimBatch: 64, pollInterval: 20, leaseMargin: 500, drainTimeout: 2_000, window: 4096, flushInterval: 20, quickRetries: 2 };

describe('dispatcher logs and metrics an operator can read', () => {
  it('a ledger outage is two lines per operation, the first failure and the recovery with a count, not one per failed claim', async () => {
    const real = await freshLedger();
    await store(real, ['a1', 'a2']);
    // Exception rows: what the dispatcher claims and settles (events in the log go by readLog/flushLog).
    await stageAsExceptions(real, 'fake');
    let down = true;
    let settlesDown = false;
    let failedClaims = 0;
    let failedSettles = 0;
    const unreachable = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const ledger: Ledger = {
      ...real,
      claim: async (...a) => {
        if (down) throw (failedClaims++, unreachable());
        return real.claim(...a);
      },
      settle: async (...a) => {
        if (settlesDown) throw (failedSettles++, unreachable());
        return real.settle(...a);
      },
    };
    const { logger, lines } = recordingLogger();
    const fake = fakeSink(() => ({ status: 'delivered', info }));
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options, logger });
    d.start();
    await waitFor(() => failedClaims >= 20, '20 failed claims');
    // The ledger answers claims again but not yet the recording of outcomes.
    settlesDown = true;
    down = false;
    await waitFor(() => failedSettles >= 3, 'three failed settles', 10_000);
    settlesDown = false;
    await waitFor(async () => (await sinkFigures(db.pool, real.schema, ['fake'])).find((f) => f.sink === 'fake')!.delivered === 2, 'both delivered', 10_000);
    await d.stop();
    const about = (what: string) => lines.filter((l) => l.msg.startsWith(what)).map((l) => ({ level: l.level, msg: l.msg, failures: l.failures }));
    expect(about('claiming deliveries')).toEqual([
      { level: 40, msg: 'claiming deliveries failed; retrying (one more line when it works again)', failures: undefined },
      { level: 30, msg: `claiming deliveries works again after ${failedClaims} failed attempts`, failures: failedClaims },
    ]);
    expect(about('recording outcomes')).toEqual([
      { level: 40, msg: 'recording outcomes failed; retrying (one more line when it works again)', failures: undefined },
      { level: 30, msg: `recording outcomes works again after ${failedSettles} failed attempts`, failures: failedSettles },
    ]);
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(2);
  });

  it('on the log path too: reading the log and recording outcomes with the cursor are two lines each through an outage', async () => {
    const real = await freshLedger();
    await store(real, ['l1', 'l2']);
    let readsDown = true;
    let flushesDown = false;
    let failedReads = 0;
    let failedFlushes = 0;
    const unreachable = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const ledger: Ledger = {
      ...real,
      readLog: async (...a) => {
        if (readsDown) throw (failedReads++, unreachable());
        return real.readLog(...a);
      },
      flushLog: async (...a) => {
        if (flushesDown) throw (failedFlushes++, unreachable());
        return real.flushLog(...a);
      },
    };
    const { logger, lines } = recordingLogger();
    const fake = fakeSink(() => ({ status: 'delivered', info }));
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options, logger });
    d.start();
    await waitFor(() => failedReads >= 5, 'five failed reads', 20_000);
    // The log can be read again but outcomes and the cursor cannot be written yet.
    flushesDown = true;
    readsDown = false;
    await waitFor(() => failedFlushes >= 3, 'three failed flushes', 10_000);
    flushesDown = false;
    await waitFor(async () => (await sinkFigures(db.pool, real.schema, ['fake'])).find((f) => f.sink === 'fake')!.delivered === 2, 'both delivered', 10_000);
    await d.stop();
    expect(fake.calls()).toBe(2);
    const about = (what: string) => lines.filter((l) => l.msg.startsWith(what)).map((l) => ({ level: l.level, msg: l.msg, failures: l.failures }));
    expect(about('reading the event log')).toEqual([
      { level: 40, msg: 'reading the event log failed; retrying (one more line when it works again)', failures: undefined },
      { level: 30, msg: `reading the event log works again after ${failedReads} failed attempts`, failures: failedReads },
    ]);
    expect(about('recording outcomes and the cursor')).toEqual([
      { level: 40, msg: 'recording outcomes and the cursor failed; retrying (one more line when it works again)', failures: undefined },
      { level: 30, msg: `recording outcomes and the cursor works again after ${failedFlushes} failed attempts`, failures: failedFlushes },
    ]);
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(2);
    expect(await sinkFigures(db.pool, real.schema, ['fake'])).toMatchObject([{ sink: 'fake', backlog: 0, delivered: 2 }]);
  });

  it('the paused metric\'s reason is the failure\'s code, stable while the message changes; the text is in the state; resuming logs at info', async () => {
    const ledger = await freshLedger();
    await store(ledger, ['p1', 'p2', 'p3']);
    let broken = true;
    const fake = fakeSink((n) =>
      broken ? { status: 'sink_failure', code: 'UNTRUSTED_ANSWERS', message: `${n} answers in a row failed verification`, info } : { status: 'delivered', info },
    );
    const { logger, lines } = recordingLogger();
    const d = createDispatcher({ ledger, sinks: [{ sink: fake.sink, policy }], options, logger });
    const probe: LiveProbe = {
      live: () => ({ sinks: d.state(), sources: [] }),
      snapshot: async () => ({ at: new Date().toISOString(), sinks: [], slots: [], live: { sinks: d.state(), sources: [] } }),
      ready: async () => ({ ready: true, checks: [] }),
      close: async () => {},
    };
    // A fresh registry per scrape: each reads the live state (no snapshot reuse between them).
    const scrape = async () => {
      const m = createMetrics({ defaultMetrics: false, sinks: ['fake'] });
      m.attach(probe);
      return (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('order_relay_sink_paused{'));
    };
    d.start();
    await waitFor(() => d.state()[0]!.paused, 'paused');
    const first = d.state()[0]!.pausedReason;
    const before = await scrape();
    await waitFor(() => d.state()[0]!.pausedReason !== first, 'a probe that failed with another message', 5_000);
    const after = await scrape();
    expect(first).toMatch(/^UNTRUSTED_ANSWERS: \d+ answers in a row/);
    expect(d.state()[0]).toMatchObject({ pausedCode: 'UNTRUSTED_ANSWERS', pausedReason: expect.stringMatching(/^UNTRUSTED_ANSWERS: \d+ answers in a row/) });
    expect(before).toEqual(['order_relay_sink_paused{sink="fake",reason="UNTRUSTED_ANSWERS"} 1']);
    expect(after).toEqual(before);
    broken = false;
    await waitFor(() => !d.state()[0]!.paused, 'resumed', 10_000);
    expect(await scrape()).toEqual(['order_relay_sink_paused{sink="fake",reason=""} 0']);
    await d.stop();
    expect(lines.filter((l) => l.msg === 'sink resumed').map((l) => l.level)).toEqual([30]);
    expect(lines.filter((l) => /^sink paused/.test(l.msg)).map((l) => l.level)).toEqual([50]);
  });

  it('retrying counts pending deliveries whose last attempt failed, not first attempts in flight', async () => {
    const ledger = await freshLedger();
    await store(ledger, ['r1', 'r2']);
    const figures = async () => (await sinkFigures(db.pool, ledger.schema, ['fake']))[0]!;
    expect(await figures()).toMatchObject({ backlog: 2, due: 2, retrying: 0 }); // in the log, past the cursor
    // As exception rows (waiting, no attempt yet), claimed and settled one attempt at a time.
    await stageAsExceptions(ledger, 'fake');
    expect(await figures()).toMatchObject({ backlog: 2, due: 2, retrying: 0 });
    const [one, two] = await ledger.claim('fake', 2, 60_000);
    expect(await figures()).toMatchObject({ backlog: 2, retrying: 0 }); // both first attempts in flight
    await ledger.settle([{ eventId: one!.eventId, sink: 'fake', deliveryId: one!.id, attempt: one!.attempt, status: 'pending', delayMs: 0, outcome: 'retry', code: 'HTTP_503', message: 'busy', info }]);
    expect(await figures()).toMatchObject({ backlog: 2, retrying: 1 });
    const [again] = await ledger.claim('fake', 1, 60_000);
    expect(again!.eventId).toBe(one!.eventId);
    expect(await figures()).toMatchObject({ backlog: 2, retrying: 1 }); // a retry in flight is still one
    await ledger.settle([
      { eventId: two!.eventId, sink: 'fake', deliveryId: two!.id, attempt: two!.attempt, status: 'delivered', outcome: 'delivered', info },
      { eventId: again!.eventId, sink: 'fake', deliveryId: again!.id, attempt: again!.attempt, status: 'delivered', outcome: 'delivered', info },
    ]);
    expect(await figures()).toMatchObject({ backlog: 0, retrying: 0, delivered: 2 });
  });
});
