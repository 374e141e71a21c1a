import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClassifier } from '../../src/classify/classifier.js';
import type { BusinessEvent, Row } from '../../src/core/events.js';
import type { Sink } from '../../src/core/sink.js';
import type { SourceBatch, SourceChange } from '../../src/core/source.js';
import { createLedger, type AppendInput, type AppendResult, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { createIngest } from '../../src/pipeline/ingest.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

/**
 * The ingest step prepares the next batch while the previous one is being written. These
 * tests hold a write open and check that the next batch still sees what the held one
 * carries, that writes commit in call order, and that nothing commits past a failed write.
 */
let db: TestDatabase;
let n = 0;

beforeAll(async () => {
  db = await createTestDatabase('overlap');
});
afterAll(async () => {
  await db?.drop();
});

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

const change = (op: SourceChange['op'], after: Row, extra: Partial<SourceChange> = {}): SourceChange => ({
  table: 'public.orders', op, after, before: null, position: '0/1', committedAt: '2026-11-21T10:00:00Z', ...extra,
});
const batch = (changes: SourceChange[], lsn: string): SourceBatch => ({ changes, bad: [], checkpoints: [{ stream: 'slot', position: lsn }] });

/** A real ledger whose writes wait until the test lets each one go, or fail on demand. */
async function gatedLedger() {
  const schema = `o${++n}`;
  const c = await db.pool.connect();
  await migrate(c, schema);
  c.release();
  const real = createLedger(db.pool, schema);
  const gates: Array<{ open: () => void; fail: (e: Error) => void }> = [];
  const order: string[] = [];
  const ledger: Ledger = {
    ...real,
    prepareAppend(input: AppendInput) {
      const write = real.prepareAppend(input);
      const label = input.checkpoints[0]?.position ?? '?';
      return async (): Promise<AppendResult> => {
        await new Promise<void>((open, fail) => gates.push({ open, fail }));
        const r = await write();
        order.push(label);
        return r;
      };
    },
  };
  const waitForGate = async (count: number) => {
    for (let i = 0; i < 200 && gates.length < count; i++) await new Promise((r) => setTimeout(r, 5));
    expect(gates.length).toBeGreaterThanOrEqual(count);
  };
  return { ledger, real, schema, gates, order, waitForGate };
}

describe('ingest with a write in flight', () => {
  it('classifies the next batch against the held batch rows (TOAST fill, status) and writes in order', async () => {
    const g = await gatedLedger();
    const ingest = createIngest({ sourceId: 'postgres', ledger: g.ledger, classifier, sinks: [sink] });
    // Batch 1 creates the order with a large column; batch 2 changes the status and cannot
    // see that column (unchanged TOAST), so it must come from batch 1, still unwritten.
    const first = ingest(batch([change('insert', { order_no: 'A', status: 'PAID', seat_map: 'big-1' })], '0/10'));
    await g.waitForGate(1);
    const second = ingest(batch([change('update', { order_no: 'A', status: 'USED' }, { unknownColumns: ['seat_map'] })], '0/20'));
    // Batch 2 is prepared and queued behind batch 1 before batch 1 is written.
    await new Promise((r) => setTimeout(r, 50));
    expect(g.gates.length).toBe(1);
    g.gates[0]!.open();
    await g.waitForGate(2);
    g.gates[1]!.open();
    const [r1, r2] = await Promise.all([first, second]);
    expect([r1.inserted, r2.inserted]).toEqual([1, 1]);
    expect(g.order).toEqual(['0/10', '0/20']);
    const { rows } = await db.pool.query(`SELECT payload FROM ${g.schema}.events ORDER BY created_at, code`);
    const confirm = rows.map((r) => r.payload as BusinessEvent).find((e) => e.code === 'TRADE_CONFIRM');
    expect(confirm?.order).toEqual({ order_no: 'A', status: 'USED', seat_map: 'big-1' });
    const { rows: orders } = await db.pool.query(`SELECT row FROM ${g.schema}.orders`);
    expect(orders).toEqual([{ row: { order_no: 'A', status: 'USED', seat_map: 'big-1' } }]);
    expect(await g.real.loadCheckpoints('postgres')).toEqual([{ stream: 'slot', position: '0/20' }]);
  });

  it('never commits a batch after an earlier one failed, and starts clean afterwards', async () => {
    const g = await gatedLedger();
    const ingest = createIngest({ sourceId: 'postgres', ledger: g.ledger, classifier, sinks: [sink] });
    const first = ingest(batch([change('insert', { order_no: 'B', status: 'PAID', seat_map: 'old' })], '0/30'));
    await g.waitForGate(1);
    const second = ingest(batch([change('insert', { order_no: 'C', status: 'PAID' })], '0/40'));
    await new Promise((r) => setTimeout(r, 50));
    g.gates[0]!.fail(new Error('ledger went away'));
    await expect(first).rejects.toThrow('ledger went away');
    await expect(second).rejects.toThrow('ledger went away');
    expect(g.gates.length).toBe(1); // the second write never started
    expect(await g.real.loadCheckpoints('postgres')).toEqual([]);
    // The source re-reads from its checkpoint; what was in flight is forgotten, so an update
    // of B is classified from the ledger (which never saw B), not from the failed batch.
    const again = ingest(batch([change('update', { order_no: 'B', status: 'PAID' }, { unknownColumns: ['seat_map'] })], '0/30'));
    await g.waitForGate(2);
    g.gates[1]!.open();
    await again;
    const { rows } = await db.pool.query(`SELECT row FROM ${g.schema}.orders`);
    expect(rows).toEqual([{ row: { order_no: 'B', status: 'PAID' } }]);
  });
});
