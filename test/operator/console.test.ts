import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { startConnector, type RunningConnector } from '../../src/cli/connector.js';
import type { Config } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { launchBrowser } from '../helpers/browser.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, REPO } from '../helpers/pipeline.js';
import { deliveryState, exceptionAttempts } from '../helpers/ledger-fixtures.js';
import { waitFor } from '../helpers/wait.js';
import { id, operatorConfig, startSims } from './helpers.js';

/**
 * The operator console in a real browser (Debian's Chromium through playwright-core) against
 * a running pipeline: the stream, both simulators, the dispatcher. One listener has
 * admin.token (actions after a login), one has none (read-only). Each page is saved as a
 * screenshot under docs/.
 */

const TOKEN = 'console-test-token-4f1c';
const DOCS = join(REPO, 'docs');

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let config: Config;
let connector: RunningConnector;
let acting: AdminServer;
let readOnly: AdminServer;
let browser: Browser;
const stop = new AbortController();
const logLines: Array<Record<string, unknown>> = [];
let env: NodeJS.ProcessEnv;

const order = (no: string, phone: string, alipay: string | null) =>
  db.pool.query(
    `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
     VALUES ($1, 'PAID', $2, $3, '1303902', 7, 'Cinema', 'S1', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00)`,
    [no, phone, alipay],
  );

/** The delivery's state: its outcome, else its exception row, else pending in the log. */
const delivery = (sink: string, eventId: string) => deliveryState(db.pool, 'order_relay', sink, eventId);

const BAD_PHONE = id('CB1', 'TRADE_SUCCESS'); // parked at antchain: '12345' is no mobile number
const BAD_USER = id('CB2', 'TRADE_SUCCESS'); // parked at zhima: '2O88-not-an-id' is no Alipay user id

beforeAll(async () => {
  db = await createTestDatabase('console');
  await createOrderTables(db.pool);
  sims = await startSims();
  config = operatorConfig(db.url, sims, { admin: { listen: 'off', token: { env: 'CONSOLE_TEST_TOKEN' } } }).config;
  env = { ...process.env, ...sims.env, CONSOLE_TEST_TOKEN: TOKEN };
  const logger = createLogger({ level: 'info', destination: { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) } });
  connector = await startConnector(config, { logger, env, signal: stop.signal, listen: 'off', defaultMetrics: false });
  const common = { registry: connector.metrics.registry, probe: connector.probe, logger, env, console: { sampleIntervalMs: 200, refreshMs: 400 } };
  acting = await startAdminServer({ ...common, listen: '127.0.0.1:0', config });
  readOnly = await startAdminServer({ ...common, listen: '127.0.0.1:0', config: { ...config, admin: { listen: 'off' } } });
  await waitFor(() => connector.probe.live().sources.every((s) => s.connected), 'the connector to stream');
  for (let i = 1; i <= 4; i++) await order(`CG${i}`, `1380013800${i}`, `208800000000000${i}`);
  await order('CB1', '12345', '2088000000000009');
  // AntChain answers 503 for a while: CB2's delivery there gets an attempt history with request ids.
  sims.antchain.setFaults({ http5xxRate: 1 });
  await order('CB2', '13800138002', '2O88-not-an-id');
  await waitFor(async () => (await exceptionAttempts(db.pool, 'order_relay', 'antchain', BAD_USER)).filter((a) => a.request_id !== null).length >= 2, 'two failed attempts of CB2 at antchain');
  sims.antchain.setFaults({ http5xxRate: 0 });
  await waitFor(async () => (await delivery('antchain', BAD_USER))?.status === 'delivered', 'CB2 delivered at antchain');
  await waitFor(async () => (await delivery('antchain', BAD_PHONE))?.status === 'rejected', 'CB1 parked at antchain');
  await waitFor(async () => (await delivery('zhima', BAD_USER))?.status === 'rejected', 'CB2 parked at zhima');
  await waitFor(async () => (await delivery('zhima', id('CG4', 'TRADE_SUCCESS')))?.status === 'delivered', 'CG4 delivered');
  await db.pool.query(
    `INSERT INTO order_relay.parked_inputs (source, stream, position, reason, raw) VALUES ('postgres', 'public.orders', '0/9', $1, '{}')`,
    ['public.orders order CX1: status column "status" is missing or empty'],
  );
  mkdirSync(DOCS, { recursive: true });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await acting?.close();
  await readOnly?.close();
  stop.abort();
  await connector?.done;
  await sims?.close();
  await db?.drop();
});

