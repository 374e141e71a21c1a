import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateLedger } from '../../src/app.js';
import { doctor, type Check } from '../../src/cli/doctor.js';
import { startConnector, type RunningConnector } from '../../src/cli/connector.js';
import { collectStatus, parseUnmapped, renderStatus } from '../../src/cli/status.js';
import type { Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics, UNMAPPED_STATUSES } from '../../src/observe/metrics.js';
import type { IngestResult } from '../../src/pipeline/ingest.js';
import { freePort } from '../../src/sandbox/postgres.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';
import { operatorConfig, startSims } from './helpers.js';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let config: Config;

beforeAll(async () => {
  db = await createTestDatabase('unmapped');
  await createOrderTables(db.pool);
  sims = await startSims();
  config = operatorConfig(db.url, sims, { admin: { listen: `127.0.0.1:${await freePort()}` } }).config;
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

function order(no: string, status: string): Promise<unknown> {
  return db.pool.query(
    `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
     VALUES ($1, $2, '13800138000', '2088000000000001', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`,
    [no, status],
  );
}

const byName = (checks: Check[]) => new Map(checks.map((c) => [c.name, c]));

describe('a status no mapping lists', () => {
  it('is counted per source, table and status, shown by status from the running instance, and named by doctor with its likely match', async () => {
    // The config maps PAID; the rows hold "paid" (a typo of case) and CREATED (nothing to report).
    await order('U1', 'paid');
    await order('U2', 'paid');
    await order('U3', 'CREATED');

    const checks = byName(await doctor(config, { env: { ...process.env, ...sims.env }, offline: true }));
    expect(checks.get('statuses public.orders')).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('orders.statuses has PAID but the table holds "paid" (2 rows): statuses are compared exactly'),
      fix: 'write "paid" instead of PAID in orders.statuses',
    });
    expect(checks.get('statuses public.orders')!.detail).toContain('in no mapping, so they yield no events: "CREATED" (1 row)');

    await migrateLedger(config);
    // Without an instance, status says the count is unknown rather than zero.
    const offline = await collectStatus(config);
    expect(offline.unmapped).toBeNull();
    expect(renderStatus(offline)).toContain('changes with a status in no mapping: unknown');

    const stop = new AbortController();
    let connector: RunningConnector | undefined;
    try {
      connector = await startConnector(config, { logger: silentLogger(), env: { ...process.env, ...sims.env }, signal: stop.signal, defaultMetrics: false });
      const running = connector;
      await waitFor(() => running.probe.live().sources.every((s) => s.connected), 'the connector to stream');
      // The slot starts after U1–U3: stream new ones.
      await order('U4', 'paid');
      await order('U5', 'CREATED');
      await db.pool.query(`UPDATE orders SET status = 'paid', updated_at = now() WHERE order_no = 'U5'`);
      await order('U6', 'PAID');
      await waitFor(async () => (await running.app.ledger.loadOrders(['U6'])).has('U6'), 'U6 ingested');

      const metrics = await (await fetch(`${running.admin!.url}/metrics`)).text();
      expect(parseUnmapped(metrics).sort((a, b) => a.status.localeCompare(b.status))).toEqual([
        { source: 'postgres', table: 'public.orders', status: 'CREATED', n: 1 },
        { source: 'postgres', table: 'public.orders', status: 'paid', n: 2 },
      ]);
      const report = await collectStatus(config);
      expect(report.unmapped).toEqual([
        { source: 'postgres', total: 3, statuses: [{ table: 'public.orders', status: 'paid', n: 2 }, { table: 'public.orders', status: 'CREATED', n: 1 }] },
      ]);
      expect(renderStatus(report)).toContain('postgres: changes with a status in no mapping: 3 (e.g. paid ×2, CREATED ×1)');
      // The mapped one became its event; the unmapped ones none.
      const { rows } = await db.pool.query(`SELECT order_no, code FROM order_relay.events ORDER BY order_no`);
      expect(rows).toEqual([{ order_no: 'U6', code: 'TRADE_SUCCESS' }]);
    } finally {
      stop.abort();
      await connector?.done;
    }

    // Once the mapping matches what the table holds, doctor has nothing to warn about.
    const fixed = byName(await doctor({ ...config, orders: { ...config.orders, statuses: { ...config.orders.statuses, paid: ['TRADE_SUCCESS'] } } }, { env: { ...process.env, ...sims.env }, offline: true }));
    expect(fixed.get('statuses public.orders')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^mapped: paid \(4 rows\), PAID \(1 row\); in no mapping, so they yield no events: "CREATED" \(1 row\)/) });
  });

  it('keeps the metric bounded: the first values per table get a series, the rest count as (other)', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const statuses = Array.from({ length: UNMAPPED_STATUSES + 5 }, (_, i) => `S${String(i).padStart(2, '0')}`);
    const result = {
      unmapped: statuses.map((status) => ({ source: 'postgres', table: 'public.orders', status, n: 2 })),
      codes: {},
      stored: {},
      bad: 0,
    } as unknown as IngestResult;
    metrics.hooks.onIngested!(result);
    metrics.hooks.onIngested!(result);
    const samples = parseUnmapped(await metrics.registry.metrics());
    expect(samples).toHaveLength(UNMAPPED_STATUSES + 1);
    expect(samples.find((s) => s.status === 'S00')?.n).toBe(4);
    expect(samples.find((s) => s.status === '(other)')?.n).toBe(5 * 4);
    expect(samples.reduce((a, b) => a + b.n, 0)).toBe(statuses.length * 4);
  });
});
