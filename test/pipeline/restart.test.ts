import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
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
    await waitFor(async () => (await pool.query('SELECT 1 FROM pg_replication_slots')).rowCount, 'slot');
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