async function open(base: string, path: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('dialog', (d) => void d.accept());
  const res = await page.goto(`${base}${path}`);
  expect(res?.status()).toBe(200);
  return page;
}

// The README's screenshots are rewritten only when asked (CONSOLE_SCREENSHOTS=1); otherwise taken to a buffer, which still renders the page.
const shot = (page: Page, name: string) => page.screenshot({ ...(process.env.CONSOLE_SCREENSHOTS === '1' ? { path: join(DOCS, `console-${name}.png`) } : {}), fullPage: true });

async function login(page: Page): Promise<void> {
  await page.goto(`${acting.url}/login`);
  await page.fill('input[name=token]', TOKEN);
  await Promise.all([page.waitForURL(`${acting.url}/`), page.click('button:has-text("Log in")')]);
}

describe('the operator console', () => {
  it('overview: each source and sink with live figures and last-hour sparklines, refreshed in place without a reload', async () => {
    const page = await open(acting.url, '/');
    await expect(page.locator('#sources tr[data-source=postgres]').textContent()).resolves.toMatch(/postgres\s*connected/);
    const antchain = page.locator('#sinks tr[data-sink=antchain]');
    await expect(antchain.textContent()).resolves.toContain('delivering');
    // The page marks itself; a full reload would lose the mark.
    await page.evaluate(() => ((window as unknown as { mark: number }).mark = 1));
    const delivered = async () => Number(await antchain.locator('td').nth(9).textContent());
    const before = await delivered();
    await order('CG5', '13800138005', '2088000000000005');
    await waitFor(async () => (await delivered()) > before, 'the overview to show the new delivery');
    expect(await page.evaluate(() => (window as unknown as { mark?: number }).mark)).toBe(1);
    // Parked shows for antchain, and sparklines have points once two samples exist.
    await waitFor(async () => (await antchain.locator('td').nth(7).textContent())?.startsWith('1'), 'antchain parked 1');
    await waitFor(async () => (await page.locator('#sinks svg.spark polyline').count()) > 0, 'sparklines with data');
    expect(await page.locator('#sinks svg.spark').count()).toBe(2 * 5);
    await shot(page, 'overview');
    await page.close();
  });

  it('parked deliveries: filter by sink, code and order; the reason; a delivery with its attempts (request ids) and masked fields', async () => {
    const page = await open(acting.url, '/parked');
    const rows = page.locator('#parked tbody tr');
    expect(await rows.count()).toBe(2);
    await page.selectOption('select[name=sink]', 'antchain');
    await page.click('button:has-text("Filter")');
    await page.waitForURL(/sink=antchain/);
    expect(await rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-event')).toBe(BAD_PHONE);
    expect(await rows.first().textContent()).toMatch(/INVALID/);
    await page.goto(`${acting.url}/parked?code=TRADE_SUCCESS&order=CB2`);
    expect(await rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-sink')).toBe('zhima');
    await page.goto(`${acting.url}/parked?order=CG1`);
    expect(await page.locator('#none-parked').count()).toBe(1);
    await page.goto(`${acting.url}/parked`);
    await shot(page, 'parked');

    await page.click(`#parked tr[data-event="${BAD_USER}"] a`);
    await page.waitForURL(/\/delivery\?/);
    expect(await page.locator('#attempts tbody tr').count()).toBe(1);
    const fields = (await page.locator('#fields').textContent())!;
    expect(fields).toContain('"buyer_phone": "138****8002"');
    expect(fields).toContain('"alipay_user_id": "2O88…n-id"');
    expect(await page.content()).not.toContain('13800138002');
    await shot(page, 'delivery');

    // The same event at antchain: delivered after 503s, each attempt with the request id to quote to support.
    await page.goto(`${acting.url}/delivery?sink=antchain&event=${BAD_USER}`);
    const attempts = await exceptionAttempts(db.pool, 'order_relay', 'antchain', BAD_USER);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    const history = page.locator('#attempts tbody tr');
    expect(await history.count()).toBe(attempts.length);
    for (const [i, a] of attempts.entries()) {
      expect(a.request_id).toMatch(/\S/);
      const text = (await history.nth(i).textContent())!;
      expect(text).toContain(a.request_id!);
      expect(text).toContain(String(a.http_status ?? '-'));
    }
    expect(await history.last().textContent()).toContain('503');
    expect(await page.locator('#status').textContent()).toBe('delivered');
    await shot(page, 'attempts');

    const inputs = await open(acting.url, '/inputs?q=CX1');
    expect(await inputs.locator('#inputs tbody tr').count()).toBe(1);
    expect(await inputs.locator('#inputs').textContent()).toContain('status column "status" is missing or empty');
    await shot(inputs, 'inputs');
    await inputs.close();
    await page.close();
  });

  it('a delivery that went the quick way: the outcome its sink\'s cursor wrote, with the last attempt\'s request id; an unknown event is a 404', async () => {
    const good = id('CG4', 'TRADE_SUCCESS');
    const page = await open(acting.url, `/delivery?sink=zhima&event=${good}`);
    expect(await page.locator('#status').textContent()).toBe('delivered');
    expect(await page.locator('#record').textContent()).toContain('outcome');
    const { rows } = await db.pool.query<{ request_id: string | null; attempts: number }>(
      `SELECT o.request_id, o.attempts FROM order_relay.outcomes o JOIN order_relay.event_ids i ON i.seq = o.seq WHERE o.sink = 'zhima' AND i.id = decode($1, 'hex')`,
      [good],
    );
    expect(rows).toHaveLength(1);
    const history = page.locator('#attempts tbody tr');
    expect(await history.count()).toBe(1);
    expect(await history.first().textContent()).toContain(rows[0]!.request_id ?? '-');
    expect(await history.first().locator('td').first().textContent()).toBe(String(rows[0]!.attempts));
    expect(await page.locator('button[name=action]').count()).toBe(0);
    await page.close();
    expect((await fetch(`${acting.url}/delivery?sink=zhima&event=${'0'.repeat(32)}`)).status).toBe(404);
    expect((await fetch(`${acting.url}/delivery?sink=zhima&event=not-an-id`)).status).toBe(404);
  });

  it('a parked delivery is refreshed and replayed from its page after a login, then delivered; the action is logged with who and what', async () => {
    await db.pool.query(`UPDATE orders SET alipay_user_id = '2088000000000022' WHERE order_no = 'CB2'`);
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('dialog', (d) => void d.accept());
    await login(page);
    await page.goto(`${acting.url}/delivery?sink=zhima&event=${BAD_USER}`);
    await Promise.all([page.waitForURL(`${acting.url}/actions`), page.click('button:has-text("Refresh and replay this delivery")')]);
    const report = (await page.locator('#report').textContent())!;
    expect(report).toMatch(new RegExp(`zhima\\s+${BAD_USER}\\s+TRADE_SUCCESS\\s+CB2\\s+parked\\s+re-queued`));
    await shot(page, 'action');
    await waitFor(async () => (await delivery('zhima', BAD_USER))?.status === 'delivered', 'CB2 delivered at zhima');
    expect(sims.zhima.stats().effectsList.filter((e) => e.out_biz_no === BAD_USER)).toMatchObject([{ user_id: '2088000000000022' }]);
    await page.goto(`${acting.url}/delivery?sink=zhima&event=${BAD_USER}`);
    expect(await page.locator('#status').textContent()).toBe('delivered');
    expect(await page.locator('button[name=action]').count()).toBe(0);
    const done = logLines.find((l) => l.msg === 'console action done' && l.event === BAD_USER);
    expect(done).toMatchObject({ action: 'refresh', sink: 'zhima', via: 'session', changed: 1, dryRun: false });
    expect(String(done!.who)).toMatch(/^session-[0-9a-f]{8}$/);
    expect(JSON.stringify(logLines)).not.toContain(TOKEN);
    await page.close();
  });

  it('a filtered set: the form shows a dry run first, the API takes the bearer token; a form without its CSRF token or an API call without the token is refused', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await login(page);
    await page.goto(`${acting.url}/parked?sink=antchain&code=TRADE_SUCCESS`);
    await Promise.all([page.waitForURL(`${acting.url}/actions`), page.click('form.actions >> button:has-text("Skip all matching")')]);
    expect(await page.locator('h1').textContent()).toBe('Would do');
    expect(await page.locator('#report').textContent()).toContain('would skip 1 delivery');
    expect((await delivery('antchain', BAD_PHONE))?.status).toBe('rejected');
    await page.close();

    const api = (body: unknown, headers: Record<string, string>) =>
      fetch(`${acting.url}/api/replay`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    expect((await api({ action: 'skip', sink: 'antchain' }, {})).status).toBe(401);
    expect((await api({ action: 'skip', sink: 'antchain' }, { authorization: 'Bearer wrong' })).status).toBe(401);
    const dry = await api({ action: 'skip', sink: 'antchain', order: 'CB1', dryRun: true }, { authorization: `Bearer ${TOKEN}` });
    expect(dry.status).toBe(200);
    const { reports } = (await dry.json()) as { reports: Array<{ dryRun: boolean; deliveries: Array<{ eventId: string; action: string }> }> };
    expect(reports).toMatchObject([{ dryRun: true, deliveries: [{ eventId: BAD_PHONE, action: 'skipped' }] }]);
    expect((await delivery('antchain', BAD_PHONE))?.status).toBe('rejected');
    expect(logLines.find((l) => l.msg === 'console action previewed' && l.via === 'bearer')).toMatchObject({ who: 'api', action: 'skip', orderNo: 'CB1' });

    // A logged-in session's cookie without the form's CSRF token, and a post from another origin.
    const login2 = await fetch(`${acting.url}/login`, { method: 'POST', body: new URLSearchParams({ token: TOKEN }), redirect: 'manual' });
    expect(login2.status).toBe(303);
    const cookie = login2.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly; SameSite=Strict/);
    const form = (extra: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(`${acting.url}/actions`, { method: 'POST', headers: { cookie: cookie.split(';')[0]!, ...headers }, body: new URLSearchParams({ action: 'skip', event: BAD_PHONE, sink: 'antchain', ...extra }) });
    expect((await form({})).status).toBe(403);
    expect((await form({ csrf: 'forged' })).status).toBe(403);
    expect((await form({}, { origin: 'http://evil.example' })).status).toBe(403);
    expect((await delivery('antchain', BAD_PHONE))?.status).toBe('rejected');
  });

  it('read-only without admin.token: no action buttons, a note on how to enable them, and every action refused with 403', async () => {
    const page = await open(readOnly.url, `/delivery?sink=antchain&event=${BAD_PHONE}`);
    expect(await page.locator('button[name=action]').count()).toBe(0);
    expect(await page.locator('#read-only').textContent()).toContain('admin.token');
    await shot(page, 'read-only');
    await page.goto(`${readOnly.url}/parked`);
    expect(await page.locator('#parked tbody tr').count()).toBe(1);
    expect(await page.locator('button[name=action]').count()).toBe(0);
    await page.close();

    const post = (path: string, body: string, headers: Record<string, string> = {}) => fetch(`${readOnly.url}${path}`, { method: 'POST', headers, body });
    expect((await post('/actions', new URLSearchParams({ action: 'replay', event: BAD_PHONE, sink: 'antchain' }).toString(), { 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(403);
    const api = await post('/api/replay', JSON.stringify({ action: 'replay', event: BAD_PHONE }), { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' });
    expect(api.status).toBe(403);
    expect(((await api.json()) as { error: string }).error).toContain('set admin.token');
    expect((await post('/login', `token=${TOKEN}`)).status).toBe(403);
    expect((await fetch(`${readOnly.url}/metrics`, { method: 'POST' })).status).toBe(405);
    expect((await delivery('antchain', BAD_PHONE))?.status).toBe('rejected');
  });

  it('warns when bound beyond loopback without a token', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
    const open = await startAdminServer({ listen: '0.0.0.0:0', registry: connector.metrics.registry, probe: connector.probe, logger, config: { ...config, admin: { listen: 'off' } }, env });
    await open.close();
    expect(lines.find((l) => String(l.msg).startsWith('admin listener bound beyond loopback without admin.token'))).toMatchObject({ level: 40, listen: '0.0.0.0:0' });
    lines.length = 0;
    const guarded = await startAdminServer({ listen: '0.0.0.0:0', registry: connector.metrics.registry, probe: connector.probe, logger, config, env });
    await guarded.close();
    expect(lines).toEqual([]);
  });
});
