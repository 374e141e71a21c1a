import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { backfill } from '../../src/cli/backfill.js';
import { eventId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, startSimulators, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * One refund, one REFUND_SUCCESS (issue 12). With the templates' rules (a refunds table, and
 * REFUNDED standing for the purchase only), an order refunded the usual way — a SUCCESS refund
 * row and the order set to REFUNDED — must reach the ledger and both gateways with exactly
 * one refund per refund row, whatever the order of arrival: row first, status first, both in
 * one transaction, an order first seen at REFUNDED, either part brought by `backfill`, and N
 * partial refunds before REFUNDED. Runs the real source, classifier, ingest, ledger and
 * dispatcher against the simulators.
 */
const PROJECT = 'demo-cinema';
const id = (order: string, code: string, refund?: string) => eventId(refund ? [PROJECT, order, code, refund] : [PROJECT, order, code]);

let db: TestDatabase;
let sims: Simulators;

beforeAll(async () => {
  db = await createTestDatabase('refund');
  await createOrderTables(db.pool);
  sims = await startSimulators();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

// Every order has an Alipay user, so both gateways get every event.
const ORDER = `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
               VALUES ($1, $2, '13800138000', '2088000000000001', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`;
const REFUND = `INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count) VALUES ($1, $2, $3, $4, $5)`;
const STATUS = `UPDATE orders SET status = $2, updated_at = now() WHERE order_no = $1`;

/** Runs statements in one transaction (one source transaction, so one batch). */
async function tx(...statements: Array<[string, unknown[]]>): Promise<void> {
  const c = await db.pool.connect();
  try {
    await c.query('BEGIN');
    for (const [sql, params] of statements) await c.query(sql, params);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    c.release();
  }
}
const order = (no: string, status: string): [string, unknown[]] => [ORDER, [no, status]];
const refund = (rid: string, no: string, status = 'SUCCESS', amount = '80.00', count = 2): [string, unknown[]] => [REFUND, [rid, no, status, amount, count]];
const status = (no: string, s: string): [string, unknown[]] => [STATUS, [no, s]];

describe('one refund, one REFUND_SUCCESS', () => {
  it('whatever the order of arrival, stream or backfill: one REFUND_SUCCESS per refund row, none from the status', async () => {
    // Before the slot: orders only the backfill (or a later streamed change) brings in.
    await tx(order('BF1', 'PAID'), refund('BF1-r', 'BF1'), status('BF1', 'REFUNDED')); // all of it predates: backfill of both
    await tx(order('BF2', 'PAID'), refund('BF2-r', 'BF2')); // refund row predates (backfill), REFUNDED is streamed
    await tx(order('BF3', 'PAID')); // order predates (backfill); refund row and REFUNDED are streamed
    await tx(order('OLD', 'PAID')); // never backfilled before its first streamed change: REFUNDED and its row, one transaction
    await tx(order('OLD2', 'PAID')); // the same with USED and a partial refund

    const { config } = writeConfig(testConfig(db.url, sims), sims.env);
    const env = { ...process.env, ...sims.env };
    const app = createApp(config, { logger: silentLogger(), env });
    const stop = new AbortController();
    const running = app.run(stop.signal);
    try {
      await waitFor(() => app.sources.every((s) => s.source.health().connected), 'the source to stream');

      await tx(order('S1', 'PAID'));
      await tx(refund('S1-r', 'S1')); // refund row first …
      await tx(status('S1', 'REFUNDED')); // … then the status
      await tx(order('S2', 'PAID'));
      await tx(status('S2', 'REFUNDED')); // status first …
      await tx(refund('S2-r', 'S2')); // … then the refund row
      await tx(order('S3', 'PAID'));
      await tx(refund('S3-r', 'S3'), status('S3', 'REFUNDED')); // both in one transaction
      await tx(order('S4', 'REFUNDED'), refund('S4-r', 'S4')); // first seen at REFUNDED, with its row
      await tx(status('OLD', 'REFUNDED'), refund('OLD-r', 'OLD')); // unknown to the ledger, first seen at REFUNDED
      await tx(status('OLD2', 'USED'), refund('OLD2-r', 'OLD2', 'SUCCESS', '40.00', 1));
      await tx(status('BF2', 'REFUNDED'));
      await tx(refund('BF3-r', 'BF3'));
      await tx(status('BF3', 'REFUNDED'));
      // N partial refunds, one settled later, then REFUNDED: N refunds, not N + 1.
      await tx(order('P3', 'PAID'));
      await tx(refund('P3-r1', 'P3', 'SUCCESS', '20.00', 1));
      await tx(refund('P3-r2', 'P3', 'PENDING', '20.00', 1));
      await tx(refund('P3-r3', 'P3', 'SUCCESS', '20.00', 1));
      await tx(['UPDATE refunds SET status = $2 WHERE refund_id = $1', ['P3-r2', 'SUCCESS']]);
      await tx(status('P3', 'REFUNDED'));
      // The last partial refund and REFUNDED in one transaction; a failed refund counts for nothing.
      await tx(order('P2', 'PAID'));
      await tx(refund('P2-r1', 'P2', 'SUCCESS', '40.00', 1));
      await tx(refund('P2-x', 'P2', 'FAILED', '40.00', 1));
      await tx(refund('P2-r2', 'P2', 'SUCCESS', '40.00', 1), status('P2', 'REFUNDED'));

      // The stream has everything once the marker's row is in the ledger.
      await tx(order('MARK', 'CREATED'));
      await waitFor(async () => (await app.ledger.loadOrders(['MARK'])).has('MARK'), 'the stream to reach the marker');
      // The row read from the table for OLD2's refund (today's, USED) is not what the ledger
      // saw: the transition streamed beside it still counts (the backfill would mask a loss).
      const streamed = await db.pool.query<{ code: string }>(`SELECT code FROM order_relay.events WHERE order_no = 'OLD2' ORDER BY code`);
      expect(streamed.rows.map((r) => r.code)).toEqual(['REFUND_SUCCESS', 'TRADE_CONFIRM', 'TRADE_SUCCESS']);
      const result = await backfill(config, { logger: silentLogger(), env });
      expect(result.tables.map((t) => [t.table, t.parked])).toEqual([['public.orders', 0], ['public.refunds', 0]]);

      const refunds: Record<string, string[]> = {
        BF1: ['BF1-r'], BF2: ['BF2-r'], BF3: ['BF3-r'], OLD: ['OLD-r'],
        S1: ['S1-r'], S2: ['S2-r'], S3: ['S3-r'], S4: ['S4-r'], OLD2: ['OLD2-r'],
        P3: ['P3-r1', 'P3-r2', 'P3-r3'], P2: ['P2-r1', 'P2-r2'],
      };
      const expected = [
        ...Object.entries(refunds).flatMap(([no, rs]) => [id(no, 'TRADE_SUCCESS'), ...rs.map((r) => id(no, 'REFUND_SUCCESS', r))]),
        id('OLD2', 'TRADE_CONFIRM'),
      ].sort();
      const settled = async () =>
        (await db.pool.query(`SELECT count(*)::int AS n FROM order_relay.deliveries WHERE status NOT IN ('delivered')`)).rows[0].n === 0 &&
        sims.antchain.stats().effects >= expected.length &&
        sims.zhima.stats().effects >= expected.length;
      await waitFor(settled, 'every delivery at both gateways');

      const { rows: events } = await db.pool.query<{ id: string; order_no: string; code: string; refund_id: string | null }>(
        `SELECT id, order_no, code, refund_id FROM order_relay.events ORDER BY id`,
      );
      expect(events.map((e) => e.id)).toEqual(expected);
      // Per order: exactly its refund rows' REFUND_SUCCESS, each with its refund id; none without one.
      for (const [no, rs] of Object.entries(refunds)) {
        expect(events.filter((e) => e.order_no === no && e.code === 'REFUND_SUCCESS').map((e) => e.refund_id).sort(), no).toEqual(rs);
      }
      expect(events.filter((e) => e.code === 'REFUND_SUCCESS' && e.refund_id === null)).toEqual([]);
      // Both APIs got one refund per refund row, after the purchase it undoes, and nothing twice.
      const a = sims.antchain.stats();
      const z = sims.zhima.stats();
      expect([...a.effectKeys].sort()).toEqual(expected);
      expect([...z.effectKeys].sort()).toEqual(expected);
      expect(a.violations).toEqual([]);
      expect(a.duplicates + z.duplicates).toBe(0);
    } finally {
      stop.abort();
      await running;
    }
  });
});
