import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createPostgresSource, postgresSourceSchema } from '../../connectors/sources/postgres/index.js';
import { createApp } from '../../src/app.js';
import { eventId } from '../../src/core/ids.js';
import { silentLogger } from '../../src/log.js';
import { startPostgres, type LocalPostgres } from '../../src/sandbox/postgres.js';
import { createOrderTables, startSimulators, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

// This test restarts its server, so it gets one of its own instead of the suite's.
let server: LocalPostgres;
let sims: Simulators;

beforeAll(async () => {
  server = await startPostgres({ preferSystem: true });
  sims = await startSimulators();
});
afterAll(async () => {
  await sims?.close();
  await server?.stop();
});

describe('an idle server (nobody else writes WAL here)', () => {
  it('keeps the slot where it is without a heartbeat, and moves it forward with one', async () => {
    const pool = new pg.Pool({ connectionString: server.url, max: 2 });
    await pool.query('CREATE TABLE IF NOT EXISTS idle_items (id serial PRIMARY KEY)');
    const lsn = async (sql: string) => BigInt((await pool.query(sql)).rows[0]?.l ?? 0);
    const confirmed = (slot: string) => lsn(`SELECT (confirmed_flush_lsn - '0/0')::text AS l FROM pg_replication_slots WHERE slot_name = '${slot}'`);
    const stream = (slot: string, heartbeat: string) => {
      const config = postgresSourceSchema.parse({ kind: 'postgres', slot, publication: 'idle_pub', heartbeat, statusInterval: '100ms' });
      const source = createPostgresSource(config, { logger: silentLogger(), url: server.url, tables: ['public.idle_items'] });
      const stop = new AbortController();
      const done = source.run(async (b) => source.acknowledge(b.checkpoints), [], stop.signal);
      return { source, stop: async () => (stop.abort(), await done) };
    };
    const quiet = stream('idle_quiet', 'off');
    await waitFor(() => quiet.source.health().connected, 'connected');
    const before = await confirmed('idle_quiet');
    // Absence of movement can only be shown over a window: 1.5 s of silence.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await confirmed('idle_quiet')).toBe(before);
    await quiet.stop();

    const beating = stream('idle_beat', '100ms');
    await waitFor(() => beating.source.health().connected, 'connected');
    const start = await lsn(`SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS l`);
    await waitFor(async () => (await confirmed('idle_beat')) > start, 'heartbeats to carry the slot forward', 20_000);
    await beating.stop();
    await pool.end();
  });
});

describe('Postgres restart', () => {
  it('reconnects the stream and the ledger and delivers every event once', async () => {
    const pool = new pg.Pool({ connectionString: server.url, max: 2 });
    pool.on('error', () => {});
    await createOrderTables(pool);
    const raw = testConfig(server.url, sims);
    const { config } = writeConfig(raw, sims.env);
    const app = createApp(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const stop = new AbortController();
    const running = app.run(stop.signal);
    await waitFor(async () => (await pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot])).rowCount, 'slot');
    const insert = (no: string) =>
      pool.query(`INSERT INTO orders (order_no, status, buyer_phone, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
                  VALUES ($1, 'PAID', '13800138000', 'm', 1, 'C', 'S', '1', '2026-12-01 10:00:00', 1, 10, 9)`, [no]);
    const expected: string[] = [];
    for (let i = 0; i < 10; i++) {
      await insert(`before${i}`);
      expected.push(eventId(['demo-cinema', `before${i}`, 'TRADE_SUCCESS']));
    }
    await waitFor(() => sims.antchain.stats().effects >= 1, 'first effects');
    await server.restart();
    for (let i = 0; i < 10; i++) {
      await waitFor(() => insert(`after${i}`).then(() => true), 'insert after restart', 10_000);
      expected.push(eventId(['demo-cinema', `after${i}`, 'TRADE_SUCCESS']));
    }
    await waitFor(() => sims.antchain.stats().effects >= expected.length, 'all effects after the restart', 30_000);
    expect([...sims.antchain.stats().effectKeys].sort()).toEqual(expected.sort());
    expect(app.sources[0]!.source.health().reconnects).toBeGreaterThan(0);
    stop.abort();
    await running;
    await pool.end();
  });
});
