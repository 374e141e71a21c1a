import { afterEach, describe, expect, it } from 'vitest';
import type { BusinessEvent } from '../../src/core/events.js';
import type { Sink } from '../../src/core/sink.js';
import { silentLogger } from '../../src/log.js';
import { createAntchainSink, type AntchainSinkConfig } from '../../connectors/sinks/antchain/index.js';
import { hexId, orderRow, sinkConfig, TEST_ENV, TEST_SECRET, tradeEvent, vector, visitEvent } from './fixtures.js';

const sinks: Sink[] = [];
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
});

function sink(config: AntchainSinkConfig): Sink {
  const created = createAntchainSink(config, { logger: silentLogger(), env: TEST_ENV });
  sinks.push(created);
  return created;
}

/** Each vector's business content, written the way order-relay meets it: rows and visits. */
const cases: Array<{ vector: string; config: AntchainSinkConfig; event: BusinessEvent }> = [
  {
    vector: 'visit_contract_detail_direct',
    config: sinkConfig(),
    event: visitEvent('056289b5d0504b35af4418d0520499c0', {
      visitor: { type: 'PHONE', id: '130 0000 0000' },
      sharer: { type: 'PHONE', id: '+8613000000001' },
    }),
  },
  {
    vector: 'trade_success_two_step_with_confirm_time',
    // confirm_time from a column holding epoch milliseconds, like Java's new Date(1609065254000L)
    config: sinkConfig({ confirmTime: { column: 'confirm_ms' } }),
    event: tradeEvent('TRADE_SUCCESS', '7c9e6679742540de944be07fc1f90ae7', orderRow({ confirm_ms: '1609065254000', sharer_phone: '86-130-0000-0001' })),
  },
  {
    vector: 'trade_confirm',
    config: sinkConfig({ confirmType: 'TWO_STEP_MANUAL', confirmTime: undefined }),
    event: tradeEvent('TRADE_CONFIRM', '9f4c1e2a8b7d4c3e9a6b5d4c3b2a1f0e'),
  },
  {
    vector: 'trade_success_two_step_manual_no_parent_prod',
    config: sinkConfig({
      endpoint: 'https://openapi.antchain.antgroup.com/gateway.do',
      productInstanceId: 'ent-prod',
      confirmType: 'TWO_STEP_MANUAL',
      confirmTime: undefined,
      buyer: { column: 'alipay_account', type: 'ALIPAY_LOGON_ID' },
      amountUnit: 'yuan',
      projectId: 123,
    }),
    event: tradeEvent(
      'TRADE_SUCCESS',
      'a1b2c3d4e5f60718293a4b5c6d7e8f90',
      orderRow({ order_no: 'e2395082a5c74f549235b6adb9258f07', alipay_account: ' user@example.com ', sharer_phone: null, original_fen: '128.00', paid_fen: 99, qty: '3' }),
    ),
  },
  {
    vector: 'refund_success',
    config: sinkConfig({ refund: { originalAmount: 'refund_original', actualAmount: 'refund_actual', itemCount: 'refund_qty' } }),
    event: tradeEvent('REFUND_SUCCESS', 'b2c3d4e5f60718293a4b5c6d7e8f90a1', orderRow({ paid_fen: 999 }), {
      refundId: 'r-1',
      refund: { refund_original: '100', refund_actual: 100, refund_qty: '2' },
    }),
  },
];

describe('preview reproduces every request vector from events and config', () => {
  for (const c of cases) {
    it(c.vector, () => {
      const v = vector(c.vector);
      const preview = sink(c.config).preview(c.event, { at: new Date(v.inputs.req_time), nonce: v.inputs.req_msg_id });
      expect(preview).toStrictEqual({ status: 'request', request: v.http });
    });
  }
});

describe('preview', () => {
  const at = new Date('2024-05-20T08:30:00.999Z');
  const nonce = 'ffffffffffffffffffffffffffffffff';

  it('is deterministic for a pinned clock and nonce, and changes with either', () => {
    const s = sink(sinkConfig());
    const event = tradeEvent('TRADE_SUCCESS', hexId(1));
    const first = s.preview(event, { at, nonce });
    expect(s.preview(event, { at, nonce })).toStrictEqual(first);
    expect(first.status).toBe('request');
    if (first.status !== 'request') return;
    expect(first.request.body).toContain('req_time=2024-05-20T08%3A30%3A00Z');
    expect(s.preview(event, { at: new Date('2024-05-20T08:30:01Z'), nonce })).not.toStrictEqual(first);
    expect(s.preview(event, { at, nonce: 'e'.repeat(32) })).not.toStrictEqual(first);
  });

  it('never contains the secret; the access key is an ordinary parameter', () => {
    const s = sink(sinkConfig());
    const out = JSON.stringify([
      s.preview(tradeEvent('TRADE_SUCCESS', hexId(2)), { at, nonce }),
      s.preview(visitEvent(hexId(3)), { at, nonce }),
      s.preview(tradeEvent('TRADE_SUCCESS', hexId(4), orderRow({ qty: 'many' })), { at, nonce }),
    ]);
    expect(out).not.toContain(TEST_SECRET);
    expect(out).toContain('access_key=ACSaQbAqX5E6vV6g');
  });

  it('reports not_applicable and rejected without building a request', () => {
    const s = sink(sinkConfig());
    expect(s.preview(tradeEvent('TRADE_CONFIRM', hexId(5)), { at, nonce })).toStrictEqual({
      status: 'not_applicable',
      reason: 'sink antchain does not send TRADE_CONFIRM',
    });
    expect(s.preview(tradeEvent('TRADE_SUCCESS', hexId(6), orderRow({ qty: -1 })), { at, nonce })).toStrictEqual({
      status: 'rejected',
      code: 'INVALID_EVENT',
      message: 'trade_order.item_count: column "qty" in the order row is not a non-negative integer',
    });
  });

  it('refuses a nonce that is not 32 lowercase hex (it would not be a valid req_msg_id)', () => {
    const s = sink(sinkConfig());
    expect(() => s.preview(tradeEvent('TRADE_SUCCESS', hexId(7)), { at, nonce: 'abc' })).toThrow(/32 lowercase hex/);
  });
});
