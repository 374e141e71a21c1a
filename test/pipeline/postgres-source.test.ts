import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { createPostgresSource, postgresSourceSchema, SlotMissingError } from '../../connectors/sources/postgres/index.js';
import { parseLsn } from '../../connectors/sources/postgres/lsn.js';
import type { SourceBatch, SourceChange } from '../../src/core/source.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

let db: TestDatabase;
let n = 0;

beforeAll(async () => {
  db = await createTestDatabase('src');
  await db.pool.query(`
    CREATE TABLE items (id bigserial PRIMARY KEY, order_no text, status text, notes text, amount numeric(12,2), at timestamptz, local_at timestamp);
    CREATE TABLE full_items (id bigserial PRIMARY KEY, order_no text, status text, notes text);
    ALTER TABLE full_items REPLICA IDENTITY FULL;
    ALTER TABLE items ALTER COLUMN notes SET STORAGE EXTERNAL;
    ALTER TABLE full_items ALTER COLUMN notes SET STORAGE EXTERNAL;
    CREATE TABLE unpublished (id serial PRIMARY KEY, v text);`);
});

afterAll(async () => {
  await db?.drop();
});

/** A source on its own slot, recording every batch; acknowledges like the pipeline does. */
function startSource(overrides: Record<string, unknown> = {}, tables = ['public.items', 'public.full_items'], ack = true) {
  const i = ++n;
  const config = postgresSourceSchema.parse({ kind: 'postgres', slot: `slot_${i}`, publication: `pub_${i}`, heartbeat: 'off', statusInterval: '200ms', reconnect: { initialBackoff: '50ms', maxBackoff: '200ms' }, ...overrides });
  const source = createPostgresSource(config, { logger: silentLogger(), url: db.url, tables });
  const batches: SourceBatch[] = [];
  const stop = new AbortController();
  const done = source.run(
    async (batch) => {
      batches.push(batch);
      if (ack) source.acknowledge(batch.checkpoints);
    },
    [],
    stop.signal,
  );
  const changes = (): SourceChange[] => batches.flatMap((b) => b.changes);
  const ready = () => waitFor(() => source.health().connected, 'source connected');
  return { source, config, batches, changes, ready, stop: async () => (stop.abort(), await done), done };
}

