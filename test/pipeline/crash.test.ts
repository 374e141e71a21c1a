import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ensurePublicationAndSlot } from '../../connectors/sources/postgres/index.js';
import { eventId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, slotAndCheckpoint, spawnConnector, startSimulators, testConfig, writeConfig } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

const PROJECT = 'demo-cinema';
const id = (order: string, code: string, refund?: string) => eventId(refund ? [PROJECT, order, code, refund] : [PROJECT, order, code]);

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('crash');
  await createOrderTables(db.pool);
});

afterAll(async () => {
  await db?.drop();
});

function insertOrder(no: string, status: string): string {
  return `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
          VALUES ('${no}', '${status}', '13800138000', '2088000000000042', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`;
}

/** Writes a mixed workload of small transactions; returns the event ids it must produce. */
async function smallTransactions(prefix: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const no = `${prefix}${i}`;
    await db.pool.query(insertOrder(no, 'PAID'));
    ids.push(id(no, 'TRADE_SUCCESS'));
    if (i % 2 === 0) {
      await db.pool.query(`INSERT INTO refunds VALUES ('${no}-r', '${no}', 'SUCCESS', 10.00, 1)`);
      ids.push(id(no, 'REFUND_SUCCESS', `${no}-r`));
    } else {
      await db.pool.query(`UPDATE orders SET status = 'USED' WHERE order_no = '${no}'`);
      ids.push(id(no, 'TRADE_CONFIRM'));
    }
  }
  return ids;
}

async function oneLargeTransaction(prefix: string, n: number): Promise<string[]> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query(`INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
    SELECT '${prefix}' || g, 'PAID', '13800138000', '2088000000000042', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 1, 10.00, 9.00
      FROM generate_series(1, ${n}) g`);
  await client.end();
  return Array.from({ length: n }, (_, i) => id(`${prefix}${i + 1}`, 'TRADE_SUCCESS'));
}

interface Scenario {
  name: string;
  failpoint: string;
  workload: (prefix: string) => Promise<string[]>;
  config?: Record<string, unknown>;
  /** Evidence that the crash hit where intended. */
  check?: (ctx: { duplicates: number }) => void;
}

const scenarios: Scenario[] = [
  {
    name: 'after the ledger commit, before the slot is acknowledged',
    failpoint: 'ingest.after-commit=3',
    workload: (p) => smallTransactions(p, 12),
    config: { source: { maxBatchChanges: 4 } },
  },
  {
    name: 'after an API answered, before its outcome is recorded',
    failpoint: 'dispatch.after-send=4',
    workload: (p) => smallTransactions(p, 12),
    // The resend after the restart reaches the gateway as a repeat of a known key.
    check: ({ duplicates }) => expect(duplicates).toBeGreaterThan(0),
  },
  {
    name: 'in the middle of a large transaction fed in slices',
    failpoint: 'ingest.after-slice=2',
    workload: (p) => oneLargeTransaction(p, 3000),
    config: { source: { maxBatchChanges: 250 } },
  },
];

describe('crash safety: SIGKILL at each boundary, then restart', () => {
  for (const [n, scenario] of scenarios.entries()) {
    it(`loses and doubles nothing when killed ${scenario.name}`, async () => {
      const sims = await startSimulators();
      try {
        const schema = `ledger_crash_${n}`;
        const raw = testConfig(db.url, sims, { ledger: { schema }, ...(scenario.config ?? {}) });
        const { path, config } = writeConfig(raw, sims.env);
        const src = config.source!;
        const admin = await db.pool.connect();
        await ensurePublicationAndSlot(admin, { slot: src.slot, publication: src.publication, tables: ['public.orders', 'public.refunds'], create: true }, silentLogger());
        admin.release();

        const expected = await scenario.workload(`c${n}x`);

        const crashing = spawnConnector(path, { ...sims.env, ORDER_RELAY_FAILPOINTS: scenario.failpoint });
        const crash = await crashing.exited;
        expect(crash.signal, crashing.output()).toBe('SIGKILL');
        // The slot never acknowledges past what the ledger holds.
        const atKill = await slotAndCheckpoint(db.pool, src.slot, schema);
        expect(atKill.confirmed).toBeLessThanOrEqual(atKill.checkpoint);

        const survivor = spawnConnector(path, sims.env);
        await waitFor(async () => {
          const { rows } = await db.pool.query(`SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*)::int AS n FROM ${schema}.delivery_states`);
          return rows[0].n === expected.length * 2 && rows[0].pending === 0;
        }, `every delivery settled (${survivor.output().slice(-2000)})`, 60_000);
        survivor.child.kill('SIGTERM');
        expect((await survivor.exited).code).toBe(0);

        const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM ${schema}.events ORDER BY id`);
        expect(rows.map((r) => r.id)).toEqual([...expected].sort());
        const a = sims.antchain.stats();
        const z = sims.zhima.stats();
        expect([...a.effectKeys].sort()).toEqual([...expected].sort());
        expect([...z.effectKeys].sort()).toEqual([...expected].sort());
        expect(a.violations).toEqual([]);
        const end = await slotAndCheckpoint(db.pool, src.slot, schema);
        expect(end.confirmed).toBeLessThanOrEqual(end.checkpoint);
        scenario.check?.({ duplicates: a.duplicates + z.duplicates });
      } finally {
        await sims.close();
      }
    });
  }
});
