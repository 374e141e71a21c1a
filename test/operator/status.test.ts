import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectStatus, renderStatus } from '../../src/cli/status.js';
import type { Config } from '../../src/config/schema.js';
import { LATEST_VERSION } from '../../src/ledger/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { createLedger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { deliveryAudit, ledgerCounts, sinkFigures } from '../../src/observe/queries.js';
import { seedFigures, settleLog, tradeEvent } from '../helpers/ledger-fixtures.js';
import { operatorConfig, startSims } from './helpers.js';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let config: Config;
let seeded: Awaited<ReturnType<typeof seedFigures>>;

beforeAll(async () => {
  db = await createTestDatabase('status');
  await createOrderTables(db.pool);
  sims = await startSims();
  config = operatorConfig(db.url, sims).config;
  seeded = await seedFigures(db.pool, config.ledger.schema);
  await db.pool.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [config.source!.slot]);
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

describe('order-relay status', () => {
  it('reports the figures of a known ledger per sink', async () => {
    const r = await collectStatus(config);
    const antchain = r.sinks.find((s) => s.sink === 'antchain')!;
    expect(antchain).toMatchObject({
      backlog: 3, // A/TC due (in the log, past the cursor), B/TC blocked behind the parked B/TS, C/TS waiting for its retry
      due: 2,
      retrying: 1,
      parked: 1,
      blocked: 1,
      delivered: 2,
      deliveredLastMinute: 1, // D/TS was delivered five minutes ago
      notApplicable: 0,
      paused: null, // no instance to ask
    });
    expect(antchain.oldestPendingSeconds).toBeGreaterThanOrEqual(90);
    expect(antchain.oldestPendingSeconds).toBeLessThan(120);
    expect(r.sinks.find((s) => s.sink === 'zhima')).toMatchObject({
      backlog: 0, retrying: 0, parked: 1, blocked: 0, delivered: 1, deliveredLastMinute: 1, notApplicable: 1, oldestPendingSeconds: null,
    });
    expect(r.parkedInputs.count).toBe(2);
    expect(r.parkedInputs.recent.map((p) => p.reason)).toEqual([
      'public.orders order X1: status column "status" is missing or empty',
      'public.orders: order number column "order_no" is missing or empty',
    ]);
    expect(r.ledger).toEqual({ schema: 'order_relay', version: LATEST_VERSION, latest: LATEST_VERSION });
    expect(r.live).toEqual({ url: null, reachable: false });
  });

  it('lists the last errors with the request id to quote to support', async () => {
    const r = await collectStatus(config, { errors: 10 });
    const rows = r.lastErrors.map((e) => ({ sink: e.sink, eventId: e.eventId, outcome: e.outcome, requestId: e.requestId, remoteCode: e.remoteCode }));
    expect(rows).toHaveLength(3);
    expect(rows).toEqual(
      expect.arrayContaining([
        { sink: 'antchain', eventId: seeded.B, outcome: 'rejected', requestId: `req-antchain-${seeded.B.slice(0, 6)}`, remoteCode: 'INVALID_EVENT' },
        { sink: 'antchain', eventId: seeded.C, outcome: 'retry', requestId: `req-antchain-${seeded.C.slice(0, 6)}`, remoteCode: 'HTTP_503' },
        { sink: 'zhima', eventId: seeded.B, outcome: 'rejected', requestId: `req-zhima-${seeded.B.slice(0, 6)}`, remoteCode: 'INVALID_EVENT' },
      ]),
    );
    expect((await collectStatus(config, { errors: 1 })).lastErrors).toHaveLength(1);
  });

  it('shows the slot: confirmed LSN and lag in bytes that grows with unconsumed WAL; and stored Kafka offsets', async () => {
    const before = (await collectStatus(config)).sources.find((s) => s.id === 'postgres');
    const { rows } = await db.pool.query<{ confirmed: string }>(`SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`, [config.source!.slot]);
    expect(before).toMatchObject({ kind: 'postgres', exists: true, active: false, confirmedLsn: rows[0]!.confirmed, checkpoint: '0/1234', walStatus: 'reserved' });
    await db.pool.query(`INSERT INTO orders (order_no, status, movie_id, original_amount, paid_amount) SELECT 'L' || g, 'CREATED', 'm', 1, 1 FROM generate_series(1, 200) g`);
    const after = (await collectStatus(config)).sources.find((s) => s.id === 'postgres');
    if (before?.kind !== 'postgres' || after?.kind !== 'postgres') throw new Error('no postgres source');
    expect(after.lagBytes!).toBeGreaterThan(before.lagBytes! + 10_000);
    const kafka = (await collectStatus(config)).sources.find((s) => s.id === 'kafka');
    expect(kafka).toMatchObject({ kind: 'stored', streams: [{ stream: 'orders/0', position: '41' }, { stream: 'orders/1', position: '7' }] });
  });

  it('renders a human table with every figure', async () => {
    const text = renderStatus(await collectStatus(config));
    expect(text).toMatch(/^SINK\s+STATE\s+BACKLOG\s+OLDEST PENDING\s+RETRYING\s+PARKED\s+BLOCKED\s+DELIVERED 1m\s+DELIVERED\s+SHARDS BY INSTANCE$/m);
    // No instance runs: no shard is held.
    expect(text).toMatch(/^antchain\s+\?\s+3\s+9\ds\s+1\s+1\s+1\s+1\s+2\s+\(none held\)$/m);
    expect(text).toMatch(new RegExp(`^postgres\\s+${config.source!.slot}\\s+no\\s+\\(none\\)\\s+\\d+/[0-9A-F]+\\s+`, 'm'));
    expect(text).toContain('parked inputs: 2');
    expect(text).toContain(`req-antchain-${seeded.C.slice(0, 6)}`);
  });

  it('fails with a reason when the ledger is missing', async () => {
    await expect(collectStatus({ ...config, ledger: { ...config.ledger, schema: 'nope' } })).rejects.toThrow(/ledger schema "nope" does not exist yet: run `order-relay migrate/);
  });
});

describe('figures on the log and its cursors', () => {
  it('an event past the cursor behind a parked one of its order is blocked; a sink not dispatched yet has its whole log pending; held and skipped come from the rows', async () => {
    const schema = 'figures';
    const c = await db.pool.connect();
    await migrate(c, schema);
    c.release();
    const ledger = createLedger(db.pool, schema);
    const now = new Date().toISOString();
    const P1 = tradeEvent('P', 'TRADE_SUCCESS'), P2 = tradeEvent('P', 'TRADE_CONFIRM'), Q1 = tradeEvent('Q', 'TRADE_SUCCESS');
    await ledger.append({
      source: 'test',
      events: [{ event: P1, sinks: ['s1', 's2'] }, { event: P2, sinks: ['s1'] }, { event: Q1, sinks: ['s1'] }].map((e) => ({ ...e, position: '0/1', committedAt: now })),
      orders: [],
      bad: [],
      checkpoints: [],
    });
    const figures = async () => new Map((await sinkFigures(db.pool, schema, ['s1', 's2', 's3'])).map((f) => [f.sink, f]));
    // s1 parks P1; P2 (same order, so the same shard) and Q1 stay in the log past the cursor.
    await settleLog(ledger, 's1', (e) => (e.eventId === P1.id ? { as: 'rejected', attempts: 1, code: 'INVALID_EVENT', message: 'bad phone' } : 'leave'));
    let f = await figures();
    expect(f.get('s1')).toMatchObject({ backlog: 2, due: 2, retrying: 0, parked: 1, held: 0, blocked: 1, delivered: 0 });
    // s2 has no cursors yet (its dispatcher never ran): they start at the ledger's cursor_start.
    expect(f.get('s2')).toMatchObject({ backlog: 1, due: 1, parked: 0, blocked: 0 });
    expect(f.get('s2')!.oldestPendingSeconds).toBeGreaterThanOrEqual(0);
    expect(f.get('s3')).toMatchObject({ backlog: 0, oldestPendingSeconds: null });

    // P2 becomes a row held behind P1, P1 is skipped (as replay --skip leaves them), Q1 is delivered.
    await settleLog(ledger, 's1', (e) => (e.eventId === P2.id ? { as: 'rejected', attempts: 0, code: 'HELD', message: `held behind ${P1.id}` } : { as: 'delivered', attempts: 1 }));
    await db.pool.query(`UPDATE ${schema}.deliveries SET status = 'skipped' WHERE sink = 's1' AND event_id = $1`, [P1.id]);
    f = await figures();
    expect(f.get('s1')).toMatchObject({ backlog: 0, parked: 1, held: 1, blocked: 0, delivered: 1, deliveredLastMinute: 1, skipped: 1, oldestPendingSeconds: null });
    expect(await ledgerCounts(db.pool, schema)).toEqual({
      events: { TRADE_CONFIRM: 1, TRADE_SUCCESS: 2 },
      deliveries: { s1: { delivered: 1, rejected: 1, skipped: 1 }, s2: { pending: 1 } },
    });
    expect(await deliveryAudit(db.pool, schema)).toEqual([
      { sink: 's1', pairs: 3, delivered: 1, unrecorded: 0, repeated: 0, ahead: 0 },
      { sink: 's2', pairs: 1, delivered: 0, unrecorded: 0, repeated: 0, ahead: 0 },
    ]);
  });
});
