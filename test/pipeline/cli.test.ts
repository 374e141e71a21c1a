import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { eventId } from '../../src/core/ids.js';
import { KEYS, REPO } from '../helpers/pipeline.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'order-relay-cli-'));
const SECRET = 'antchain-secret-that-must-not-leak';
const env = {
  ...process.env,
  // Nothing listens on port 9: a command that touched the database would fail differently.
  DATABASE_URL: 'postgres://nobody@127.0.0.1:9/none',
  ANTCHAIN_ENDPOINT: 'http://127.0.0.1:9/gateway.do',
  ANTCHAIN_ACCESS_KEY: 'ACpreview',
  ANTCHAIN_ACCESS_SECRET: SECRET,
  ZHIMA_ENDPOINT: 'http://127.0.0.1:9/gateway.do',
  ZHIMA_APP_PRIVATE_KEY: readFileSync(join(KEYS, 'app_private_pkcs8.pem'), 'utf8'),
  ZHIMA_ALIPAY_PUBLIC_KEY: readFileSync(join(KEYS, 'gateway_public.pem'), 'utf8'),
};
const cli = (...args: string[]) => run(process.execPath, [join(REPO, 'bin/order-relay.js'), ...args], { env, cwd: REPO });

function changeFile(name: string, change: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(change));
  return path;
}

const paid = {
  table: 'public.orders', op: 'update', old: null,
  new: { order_no: 'A1', status: 'USED', buyer_phone: '138 0013 8000', sharer_phone: null, alipay_user_id: '2088102000000001', movie_id: '1303902', cinema_id: 7,
    cinema_name: '影城', schedule_id: 'S1', seat_ids: '5-6', show_start: '2026-11-22 19:30:00', ticket_count: 2, original_amount: '90.00', paid_amount: '80.00' },
};

describe('order-relay CLI', () => {
  it('preview prints each event and every sink\'s exact signed request, reproducibly, without the secret', async () => {
    const args = ['preview', '-c', 'config/demo.yaml', '--change', changeFile('paid.json', paid), '--at', '2026-11-21T12:00:00Z', '--nonce', '0123456789abcdef0123456789abcdef'];
    const first = await cli(...args);
    const second = await cli(...args);
    expect(first.stdout).toBe(second.stdout);
    const lines = first.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.sink ?? 'event', l.eventCode])).toEqual([
      ['event', 'TRADE_SUCCESS'], ['antchain', 'TRADE_SUCCESS'], ['zhima', 'TRADE_SUCCESS'],
      ['event', 'TRADE_CONFIRM'], ['antchain', 'TRADE_CONFIRM'], ['zhima', 'TRADE_CONFIRM'],
    ]);
    expect(lines[0].eventId).toBe(eventId(['demo-cinema', 'A1', 'TRADE_SUCCESS']));
    const antchain = lines[1].request;
    expect(antchain).toMatchObject({ method: 'POST', url: 'http://127.0.0.1:9/gateway.do' });
    const body = new URLSearchParams(antchain.body);
    expect(body.get('request_id')).toBe(lines[0].eventId);
    expect(body.get('req_msg_id')).toBe('0123456789abcdef0123456789abcdef');
    expect(body.get('req_time')).toBe('2026-11-21T12:00:00Z');
    expect(body.get('event_child.user_id_no')).toBe('+86-13800138000');
    expect(body.get('sign')).toMatch(/^[A-Za-z0-9+/]{27}=$/);
    const zhima = new URL(lines[2].request.url);
    expect(zhima.searchParams.get('timestamp')).toBe('2026-11-21 20:00:00'); // Beijing time
    expect(JSON.parse(new URLSearchParams(lines[2].request.body).get('biz_content')!).out_biz_no).toBe(lines[0].eventId);
    expect(first.stdout).not.toContain(SECRET);
    expect(first.stdout).not.toContain('PRIVATE KEY');
  });

  it('preview shows a refund with its order, and says when a change would be parked', async () => {
    const refund = { table: 'public.refunds', op: 'insert', new: { refund_id: 'R9', order_no: 'A1', status: 'SUCCESS', refund_amount: '40.00', refund_count: 1 }, order: paid.new };
    const { stdout } = await cli('preview', '-c', 'config/demo.yaml', '--change', changeFile('refund.json', refund), '--at', '2026-11-21T12:00:00Z', '--nonce', '0123456789abcdef0123456789abcdef');
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
    const antchainRefund = lines.find((l) => l.sink === 'antchain' && l.eventCode === 'REFUND_SUCCESS');
    expect(new URLSearchParams(antchainRefund.request.body).get('trade_order.actual_total_amount')).toBe('4000');
    const bad = cli('preview', '-c', 'config/demo.yaml', '--change', changeFile('bad.json', { table: 'public.orders', op: 'insert', new: { status: 'PAID' } }));
    await expect(bad).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('order number column "order_no" is missing or empty') });
  });

  it('a bad config exits non-zero with every problem named, before touching any database', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, readFileSync(join(REPO, 'config/demo.yaml'), 'utf8').replace('heartbeat: 10s', 'heartbeat: 10s\n  bogus: 1').replace('pollInterval: 200ms', 'pollInterval: 200'));
    const failed = cli('run', '-c', path);
    await expect(failed).rejects.toMatchObject({ code: 1 });
    const { stderr } = await failed.catch((e) => e);
    expect(stderr).toContain('source: unknown key(s) "bogus"');
    expect(stderr).toContain('dispatcher.pollInterval:');
    expect(stderr).not.toContain('ECONNREFUSED');
  });
});
