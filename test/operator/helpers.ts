import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type pg from 'pg';
import { eventId } from '../../src/core/ids.js';
import type { BusinessEvent } from '../../src/core/events.js';
import { createLedger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { generateDemoKeys, writeDemoKeys, KEY_FILES } from '../../src/demo/keys.js';
import { startAntchainSimulator } from '../../src/sandbox/antchain-simulator.js';
import { startZhimaSimulator } from '../../src/sandbox/zhima-simulator.js';
import { deepMerge, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';

export const PROJECT = 'demo-cinema';
export const id = (order: string, code: string, refund?: string) => eventId(refund ? [PROJECT, order, code, refund] : [PROJECT, order, code]);

/** Both simulators with freshly generated keys (no dependency on files outside the repo). */
export async function startSims(): Promise<Simulators & { keyDir: string; keys: ReturnType<typeof generateDemoKeys>; configDirs: string[] }> {
  const configDirs: string[] = [];
  const keys = generateDemoKeys();
  const keyDir = mkdtempSync(join(tmpdir(), 'order-relay-keys-'));
  writeDemoKeys(keyDir, keys);
  const antchain = await startAntchainSimulator({ accessKey: keys.antchainAccessKey, accessSecret: keys.antchainAccessSecret });
  const zhima = await startZhimaSimulator({ appId: '2021000000000001', appPublicKeyPem: keys.appPublicPem, gatewayPrivateKeyPem: keys.gatewayPrivatePem });
  return {
    antchain,
    zhima,
    keys,
    keyDir,
    configDirs,
    env: { ANTCHAIN_ACCESS_KEY: keys.antchainAccessKey, ANTCHAIN_ACCESS_SECRET: keys.antchainAccessSecret },
    async close() {
      await Promise.all([antchain.close(), zhima.close()]);
      for (const d of [keyDir, ...configDirs]) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** The tests' connector config (test/helpers/pipeline.ts) with this file's generated keys. */
export function operatorConfig(dbUrl: string, sims: Awaited<ReturnType<typeof startSims>>, overrides: Record<string, unknown> = {}) {
  const raw = testConfig(dbUrl, sims, {
    sinks: {
      zhima: {
        privateKey: { file: join(sims.keyDir, KEY_FILES.appPrivatePem) },
        alipayPublicKey: { file: join(sims.keyDir, KEY_FILES.gatewayPublicPem) },
      },
    },
  });
  const written = writeConfig(deepMerge(raw, overrides), sims.env);
  sims.configDirs.push(dirname(written.path));
  return written;
}

export function tradeEvent(order: string, code: 'TRADE_SUCCESS' | 'TRADE_CONFIRM' | 'REFUND_SUCCESS', refund?: string): BusinessEvent {
  return {
    id: id(order, code, refund),
    code,
    kind: 'TRADE',
    orderKey: order,
    orderNo: order,
    ...(refund ? { refundId: refund } : {}),
    occurredAt: '2026-11-01T10:00:00.000Z',
    order: { order_no: order, status: 'PAID' },
  };
}

/**
 * A ledger with known figures, written through the ledger's own API (append, claim, settle):
 *
 *   antchain: A/TS delivered (now), A/TC pending due (created 90 s ago), B/TS parked, B/TC
 *             pending blocked behind it, C/TS pending retrying (next attempt in 1 h),
 *             D/TS delivered 5 minutes ago
 *   zhima:    A/TS delivered, B/TS parked, C/TS not applicable
 *   parked inputs: 2 unresolved, 1 resolved
 */
export async function seedLedger(pool: pg.Pool, schema: string) {
  const client = await pool.connect();
  try {
    await migrate(client, schema);
  } finally {
    client.release();
  }
  const ledger = createLedger(pool, schema);
  const at = '2026-11-01T10:00:00.000Z';
  const ev = (e: BusinessEvent, sinks: string[]) => ({ event: e, sinks, position: '0/10', committedAt: at });
  await ledger.append({
    source: 'postgres',
    events: [
      ev(tradeEvent('A', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('A', 'TRADE_CONFIRM'), ['antchain']),
      ev(tradeEvent('B', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('B', 'TRADE_CONFIRM'), ['antchain']),
      ev(tradeEvent('C', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('D', 'TRADE_SUCCESS'), ['antchain']),
    ],
    orders: [],
    bad: [
      { stream: 'public.orders', position: '0/20', reason: 'public.orders order X1: status column "status" is missing or empty', raw: '{}' },
      { stream: 'public.orders', position: '0/21', reason: 'public.orders: order number column "order_no" is missing or empty', raw: '{}' },
      { stream: 'public.orders', position: '0/22', reason: 'resolved one', raw: '{}' },
    ],
    checkpoints: [{ stream: 'slot', position: '0/1234' }],
  });
  await ledger.append({ source: 'kafka', events: [], orders: [], bad: [], checkpoints: [{ stream: 'orders/0', position: '41' }, { stream: 'orders/1', position: '7' }] });
  await pool.query(`UPDATE ${schema}.parked_inputs SET resolved_at = now() WHERE reason = 'resolved one'`);

  const settleAll = async (sink: string, decide: (eventId: string) => Parameters<typeof ledger.settle>[0][number]['status'] | 'leave') => {
    const claimed = await ledger.claim(sink, 100, 60_000);
    const settlements = claimed.flatMap((c) => {
      const status = decide(c.eventId);
      if (status === 'leave') return [];
      return [{
        eventId: c.eventId,
        sink: c.sink,
        deliveryId: c.id,
        attempt: c.attempt,
        status,
        outcome: status === 'pending' ? 'retry' : status,
        ...(status === 'pending' ? { delayMs: 3_600_000, code: 'HTTP_503', message: 'Service Unavailable' } : {}),
        ...(status === 'rejected' ? { code: 'INVALID_EVENT', message: 'event_child.user_id_no: column "buyer_phone" is not a mainland China mobile number' } : {}),
        info: { requestId: `req-${sink}-${c.eventId.slice(0, 6)}`, httpStatus: status === 'pending' ? 503 : 200, durationMs: 3 },
      }];
    });
    await ledger.settle(settlements);
  };
  const A = id('A', 'TRADE_SUCCESS'), B = id('B', 'TRADE_SUCCESS'), C = id('C', 'TRADE_SUCCESS'), D = id('D', 'TRADE_SUCCESS');
  await settleAll('antchain', (e) => (e === A || e === D ? 'delivered' : e === B ? 'rejected' : e === C ? 'pending' : 'leave'));
  await settleAll('zhima', (e) => (e === A ? 'delivered' : e === B ? 'rejected' : e === C ? 'not_applicable' : 'leave'));
  await pool.query(`UPDATE ${schema}.deliveries SET delivered_at = now() - interval '5 minutes' WHERE event_id = $1`, [D]);
  await pool.query(`UPDATE ${schema}.deliveries SET created_at = now() - interval '90 seconds' WHERE event_id = $1 AND sink = 'antchain'`, [id('A', 'TRADE_CONFIRM')]);
  return { ledger, A, B, C, D, AC: id('A', 'TRADE_CONFIRM'), BC: id('B', 'TRADE_CONFIRM') };
}
