import { afterAll, beforeAll } from 'vitest';
import pg from 'pg';
import { startPostgres, type LocalPostgres } from '../../src/sandbox/postgres.js';
import { createOrderTables, startSimulators, type Connector, type Simulators } from './pipeline.js';

/**
 * What the frozen-instance tests share: their own Postgres (wal_sender_timeout 3s, so a frozen
 * owner's walsender gives the slot up in seconds instead of the default 60 s), the simulators,
 * the order tables, and the connectors they spawn, resumed and killed at the end.
 */
export function frozenInstanceFixture() {
  const f = {
    server: undefined as unknown as LocalPostgres,
    sims: undefined as unknown as Simulators,
    pool: undefined as unknown as pg.Pool,
    connectors: [] as Connector[],
    insertPaid: (no: string) =>
      f.pool.query(
        `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
         VALUES ($1, 'PAID', '13800138000', '2088000000000042', 'm', 1, 'C', 'S', '1', '2026-12-01 10:00:00', 1, '10.00', '9.00')`,
        [no],
      ),
  };
  beforeAll(async () => {
    [f.server, f.sims] = await Promise.all([startPostgres({ preferSystem: true, settings: { wal_sender_timeout: '3s' } }), startSimulators()]);
    f.pool = new pg.Pool({ connectionString: f.server.url, max: 2 });
    f.pool.on('error', () => {});
    await createOrderTables(f.pool);
  });
  afterAll(async () => {
    for (const c of f.connectors) {
      c.child.kill('SIGCONT');
      c.child.kill('SIGKILL');
    }
    await Promise.all(f.connectors.map((c) => c.exited));
    await f.pool?.end();
    await f.sims?.close();
    await f.server?.stop();
  });
  return f;
}
