import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { backfill } from '../../src/cli/backfill.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, startSimulators, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

let db: TestDatabase;
let sims: Simulators;

beforeAll(async () => {
  db = await createTestDatabase('parked');
  await createOrderTables(db.pool);
  sims = await startSimulators();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

const insert = (no: string, status: string) =>
  `INSERT INTO orders (order_no, status, buyer_phone, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
   VALUES ('${no}', '${status}', '13800138000', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 1, 10, 9)`;

interface Parked {
  source: string;
  position: string;
  row_key: string | null;
  reason: string;
  seen_again: boolean;
}

async function parked(): Promise<Parked[]> {
  const { rows } = await db.pool.query<Parked>(
    `SELECT source, position, row_key, reason, last_seen_at IS NOT NULL AS seen_again FROM order_relay.parked_inputs WHERE resolved_at IS NULL ORDER BY id`,
  );
  return rows;
}

describe('parked inputs', () => {
  it('park a bad row once, whether the stream meets it again, in one batch or later, or a backfill reads it (and again)', async () => {
    const { config } = writeConfig(testConfig(db.url, sims), sims.env);
    const app = createApp(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const stop = new AbortController();
    const running = app.run(stop.signal);
    try {
      await waitFor(async () => (await db.pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'slot');

      await db.pool.query(insert('B1', ' ')); // a blank status: parked
      await db.pool.query(insert(' ', 'PAID')); // a blank order number: parked, named by where it came from
      // Inserted and changed in one transaction: one batch that parks the same row twice.
      await db.pool.query(`BEGIN; ${insert('B2', ' ')}; UPDATE orders SET status = '  ' WHERE order_no = 'B2'; COMMIT`);
      await db.pool.query(insert('G1', 'PAID'));
      await waitFor(async () => (await app.ledger.loadOrders(['G1'])).has('G1'), 'G1 ingested');
      const { rows: ids } = await db.pool.query<{ id: string }>(`SELECT id::text FROM orders WHERE order_no = ' '`);
      const blankId = ids[0]!.id;

      const streamed = await parked();
      expect(streamed.map((p) => [p.source, p.row_key])).toEqual([
        ['postgres', 'public.orders order_no=B1'],
        ['postgres', null],
        ['postgres', 'public.orders order_no=B2'],
      ]);
      // Without an order number, the position is the commit LSN it came from.
      expect(streamed[1]!.position).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      expect(streamed[1]!.reason).toBe('public.orders: order number column "order_no" is missing or empty');

      // The stream meets B1 again, still bad: the same parked row, seen again.
      await db.pool.query(`UPDATE orders SET status = '   ', updated_at = now() WHERE order_no = 'B1'`);
      await waitFor(async () => (await parked()).find((p) => p.row_key === 'public.orders order_no=B1')?.seen_again, 'B1 seen again');

      // A backfill reads every row: B1 and B2 are parked already; the blank order number is
      // new to it and named by table and primary key. A second run adds nothing.
      const first = await backfill(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
      expect(first.tables.find((t) => t.table === 'public.orders')!.parked).toBe(3);
      await backfill(config, { logger: silentLogger(), env: { ...process.env, ...sims.env }, restart: true });
      const after = await parked();
      expect(after.map((p) => [p.source, p.row_key, p.position.startsWith('backfill') ? p.position : 'lsn'])).toEqual([
        ['postgres', 'public.orders order_no=B1', 'lsn'],
        ['postgres', null, 'lsn'],
        ['postgres', 'public.orders order_no=B2', 'lsn'],
        ['backfill', `public.orders (id)=(${blankId})`, `backfill:(id)=(${blankId})`],
      ]);
      expect(after.map((p) => p.seen_again)).toEqual([true, false, true, true]);
      const { rows: count } = await db.pool.query(`SELECT count(*)::int AS n FROM order_relay.parked_inputs`);
      expect(count[0].n).toBe(4);

      // Once resolved, the same row parked again is a new parked input.
      await db.pool.query(`UPDATE order_relay.parked_inputs SET resolved_at = now() WHERE row_key = 'public.orders order_no=B1'`);
      await db.pool.query(`UPDATE orders SET status = ' ', updated_at = now() WHERE order_no = 'B1'`);
      await waitFor(async () => (await parked()).some((p) => p.row_key === 'public.orders order_no=B1'), 'B1 parked anew');
    } finally {
      stop.abort();
      await running;
    }
  });
});
