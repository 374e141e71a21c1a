import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
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
    expect(applied.map((a) => a.length).sort()).toEqual([0, 1]);
    const { rows } = await db.pool.query('SELECT version FROM l2.schema_migrations');
    expect(rows).toEqual([{ version: 1 }]);
  });
});
