import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusinessEvent, EventCode } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import { createLedger, type AppendResult, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Per-order FIFO across concurrent writers of the ledger. A backfill page stores a
 * pre-existing order's TRADE_SUCCESS in a transaction that is still open when the stream
 * stores the same order's REFUND_SUCCESS: the refund must not become the first visible
 * delivery of its order (leased at once by the append, or claimed), or it reaches the API
 * before the purchase.
 */

let db: TestDatabase;
let ledger: Ledger;
const SCHEMA = 'fifo';

beforeAll(async () => {
  db = await createTestDatabase('fifo');
  const c = await db.pool.connect();
  await migrate(c, SCHEMA);
  c.release();
  ledger = createLedger(db.pool, SCHEMA);
  // Registered outside the pages' transactions, as backfill does.
  await ledger.sinkBit('antchain');
});
afterAll(async () => {
  await db?.drop();
});

function event(order: string, code: EventCode, refund?: string): BusinessEvent {
  return {
    id: eventId(refund ? ['fifo', order, code, refund] : ['fifo', order, code]),
    code,
    kind: 'TRADE',
    orderKey: order,
    orderNo: order,
    ...(refund ? { refundId: refund } : {}),
    occurredAt: new Date().toISOString(),
    order: { order_no: order },
  };
}

const toStore = (events: BusinessEvent[]) => events.map((e) => ({ event: e, sinks: ['antchain'], position: '0/1', committedAt: new Date().toISOString() }));

/** Whether some session of this database waits for an advisory lock. */
async function waitingOnAdvisoryLock(): Promise<boolean> {
  const { rows } = await db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`);
  return rows.length > 0;
}

describe('ledger: per-order FIFO across concurrent writers', () => {
  it('a stream append waits for an open backfill page, and a reader never sees an event ahead of an uncommitted earlier one', async () => {
    const order = 'pre-existing-1';
    const purchase = event(order, 'TRADE_SUCCESS');
    const refund = event(order, 'REFUND_SUCCESS', 'r1');
    await ledger.cursors('antchain');

    // The backfill page: its append runs on a client inside a transaction it has not committed.
    const page = await db.pool.connect();
    try {
      await page.query('BEGIN');
      await createLedger(page, SCHEMA).append({ source: 'backfill', events: toStore([purchase]), orders: [], bad: [], checkpoints: [] });

      // The stream stores the refund meanwhile.
      let streamDone: AppendResult | undefined;
      const stream = ledger
        .append({ source: 'postgres', events: toStore([refund]), orders: [], bad: [], checkpoints: [], handOver: ['antchain'] })
        .then((r) => (streamDone = r));
      await waitFor(async () => streamDone !== undefined || (await waitingOnAdvisoryLock()), 'the stream append to finish or to wait for the page');
      expect(streamDone, 'the stream stored the refund while the page holding the purchase was open').toBeUndefined();
      expect((await ledger.readLog('antchain', 0, 10)).entries).toEqual([]);

      await page.query('COMMIT');
      const stored = await stream;
      expect(stored.inserted).toBe(1);
      // Its hand-over says where it starts: after the purchase, which the reader has not seen yet.
      expect(stored.appended.after).toBeGreaterThanOrEqual(1);
    } finally {
      page.release();
    }

    const { entries } = await ledger.readLog('antchain', 0, 10);
    expect(entries.map((e) => e.eventId)).toEqual([purchase.id, refund.id]);
  });

  it('orders the events of one order by the commit order of their writers', async () => {
    const order = 'pre-existing-2';
    const purchase = event(order, 'TRADE_SUCCESS');
    const confirm = event(order, 'TRADE_CONFIRM');
    const page = await db.pool.connect();
    try {
      await page.query('BEGIN');
      await createLedger(page, SCHEMA).append({ source: 'backfill', events: toStore([purchase]), orders: [], bad: [], checkpoints: [] });
      const stream = ledger.append({ source: 'postgres', events: toStore([confirm]), orders: [], bad: [], checkpoints: [] });
      await waitFor(() => waitingOnAdvisoryLock(), 'the stream append to wait for the page', 10_000);
      await page.query('COMMIT');
      await stream;
    } finally {
      page.release();
    }
    const { rows } = await db.pool.query<{ id: string }>(`SELECT encode(id, 'hex') AS id FROM ${SCHEMA}.log WHERE order_key = $1 ORDER BY seq`, [order]);
    expect(rows.map((r) => r.id)).toEqual([purchase.id, confirm.id]);
  });
});
