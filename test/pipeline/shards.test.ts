import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusinessEvent } from '../../src/core/events.js';
import { FencedError } from '../../src/core/source.js';
import { eventId } from '../../src/core/ids.js';
import type { Sink } from '../../src/core/sink.js';
import { createDispatcher, type Dispatcher } from '../../src/dispatch/dispatcher.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Delivery shards spread over the instances of one sink (issue 15): each (sink, shard) is
 * delivered by one instance at a time, a joining instance gets its share, a leaving one's
 * shards are taken over, and a write under shards another instance has taken since is refused.
 */

let db: TestDatabase;
let n = 0;
beforeAll(async () => {
  db = await createTestDatabase('shards');
});
afterAll(async () => {
  await db?.drop();
});

async function freshLedger(shards: number): Promise<{ schema: string; ledger: Ledger }> {
  const schema = `s${++n}`;
  const c = await db.pool.connect();
  await migrate(c, schema, { shards });
  c.release();
  return { schema, ledger: createLedger(db.pool, schema) };
}

const event = (order: string): BusinessEvent => ({
  id: eventId(['shards', order]),
  code: 'TRADE_SUCCESS',
  kind: 'TRADE',
  orderKey: order,
  orderNo: order,
  occurredAt: new Date().toISOString(),
  order: { order_no: order },
});

async function store(ledger: Ledger, orders: string[]): Promise<void> {
  const now = new Date().toISOString();
  await ledger.append({ source: 'test', events: orders.map((o) => ({ event: event(o), sinks: ['s'], position: '0/1', committedAt: now })), orders: [], bad: [], checkpoints: [] });
}

/** One instance: a dispatcher of sink `s` whose attempts are recorded under its name. */
function instance(ledger: Ledger, name: string, sent: Array<{ by: string; id: string }>): Dispatcher {
  const sink: Sink = {
    name: 's',
    kind: 'fake',
    handles: () => true,
    async deliver(e) {
      sent.push({ by: name, id: e.id });
      return { status: 'delivered', info: { durationMs: 1 } };
    },
    preview: () => ({ status: 'not_applicable', reason: 'test' }),
    close: async () => {},
  };
  const d = createDispatcher({
    ledger,
    sinks: [{ sink, policy: { concurrency: 8, timeout: 2_000, retry: { initialBackoff: 50, maxBackoff: 200 } } }],
    options: { claimBatch: 50, pollInterval: 50, leaseMargin: 1_000, window: 1_000, flushInterval: 10, quickRetries: 2, lease: 2_000, drainTimeout: 1_000 },
    logger: silentLogger(),
  });
  d.start();
  return d;
}

const owned = (d: Dispatcher) => d.state()[0]!.owned;

describe('delivery shards over several instances', () => {
  it('splits the shards evenly between two instances, each event sent by one, and hands a stopped one\'s shards to the other', async () => {
    const { ledger } = await freshLedger(8);
    const sent: Array<{ by: string; id: string }> = [];
    const a = instance(ledger, 'a', sent);
    await waitFor(() => owned(a).length === 8, 'A alone to take every shard');
    const b = instance(ledger, 'b', sent);
    try {
      await waitFor(() => owned(a).length === 4 && owned(b).length === 4, 'A and B to hold four shards each', 15_000);
      expect(new Set([...owned(a), ...owned(b)]).size).toBe(8);
      const holders = await ledger.shardHolders('s');
      expect(holders.size).toBe(8);

      const orders = Array.from({ length: 200 }, (_, i) => `o${i}`);
      await store(ledger, orders);
      a.wake();
      b.wake();
      await waitFor(() => new Set(sent.map((x) => x.id)).size === 200, 'every event sent');
      // No rebalance happened meanwhile: every event went out once, by the instance holding its shard.
      expect(sent.length).toBe(200);
      expect(new Set(sent.map((x) => x.by))).toEqual(new Set(['a', 'b']));

      await a.stop();
      await waitFor(() => owned(b).length === 8, 'B to take A\'s shards', 15_000);
      const more = Array.from({ length: 50 }, (_, i) => `p${i}`);
      await store(ledger, more);
      b.wake();
      await waitFor(() => sent.filter((x) => x.id.length && more.some((o) => event(o).id === x.id)).length === 50, 'B to send the new events');
      expect(sent.filter((x) => x.by === 'a' && more.some((o) => event(o).id === x.id))).toEqual([]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  }, 60_000);

  it('refuses every write of an instance whose shards another has taken since (a zombie after a pause)', async () => {
    const { schema, ledger } = await freshLedger(4);
    await store(ledger, ['z1', 'z2']);
    const zombie = await ledger.shardLeases('s', 5_000, 'zombie');
    expect(await zombie.take([0, 1, 2, 3], 4)).toHaveLength(4);
    const stale = zombie.fence();
    // Its session ends (as the server ends a silent one), and another instance takes the shards.
    await db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'order-relay-shards zombie'`);
    await zombie.lost;
    await zombie.release();
    const owner = await ledger.shardLeases('s', 5_000, 'owner');
    try {
      expect(await owner.take([0, 1, 2, 3], 4)).toHaveLength(4);
      const cursorsBefore = await ledger.cursors('s');
      const { entries } = await ledger.readLog('s', 0, 10);
      expect(entries).toHaveLength(2);
      const cursors = [...new Set(entries.map((e) => e.shard))].map((shard) => ({ shard, seq: 2 }));
      const flush = { sink: 's', outcomes: entries.map((e) => ({ seq: e.seq, shard: e.shard, status: 'delivered' as const, attempts: 1 })), exceptions: [], attempts: [], cursors };
      await expect(ledger.flushLog(flush, stale)).rejects.toBeInstanceOf(FencedError);
      expect(await ledger.cursors('s')).toEqual(cursorsBefore);
      const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.outcomes`);
      expect(rows[0]!.n).toBe(0);
      await expect(ledger.claim('s', 10, 1_000, null, stale)).resolves.toEqual([]);
      // The owner's own fence passes.
      await ledger.flushLog(flush, owner.fence());
      expect((await ledger.cursors('s')).filter((c) => c === 2)).toHaveLength(cursors.length);
    } finally {
      await owner.release();
    }
  }, 30_000);
});
