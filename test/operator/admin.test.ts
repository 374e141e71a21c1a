import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConnector, type RunningConnector } from '../../src/cli/connector.js';
import { collectStatus } from '../../src/cli/status.js';
import type { Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { freePort } from '../../src/sandbox/postgres.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';
import { operatorConfig, startSims } from './helpers.js';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let config: Config;
let connector: RunningConnector;
let base: string;
const stop = new AbortController();

beforeAll(async () => {
  db = await createTestDatabase('admin');
  await createOrderTables(db.pool);
  sims = await startSims();
  const port = await freePort();
  config = operatorConfig(db.url, sims, { admin: { listen: `127.0.0.1:${port}` } }).config;
  // AntChain gets a wrong secret: the gateway answers ACCESS_DENIED and the sink pauses.
  const env = { ...process.env, ...sims.env, ANTCHAIN_ACCESS_SECRET: 'not-the-secret' };
  connector = await startConnector(config, { logger: silentLogger(), env, signal: stop.signal });
  base = connector.admin!.url;
  await waitFor(() => connector.probe.live().sources.every((s) => s.connected), 'the connector to stream');
});

afterAll(async () => {
  stop.abort();
  await connector?.done;
  await sims?.close();
  await db?.drop();
});

async function get(path: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** The value of one sample line of the Prometheus text format. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[3] ?? '').split(/,(?=\w+=")/).filter(Boolean);
    if (want.every((w) => have.includes(w))) return Number(m[4]);
  }
  return undefined;
}

function order(no: string): string {
  return `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
          VALUES ('${no}', 'PAID', '13800138000', '2088000000000001', '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`;
}

describe('admin listener', () => {
  it('binds to loopback and answers /healthz, /readyz (ready before any failure)', async () => {
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await get('/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({
      ready: true,
      checks: [
        { name: 'ledger', ok: true, detail: 'reachable' },
        { name: 'source:postgres', ok: true, role: 'owner', detail: 'streaming' },
        { name: 'sink:antchain', ok: true, detail: 'delivering' },
        { name: 'sink:zhima', ok: true, detail: 'delivering' },
      ],
    });
    expect((await get('/nope')).status).toBe(404);
  });

  it('serves Prometheus metrics with the figures of what happened, and a paused sink is loud everywhere', async () => {
    await db.pool.query(order('M01'));
    await db.pool.query(order('M02'));
    await db.pool.query(`UPDATE orders SET status = 'USED' WHERE order_no = 'M01'`);
    await db.pool.query(`UPDATE orders SET status = '' WHERE order_no = 'M02'`); // a bad row: parked input
    await waitFor(() => sims.zhima.stats().effects >= 3, 'zhima effects');
    // An effect at the gateway comes a moment before its outcome is recorded (and counted).
    await waitFor(async () => sample((await get('/metrics')).body, 'order_relay_delivery_latency_seconds_count', { sink: 'zhima' }) === 3, 'zhima outcomes recorded');
    await waitFor(() => connector.probe.live().sinks.find((s) => s.sink === 'antchain')?.paused, 'antchain paused');

    const ready = await get('/readyz');
    expect(ready.status).toBe(503);
    const r = JSON.parse(ready.body) as { ready: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> };
    expect(r.ready).toBe(false);
    expect(r.checks.find((c) => c.name === 'sink:antchain')).toMatchObject({ ok: false, detail: expect.stringMatching(/^PAUSED since .*: ACCESS_DENIED/) });

    const m = await get('/metrics');
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const t = m.body;
    // M01 PAID, M02 PAID, M01 USED (TRADE_SUCCESS again: classified, then dropped by id).
    expect(sample(t, 'order_relay_events_classified_total', { code: 'TRADE_SUCCESS' })).toBe(3);
    expect(sample(t, 'order_relay_events_classified_total', { code: 'TRADE_CONFIRM' })).toBe(1);
    expect(sample(t, 'order_relay_events_stored_total', { code: 'TRADE_SUCCESS' })).toBe(2);
    expect(sample(t, 'order_relay_events_stored_total', { code: 'TRADE_CONFIRM' })).toBe(1);
    expect(sample(t, 'order_relay_inputs_parked_total')).toBe(1);
    expect(sample(t, 'order_relay_parked_inputs')).toBe(1);
    expect(sample(t, 'order_relay_deliveries_total', { sink: 'zhima', outcome: 'delivered' })).toBe(3);
    expect(sample(t, 'order_relay_deliveries_total', { sink: 'antchain', outcome: 'sink_failure' })).toBeGreaterThanOrEqual(1);
    expect(sample(t, 'order_relay_delivery_retries_total', { sink: 'antchain' })).toBeGreaterThanOrEqual(1);
    expect(sample(t, 'order_relay_delivery_latency_seconds_count', { sink: 'zhima' })).toBe(3);
    expect(sample(t, 'order_relay_delivery_latency_seconds_bucket', { sink: 'zhima', le: '+Inf' })).toBe(3);
    expect(sample(t, 'order_relay_delivery_latency_seconds_count', { sink: 'antchain' })).toBe(0);
    expect(sample(t, 'order_relay_backlog', { sink: 'antchain' })).toBe(3); // held while paused
    expect(sample(t, 'order_relay_backlog', { sink: 'zhima' })).toBe(0);
    expect(sample(t, 'order_relay_parked', { sink: 'zhima' })).toBe(0);
    expect(sample(t, 'order_relay_oldest_pending_seconds', { sink: 'antchain' })).toBeGreaterThan(0);
    expect(sample(t, 'order_relay_sink_paused', { sink: 'antchain' })).toBe(1);
    expect(t).toMatch(/^order_relay_sink_paused\{sink="antchain",reason="ACCESS_DENIED"\} 1$/m);
    expect(sample(t, 'order_relay_sink_paused', { sink: 'zhima' })).toBe(0);
    expect(sample(t, 'order_relay_sink_pauses_total', { sink: 'antchain' })).toBe(1);
    expect(sample(t, 'order_relay_source_connected', { source: 'postgres' })).toBe(1);
    expect(sample(t, 'order_relay_source_reconnects_total', { source: 'postgres' })).toBe(0);
    expect(sample(t, 'order_relay_slot_lag_bytes', { source: 'postgres', slot: config.source!.slot })).toBeGreaterThanOrEqual(0);
    expect(sample(t, 'order_relay_slot_retained_bytes', { source: 'postgres', slot: config.source!.slot })).toBeGreaterThan(0);
    expect(sample(t, 'order_relay_slot_active', { source: 'postgres', slot: config.source!.slot })).toBe(1);
    expect(sample(t, 'order_relay_ledger_up')).toBe(1);
    expect(sample(t, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    for (const name of ['order_relay_backlog', 'order_relay_delivery_latency_seconds', 'order_relay_slot_lag_bytes']) expect(t).toContain(`# HELP ${name} `);

    // `order-relay status` asks the running instance for what only it knows.
    const status = await collectStatus(config);
    expect(status.live).toMatchObject({ reachable: true, url: `${base}/status` });
    expect(status.sinks.find((s) => s.sink === 'antchain')).toMatchObject({ paused: true, backlog: 3, pausedReason: expect.stringMatching(/^ACCESS_DENIED/) });
    expect(status.sinks.find((s) => s.sink === 'zhima')).toMatchObject({ paused: false, delivered: 3 });
    expect(status.sources[0]).toMatchObject({ id: 'postgres', connected: true, active: true });
  });
});
