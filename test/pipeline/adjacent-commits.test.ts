import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ensurePublicationAndSlot } from '../../connectors/sources/postgres/index.js';
import { eventId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, slotAndCheckpoint, spawnConnector, startSimulators, testConfig, writeConfig } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The case that lost a whole transaction: transaction A commits, transaction B (written
 * concurrently, larger than maxBatchChanges) commits right after it, so B's commit record
 * starts exactly where A's ends. The connector stores and acknowledges A, then dies before
 * all (or any) of B is stored. PostgreSQL resumes at confirmed_flush_lsn and skips every
 * transaction whose commit record starts before it: an acknowledgement one byte past A's
 * end loses B for good.
 */

const PROJECT = 'demo-cinema';
const trade = (order: string) => eventId([PROJECT, order, 'TRADE_SUCCESS']);

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('adjacent');
  await createOrderTables(db.pool);
});

afterAll(async () => {
  await db?.drop();
});

const COLUMNS = `order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount`;
const VALUES = (no: string) => `${no}, 'PAID', '13800138000', '2088000000000042', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 1, 10.00, 9.00`;

interface Txn {
  finalLsn: bigint; // where its commit record starts
  endLsn: bigint; // where its commit record ends
}

/** Begin/commit positions of the transactions a pgoutput probe slot has seen since the last call. */
async function probeTransactions(slot: string, publication: string): Promise<Txn[]> {
  const { rows } = await db.pool.query<{ data: Buffer }>(
    `SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
    [slot, publication],
  );
  const txns: Txn[] = [];
  let begin: bigint | null = null;
  for (const { data } of rows) {
    const tag = String.fromCharCode(data[0]!);
    if (tag === 'B') begin = data.readBigUInt64BE(1); // Begin: final LSN of the transaction
    if (tag === 'C' && begin !== null) txns.push({ finalLsn: data.readBigUInt64BE(2), endLsn: data.readBigUInt64BE(10) }); // Commit: flags, commit LSN, end LSN
  }
  return txns;
}

/**
 * Creates the connector's slot, then commits a one-order transaction A and, right after it, a
 * transaction B of `size` orders that was written while A ran. Other databases of the
 * suite's server write WAL too, so a probe slot checks that B's commit record starts exactly
 * at A's end; if not, both slots go and the round is tried again (orders committed before
 * the slot are not in its stream). Returns A's end and the orders the slot will stream.
 */
async function adjacentCommits(prefix: string, size: number, src: { slot: string; publication: string }): Promise<{ aEnd: bigint; bOrders: string[]; all: string[] }> {
  const probe = `${src.slot}_probe`;
  for (let round = 0; round < 20; round++) {
    const admin = await db.pool.connect();
    try {
      await ensurePublicationAndSlot(admin, { slot: src.slot, publication: src.publication, tables: ['public.orders', 'public.refunds'], create: true }, silentLogger());
      await admin.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [probe]);
    } finally {
      admin.release();
    }
    const a = `${prefix}a${round}`;
    const bOrders = Array.from({ length: size }, (_, i) => `${prefix}b${round}_${i + 1}`);
    const writerB = new pg.Client({ connectionString: db.url });
    await writerB.connect();
    try {
      await writerB.query('BEGIN');
      await writerB.query(`INSERT INTO orders (${COLUMNS}) SELECT ${VALUES(`'${prefix}b${round}_' || g`)} FROM generate_series(1, ${size}) g`);
      await db.pool.query(`INSERT INTO orders (${COLUMNS}) VALUES (${VALUES(`'${a}'`)})`);
      await writerB.query('COMMIT');
    } finally {
      await writerB.end();
    }
    const txns = await probeTransactions(probe, src.publication);
    await db.pool.query(`SELECT pg_drop_replication_slot($1)`, [probe]);
    const [ta, tb] = txns;
    if (txns.length === 2 && ta && tb && tb.finalLsn === ta.endLsn) return { aEnd: ta.endLsn, bOrders, all: [a, ...bOrders] };
    await db.pool.query(`SELECT pg_drop_replication_slot($1)`, [src.slot]);
  }
  throw new Error('could not get two adjacent commit records in 20 rounds');
}

const scenarios = [
  { name: 'part of the second transaction stored', size: 1200, maxBatchChanges: 250, hangAt: 3, bStoredAtKill: (n: number) => n > 0 && n < 1200 },
  // Batches of one change: the kill comes before the second transaction's first slice or, on
  // a loaded machine, right after it (seen once in CI: 1 of 300 stored).
  { name: 'none (or one slice) of the second transaction stored', size: 300, maxBatchChanges: 1, hangAt: 2, bStoredAtKill: (n: number) => n <= 1 },
];

describe('adjacent commit records: the slot is acknowledged exactly at the ledger checkpoint', () => {
  for (const [n, scenario] of scenarios.entries()) {
    it(`re-delivers the second transaction after a kill with ${scenario.name}`, { timeout: 120_000 }, async () => {
      const sims = await startSimulators();
      try {
        const schema = `ledger_adjacent_${n}`;
        const raw = testConfig(db.url, sims, { ledger: { schema }, source: { maxBatchChanges: scenario.maxBatchChanges } });
        const { path, config } = writeConfig(raw, sims.env);
        const src = config.source!;
        const { aEnd, bOrders, all } = await adjacentCommits(`j${n}`, scenario.size, src);

        // The connector stores the batch ending with A, acknowledges it, and then stops before
        // the batch that would store (more of) B: it hangs there and is killed.
        const crashing = spawnConnector(path, { ...sims.env, ORDER_RELAY_FAILPOINTS: `ingest.before=${scenario.hangAt}:hang` });
        await waitFor(() => crashing.output().includes('failpoint ingest.before: hanging'), `the connector to reach the failpoint (${crashing.output()})`);
        await waitFor(async () => (await slotAndCheckpoint(db.pool, src.slot, schema)).confirmed >= aEnd, 'the slot to be acknowledged up to the first transaction');
        crashing.child.kill('SIGKILL');
        await crashing.exited;

        const atKill = await slotAndCheckpoint(db.pool, src.slot, schema);
        expect(atKill.checkpoint).toBeGreaterThanOrEqual(aEnd);
        const { rows: stored } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.events WHERE id = ANY($1::text[])`, [bOrders.map(trade)]);
        expect(scenario.bStoredAtKill(stored[0]!.n), `events of the second transaction stored at the kill: ${stored[0]!.n}`).toBe(true);

        // An order committed after B: once it is stored, everything before it has been read.
        const after = `j${n}z`;
        await db.pool.query(`INSERT INTO orders (${COLUMNS}) VALUES (${VALUES(`'${after}'`)})`);
        const expected = [...all, after].map(trade).sort();

        const survivor = spawnConnector(path, sims.env);
        await waitFor(async () => {
          const { rows } = await db.pool.query(`SELECT 1 FROM ${schema}.events WHERE id = $1`, [trade(after)]);
          return rows.length === 1;
        }, `the order committed after the kill to be stored (${survivor.output().slice(-2000)})`);
        const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM ${schema}.events ORDER BY id`);
        const missing = expected.filter((id) => !rows.some((r) => r.id === id));
        expect(missing.length, `events never stored (slot at the kill ${atKill.confirmed}, ledger checkpoint ${atKill.checkpoint})`).toBe(0);
        expect(atKill.confirmed).toBeLessThanOrEqual(atKill.checkpoint);
        expect(rows.map((r) => r.id)).toEqual(expected);

        await waitFor(async () => {
          const { rows: d } = await db.pool.query(`SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*)::int AS n FROM ${schema}.delivery_states`);
          return d[0].n === expected.length * 2 && d[0].pending === 0;
        }, 'every delivery settled', 60_000);
        survivor.child.kill('SIGTERM');
        expect((await survivor.exited).code).toBe(0);
        expect([...sims.antchain.stats().effectKeys].sort()).toEqual(expected);
        expect([...sims.zhima.stats().effectKeys].sort()).toEqual(expected);
        const end = await slotAndCheckpoint(db.pool, src.slot, schema);
        expect(end.confirmed).toBeLessThanOrEqual(end.checkpoint);
      } finally {
        await sims.close();
      }
    });
  }
});