async function confirmed(slot: string): Promise<bigint> {
  const { rows } = await db.pool.query(`SELECT (confirmed_flush_lsn - '0/0')::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  return BigInt(rows[0]?.l ?? 0);
}

describe('Postgres source', () => {
  it('streams inserts, updates and deletes as JSON-safe rows, with and without old rows', async () => {
    const s = startSource();
    await s.ready();
    await db.pool.query(`INSERT INTO items (order_no, status, amount, at, local_at) VALUES ('o1', 'NEW', 12.50, '2026-01-02T03:04:05Z', '2026-01-02 11:04:05')`);
    await db.pool.query(`UPDATE items SET status = 'PAID' WHERE order_no = 'o1'`);
    await db.pool.query(`INSERT INTO full_items (order_no, status) VALUES ('o2', 'NEW')`);
    await db.pool.query(`UPDATE full_items SET status = 'PAID' WHERE order_no = 'o2'`);
    await db.pool.query(`DELETE FROM items WHERE order_no = 'o1'`);
    await waitFor(() => s.changes().length === 5, '5 changes');
    const [ins, upd, fins, fupd, del] = s.changes();
    expect(ins).toMatchObject({ table: 'public.items', op: 'insert', before: null, after: { order_no: 'o1', status: 'NEW', amount: '12.50', at: '2026-01-02T03:04:05.000Z', local_at: '2026-01-02 11:04:05' } });
    // REPLICA IDENTITY DEFAULT: no old row.
    expect(upd).toMatchObject({ op: 'update', before: null, after: { status: 'PAID' } });
    expect(fins!.table).toBe('public.full_items');
    // FULL: the old row comes along.
    expect(fupd).toMatchObject({ op: 'update', before: { status: 'NEW' }, after: { status: 'PAID' } });
    expect(del).toMatchObject({ op: 'delete', after: null, before: { id: ins!.after!.id } });
    expect(new Date(ins!.committedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    await s.stop();
  });

  it('never mistakes an unchanged TOAST value for a real one', async () => {
    const s = startSource();
    await s.ready();
    const big = Array.from({ length: 4000 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join('');
    await db.pool.query(`INSERT INTO items (order_no, status, notes) VALUES ('t1', 'NEW', $1)`, [big]);
    await db.pool.query(`INSERT INTO full_items (order_no, status, notes) VALUES ('t2', 'NEW', $1)`, [big]);
    await db.pool.query(`UPDATE items SET status = 'PAID' WHERE order_no = 't1'`);
    await db.pool.query(`UPDATE full_items SET status = 'PAID' WHERE order_no = 't2'`);
    await waitFor(() => s.changes().length === 4, '4 changes');
    const [, , upd, fupd] = s.changes();
    expect(upd!.after).not.toHaveProperty('notes');
    expect(upd!.unknownColumns).toEqual(['notes']);
    expect(fupd!.after!.notes).toBe(big);
    expect(fupd!.unknownColumns).toEqual([]);
    await s.stop();
  });

  it('feeds a 100,000-row transaction in bounded slices and checkpoints it only at its end', async () => {
    const s = startSource({ maxBatchChanges: 5000 }, ['public.items']);
    await s.ready();
    await db.pool.query(`INSERT INTO items (order_no, status) SELECT 'big' || g, 'PAID' FROM generate_series(1, 100000) g`);
    await waitFor(() => s.changes().length === 100_000, '100k changes', 60_000);
    const sizes = s.batches.filter((b) => b.changes.length > 0).map((b) => b.changes.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(5000);
    expect(sizes.length).toBeGreaterThanOrEqual(20);
    const withChanges = s.batches.filter((b) => b.changes.length > 0);
    // Only the slice that ends the transaction carries a checkpoint.
    expect(withChanges.slice(0, -1).every((b) => b.checkpoints.length === 0)).toBe(true);
    expect(withChanges.at(-1)!.checkpoints).toHaveLength(1);
    // The slot is acknowledged at the checkpoint itself, not one byte past it: the server
    // skips a transaction whose commit record starts before confirmed_flush_lsn.
    const end = parseLsn(withChanges.at(-1)!.checkpoints[0]!.position);
    await waitFor(async () => (await confirmed(s.config.slot)) >= end, 'the slot acknowledged up to the transaction');
    // Idle keepalives may have moved it on since: to another checkpoint, never in between.
    const acked = await confirmed(s.config.slot);
    expect(s.batches.flatMap((b) => b.checkpoints.map((c) => parseLsn(c.position)))).toContain(acked);
    await s.stop();
  });

  it('advances an idle slot past writes to unpublished tables', async () => {
    const s = startSource({}, ['public.items']);
    await s.ready();
    await db.pool.query(`INSERT INTO items (order_no, status) VALUES ('i1', 'NEW')`);
    await waitFor(() => s.changes().length === 1, 'first change');
    const before = await confirmed(s.config.slot);
    for (let i = 0; i < 20; i++) await db.pool.query(`INSERT INTO unpublished (v) SELECT repeat('x', 1000) FROM generate_series(1, 50)`);
    const { rows } = await db.pool.query(`SELECT (pg_current_wal_lsn() - '0/0')::text AS l`);
    const walNow = BigInt(rows[0].l);
    await waitFor(async () => (await confirmed(s.config.slot)) >= walNow, 'confirmed_flush_lsn to pass the unpublished writes', 30_000);
    expect(await confirmed(s.config.slot)).toBeGreaterThan(before);
    expect(s.changes()).toHaveLength(1);
    await s.stop();
  });

  it('reconnects after the walsender is terminated and loses nothing', async () => {
    const s = startSource({}, ['public.items']);
    await s.ready();
    await db.pool.query(`INSERT INTO items (order_no, status) VALUES ('r1', 'NEW')`);
    await waitFor(() => s.changes().some((c) => c.after?.order_no === 'r1'), 'r1');
    await db.pool.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, [s.config.slot]);
    await db.pool.query(`INSERT INTO items (order_no, status) VALUES ('r2', 'NEW')`);
    await waitFor(() => s.changes().some((c) => c.after?.order_no === 'r2'), 'r2 after reconnect', 30_000);
    expect(s.source.health().reconnects).toBeGreaterThan(0);
    expect(s.changes().filter((c) => c.after?.order_no === 'r1')).toHaveLength(1);
    await s.stop();
  });

  it('stands by while another instance holds the slot, and takes over when it is released', async () => {
    const a = startSource({}, ['public.items']);
    await a.ready();
    const config = postgresSourceSchema.parse({ kind: 'postgres', slot: a.config.slot, publication: a.config.publication, heartbeat: 'off', reconnect: { initialBackoff: '50ms', maxBackoff: '100ms' } });
    const b = createPostgresSource(config, { logger: silentLogger(), url: db.url, tables: ['public.items'] });
    const seen: SourceChange[] = [];
    const stopB = new AbortController();
    const runningB = b.run(async (batch) => { seen.push(...batch.changes); b.acknowledge(batch.checkpoints); }, [], stopB.signal);
    await waitFor(() => b.health().role === 'standby', 'standby to stand by');
    expect(b.health().connected).toBe(false);
    expect(a.source.health().role).toBe('owner');
    await a.stop();
    await waitFor(() => b.health().connected, 'standby to take over');
    await db.pool.query(`INSERT INTO items (order_no, status) VALUES ('h1', 'NEW')`);
    await waitFor(() => seen.some((c) => c.after?.order_no === 'h1'), 'h1 via the standby');
    stopB.abort();
    await runningB;
  });

  it('holding the lock, waits out a slot a consumer of another kind streams, and takes over when it stops', async () => {
    const a = startSource({}, ['public.items']);
    await a.ready();
    await a.stop();
    // Not an order-relay instance: it streams the slot without the lock.
    const foreign = new LogicalReplicationService({ connectionString: db.url }, { acknowledge: { auto: false, timeoutSeconds: 0 } });
    foreign.on('error', () => {});
    void foreign.subscribe(new PgoutputPlugin({ protoVersion: 1, publicationNames: [a.config.publication] }), a.config.slot).catch(() => {});
    await waitFor(async () => (await db.pool.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [a.config.slot])).rowCount === 1, 'the foreign consumer to stream');
    const config = postgresSourceSchema.parse({ kind: 'postgres', slot: a.config.slot, publication: a.config.publication, heartbeat: 'off', reconnect: { initialBackoff: '50ms', maxBackoff: '100ms' } });
    const b = createPostgresSource(config, { logger: silentLogger(), url: db.url, tables: ['public.items'] });
    const seen: SourceChange[] = [];
    const stopB = new AbortController();
    const runningB = b.run(async (batch) => { seen.push(...batch.changes); b.acknowledge(batch.checkpoints); }, [], stopB.signal);
    await waitFor(() => /in use/.test(b.health().lastError ?? ''), 'the slot reported in use');
    expect(b.health()).toMatchObject({ connected: false, role: 'owner' });
    await foreign.stop();
    await waitFor(() => b.health().connected, 'b to stream once the foreign consumer stops');
    await db.pool.query(`INSERT INTO items (order_no, status) VALUES ('h2', 'NEW')`);
    await waitFor(() => seen.some((c) => c.after?.order_no === 'h2'), 'h2 via b');
    stopB.abort();
    await runningB;
  });

  it('fails with a clear error when the slot is missing and may not be created', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(`CREATE PUBLICATION pub_missing FOR TABLE items`);
    await client.end();
    const config = postgresSourceSchema.parse({ kind: 'postgres', slot: 'no_such_slot', publication: 'pub_missing', create: false });
    const source = createPostgresSource(config, { logger: silentLogger(), url: db.url, tables: ['public.items'] });
    await expect(source.run(async () => {}, [], new AbortController().signal)).rejects.toThrow(SlotMissingError);
    await expect(source.run(async () => {}, [], new AbortController().signal)).rejects.toThrow(/replication slot "no_such_slot" does not exist/);
  });

  it('skips transactions at or below the stored checkpoint when the server sends them again', async () => {
    // The first source never acknowledges: "ledger committed, acknowledgement lost".
    const first = startSource({}, ['public.items'], false);
    await first.ready();
    await db.pool.query(`INSERT INTO items (order_no, status) VALUES ('k1', 'NEW')`);
    await waitFor(() => first.batches.some((b) => b.checkpoints.length > 0 && b.changes.length > 0), 'k1 checkpointed');
    const checkpoint = first.batches.filter((b) => b.changes.length > 0).at(-1)!.checkpoints;
    await first.stop();
    const slotBefore = await confirmed(first.config.slot);
    await db.pool.query(`INSERT INTO items (order_no, status) VALUES ('k2', 'NEW')`);
    const config = postgresSourceSchema.parse({ kind: 'postgres', slot: first.config.slot, publication: first.config.publication, heartbeat: 'off' });
    const again = createPostgresSource(config, { logger: silentLogger(), url: db.url, tables: ['public.items'] });
    const seen: SourceChange[] = [];
    const stop = new AbortController();
    const running = again.run(async (batch) => { seen.push(...batch.changes); again.acknowledge(batch.checkpoints); }, checkpoint, stop.signal);
    await waitFor(() => seen.some((c) => c.after?.order_no === 'k2'), 'k2');
    expect(seen.map((c) => c.after?.order_no)).toEqual(['k2']);
    // k1 really was still unacknowledged at the server, so the skip was ours.
    expect(slotBefore).toBeLessThan(BigInt(`0x${checkpoint[0]!.position.split('/')[0]}`) * 2n ** 32n + BigInt(`0x${checkpoint[0]!.position.split('/')[1]}`));
    stop.abort();
    await running;
  });
});
