import { describe, expect, it } from 'vitest';
import { SecretError } from '../../src/config/secrets.js';
import { silentLogger } from '../../src/log.js';
import { antchainSinkSchema, buildBusinessParams, createAntchainSink, type AntchainSinkConfig } from '../../connectors/sinks/antchain/index.js';
import { normaliseLogonId, normalisePhone, parseAmount, parseCount, parseInstant } from '../../connectors/sinks/antchain/values.js';
import { hexId, orderRow, sinkConfig, TEST_ENV, tradeEvent, visitEvent } from './fixtures.js';

function build(event: Parameters<typeof buildBusinessParams>[0], config: AntchainSinkConfig = sinkConfig()) {
  return buildBusinessParams(event, config);
}

function params(event: Parameters<typeof buildBusinessParams>[0], config?: AntchainSinkConfig) {
  const result = build(event, config);
  if (!result.ok) throw new Error(result.message);
  return result.params;
}

describe('event → business parameters', () => {
  it('VISIT: visitor → event_child, sharer → event_parent, page → event_instance_code, DIRECT', () => {
    expect(params(visitEvent(hexId(1), { page: 'SHARE_LANDING_PAGE', projectId: '777' }))).toStrictEqual({
      product_instance_id: 'ent-sit',
      event_type: 'VISIT',
      event_instance_code: 'SHARE_LANDING_PAGE',
      event_child: { user_id_no: '+86-13000000000', user_id_type: 'PHONE' },
      event_parent: { user_id_no: '+86-13000000001', user_id_type: 'PHONE' },
      request_id: hexId(1),
      project_id: '777',
      confirm_type: 'DIRECT',
    });
  });

  it('VISIT without sharer or projectId uses the config project and omits event_parent', () => {
    const p = params(visitEvent(hexId(2), { sharer: undefined, projectId: undefined }));
    expect(p.event_parent).toBeUndefined();
    expect(p.project_id).toBe('123');
  });

  it('TRADE_SUCCESS (TWO_STEP) carries confirm_type, confirm_time in China time and the trade order', () => {
    expect(params(tradeEvent('TRADE_SUCCESS', hexId(3)))).toMatchObject({
      event_type: 'TRADE',
      event_instance_code: 'TRADE_SUCCESS',
      confirm_type: 'TWO_STEP',
      confirm_time: '2020-12-27T18:34:14.000+08:00',
      request_id: hexId(3),
      trade_order: { order_no: 'd1284971f4b64f438124fa5cf8147ef6', original_total_amount: '100', actual_total_amount: '100', item_count: '2', currency: 'CNY' },
    });
  });

  it('TWO_STEP confirm_time adds the configured offset to the column', () => {
    const config = sinkConfig({ confirmTime: { column: 'confirm_at', offset: '7d' } });
    expect(params(tradeEvent('TRADE_SUCCESS', hexId(4)), config).confirm_time).toBe('2021-01-03T18:34:14.000+08:00');
    const withMs = sinkConfig({ confirmTime: { column: 'paid_at', offset: '90m' } });
    const row = orderRow({ paid_at: '2024-05-20 23:10:05.123456+00' });
    expect(params(tradeEvent('TRADE_SUCCESS', hexId(5), row), withMs).confirm_time).toBe('2024-05-21T08:40:05.123+08:00');
  });

  it('TWO_STEP_MANUAL TRADE_SUCCESS has no confirm_time; REFUND_SUCCESS and TRADE_CONFIRM omit confirm_type', () => {
    const manual = sinkConfig({ confirmType: 'TWO_STEP_MANUAL', confirmTime: undefined });
    const success = params(tradeEvent('TRADE_SUCCESS', hexId(6)), manual);
    expect(success.confirm_type).toBe('TWO_STEP_MANUAL');
    expect(success.confirm_time).toBeUndefined();
    for (const code of ['REFUND_SUCCESS', 'TRADE_CONFIRM'] as const) {
      const p = params(tradeEvent(code, hexId(7)), manual);
      expect(p.confirm_type).toBeUndefined();
      expect(p.confirm_time).toBeUndefined();
      expect(p.event_instance_code).toBe(code);
    }
  });

  it('REFUND_SUCCESS reads refund columns from the refund row; without one it is a full refund of the order', () => {
    const config = sinkConfig({ refund: { originalAmount: 'r_orig', actualAmount: 'r_paid', itemCount: 'r_qty' } });
    const fromRefund = tradeEvent('REFUND_SUCCESS', hexId(8), orderRow(), { refund: { r_orig: 50, r_paid: 40, r_qty: 1 } });
    expect(params(fromRefund, config).trade_order).toMatchObject({ original_total_amount: '50', actual_total_amount: '40', item_count: '1' });
    const fullRefund = tradeEvent('REFUND_SUCCESS', hexId(9), orderRow({ original_fen: 60, paid_fen: 30, qty: 3 }));
    expect(params(fullRefund, config).trade_order).toMatchObject({ original_total_amount: '60', actual_total_amount: '30', item_count: '3' });
  });

  it('omits event_parent when the sharer column is null or blank', () => {
    expect(params(tradeEvent('TRADE_SUCCESS', hexId(10), orderRow({ sharer_phone: null }))).event_parent).toBeUndefined();
    expect(params(tradeEvent('TRADE_SUCCESS', hexId(11), orderRow({ sharer_phone: '  ' }))).event_parent).toBeUndefined();
  });

  it('falls back to event.orderNo when the order row has no order number column', () => {
    const row = orderRow();
    delete row.order_no;
    const event = tradeEvent('TRADE_SUCCESS', hexId(12), row, { orderNo: 'ORD-9' });
    expect(params(event).trade_order).toMatchObject({ order_no: 'ORD-9' });
  });
});

describe('rows that cannot make a valid request are refused, naming the field', () => {
  const cases: Array<[string, ReturnType<typeof tradeEvent>, string, AntchainSinkConfig?]> = [
    ['missing buyer', tradeEvent('TRADE_SUCCESS', hexId(20), orderRow({ buyer_phone: null })), 'event_child.user_id_no: column "buyer_phone" is missing or null'],
    ['bad phone', tradeEvent('TRADE_SUCCESS', hexId(21), orderRow({ buyer_phone: '12345' })), 'event_child.user_id_no: column "buyer_phone" is not a mainland China mobile number'],
    ['bad sharer', tradeEvent('TRADE_SUCCESS', hexId(22), orderRow({ sharer_phone: '+1-5551234567' })), 'event_parent.user_id_no: column "sharer_phone" is not a mainland China mobile number'],
    ['missing amount', tradeEvent('TRADE_SUCCESS', hexId(23), orderRow({ paid_fen: null })), 'trade_order.actual_total_amount: column "paid_fen" in the order row is missing or null'],
    ['fractional fen', tradeEvent('TRADE_SUCCESS', hexId(24), orderRow({ original_fen: '10.5' })), 'trade_order.original_total_amount: column "original_fen" in the order row is not a non-negative integer'],
    ['negative count', tradeEvent('TRADE_SUCCESS', hexId(25), orderRow({ qty: -2 })), 'trade_order.item_count: column "qty" in the order row is not a non-negative integer'],
    ['missing order no', tradeEvent('TRADE_SUCCESS', hexId(26), orderRow({ order_no: null })), 'trade_order.order_no: column "order_no" is missing or null'],
    ['bad confirm time', tradeEvent('TRADE_SUCCESS', hexId(27), orderRow({ confirm_at: 'tomorrow' })), 'confirm_time: column "confirm_at" is not an ISO-8601 timestamp or epoch milliseconds'],
    ['missing confirm time', tradeEvent('TRADE_SUCCESS', hexId(28), orderRow({ confirm_at: null })), 'confirm_time: column "confirm_at" is missing or null'],
    ['no order row', { ...tradeEvent('TRADE_SUCCESS', hexId(29)), order: undefined }, 'event TRADE_SUCCESS: order row (event.order) is missing'],
    ['bad logon id', tradeEvent('TRADE_SUCCESS', hexId(30), orderRow({ buyer_phone: 'not an account' })), 'event_child.user_id_no: column "buyer_phone" is not an Alipay logon id', sinkConfig({ buyer: { column: 'buyer_phone', type: 'ALIPAY_LOGON_ID' } })],
    ['sub-fen yuan', tradeEvent('TRADE_SUCCESS', hexId(31), orderRow({ paid_fen: '1.005' })), 'trade_order.actual_total_amount: column "paid_fen" in the order row has more than two decimals', sinkConfig({ amountUnit: 'yuan' })],
  ];
  for (const [what, event, message, config] of cases) {
    it(what, () => {
      const result = build(event, config);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.message).toContain(message);
    });
  }

  it('visits with a bad visitor, a missing visit record or a page that contradicts the code', () => {
    expect(build(visitEvent(hexId(32), { visitor: { type: 'PHONE', id: '0571-8888888' } }))).toMatchObject({
      ok: false,
      message: expect.stringContaining('event_child.user_id_no: visit.visitor is not a mainland China mobile number'),
    });
    expect(build({ ...visitEvent(hexId(33)), visit: undefined })).toMatchObject({ ok: false, message: expect.stringContaining('event.visit') });
    expect(build({ ...visitEvent(hexId(34)), code: 'SHARE_LANDING_PAGE' })).toMatchObject({ ok: false, message: expect.stringContaining('event_instance_code') });
  });

  it('never puts the offending value in the message', () => {
    const result = build(tradeEvent('TRADE_SUCCESS', hexId(35), orderRow({ buyer_phone: '1380013800' })));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).not.toContain('1380013800');
  });
});

describe('phone normalisation', () => {
  it.each([
    ['13800138000', '+86-13800138000'],
    ['+8613800138000', '+86-13800138000'],
    ['86-13800138000', '+86-13800138000'],
    ['+86-13800138000', '+86-13800138000'],
    ['+86 138 0013 8000', '+86-13800138000'],
    ['138-0013-8000', '+86-13800138000'],
    ['008613800138000', '+86-13800138000'],
    [' 13800138000 ', '+86-13800138000'],
  ])('%j → %s', (input, expected) => {
    expect(normalisePhone(input)).toStrictEqual({ ok: true, value: expected });
  });

  it.each(['1380013800', '138001380000', '23800138000', '+85213800138000', '+1-13800138000', '138.0013.8000', '(138)00138000', 'abc', '+86-'])(
    'refuses %j',
    (input) => {
      expect(normalisePhone(input).ok).toBe(false);
    },
  );
});

describe('ALIPAY_LOGON_ID', () => {
  it.each([
    ['+8613800138000', '13800138000'],
    ['138-0013-8000', '13800138000'],
    ['138 0013 8000', '13800138000'],
    ['0086 13800138000', '13800138000'],
    ['+86-138-0013-8000', '13800138000'],
    ['8613800138000', '13800138000'],
    [' 13800138000 ', '13800138000'],
    ['user@example.com', 'user@example.com'],
    [' First.Last+tag@example.com.cn ', 'First.Last+tag@example.com.cn'],
  ])('%j → %s (a phone as the 11 bare digits the API model shows; e-mail as issued)', (input, expected) => {
    expect(normaliseLogonId(input)).toStrictEqual({ ok: true, value: expected });
  });

  it.each(['12345', '+852 9123 4567', '+1 555 123 4567', '23800138000', '138.0013.8000', '(138) 0013 8000', '1380013800', '+86-'])(
    'refuses the phone-shaped %j as not a mainland mobile number',
    (input) => {
      expect(normaliseLogonId(input)).toStrictEqual({
        ok: false,
        problem: 'is phone-shaped but not a mainland China mobile number (expected 11 digits starting with 1, optionally prefixed with +86)',
      });
    },
  );

  it.each(['alice', 'user@', '@example.com', 'user@example', 'a b@example.com'])('refuses %j as no logon id at all', (input) => {
    expect(normaliseLogonId(input)).toStrictEqual({
      ok: false,
      problem: 'is not an Alipay logon id (expected an e-mail address or a mainland China mobile number)',
    });
  });

  const logonConfig = sinkConfig({
    buyer: { column: 'buyer_account', type: 'ALIPAY_LOGON_ID' },
    sharer: { column: 'sharer_account', type: 'ALIPAY_LOGON_ID' },
  });

  it('rows: a phone-shaped logon id goes out normalised, under ALIPAY_LOGON_ID', () => {
    const event = tradeEvent('TRADE_SUCCESS', hexId(50), orderRow({ buyer_account: '+8613800138000', sharer_account: '0086 139 0000 0000' }));
    expect(params(event, logonConfig)).toMatchObject({
      event_child: { user_id_no: '13800138000', user_id_type: 'ALIPAY_LOGON_ID' },
      event_parent: { user_id_no: '13900000000', user_id_type: 'ALIPAY_LOGON_ID' },
    });
  });

  it('visits: the same rule for the visitor and the sharer', () => {
    const event = visitEvent(hexId(51), { visitor: { type: 'ALIPAY_LOGON_ID', id: '138 0013 8000' }, sharer: { type: 'ALIPAY_LOGON_ID', id: 'share@example.com' } });
    expect(params(event)).toMatchObject({
      event_child: { user_id_no: '13800138000', user_id_type: 'ALIPAY_LOGON_ID' },
      event_parent: { user_id_no: 'share@example.com', user_id_type: 'ALIPAY_LOGON_ID' },
    });
  });

  it('a phone-shaped logon id that is no valid number rejects the delivery, naming the field and never the value', () => {
    const result = build(tradeEvent('TRADE_SUCCESS', hexId(52), orderRow({ buyer_account: '+852 9123 4567', sharer_account: null })), logonConfig);
    expect(result).toStrictEqual({
      ok: false,
      message: 'event_child.user_id_no: column "buyer_account" is phone-shaped but not a mainland China mobile number (expected 11 digits starting with 1, optionally prefixed with +86)',
    });
    const sharer = build(tradeEvent('TRADE_SUCCESS', hexId(53), orderRow({ buyer_account: 'a@b.cn', sharer_account: '12345' })), logonConfig);
    expect(sharer.ok === false && sharer.message).toMatch(/^event_parent\.user_id_no: column "sharer_account" is phone-shaped/);
  });
});

describe('numbers are never rounded', () => {
  const unsafe = 'holds a JSON number beyond 2^53, which may already have been rounded; deliver the column as text (numeric or int8)';

  it('an amount held as a JS number beyond 2^53 is refused; the same digits as text go out exactly', () => {
    expect(build(tradeEvent('TRADE_SUCCESS', hexId(60), orderRow({ paid_fen: 2 ** 53 + 2 })))).toStrictEqual({
      ok: false,
      message: `trade_order.actual_total_amount: column "paid_fen" in the order row ${unsafe}`,
    });
    const exact = params(tradeEvent('TRADE_SUCCESS', hexId(61), orderRow({ paid_fen: '9007199254740993', original_fen: '9223372036854775807' })));
    expect(exact.trade_order).toMatchObject({ actual_total_amount: '9007199254740993', original_total_amount: '9223372036854775807' });
  });

  it.each([
    [2 ** 53, false],
    [9007199254740991, true],
    [1e21, false],
    ['12345678901234567993', false], // beyond Java Long: refused, never wrapped or rounded
    ['9223372036854775807', true],
  ] as const)('count %j accepted: %s', (value, accepted) => {
    expect(parseCount(value).ok).toBe(accepted);
  });

  it('yuan amounts are converted by string arithmetic, even beyond 2^53 fen', () => {
    expect(parseAmount('90071992547409.93', 'yuan')).toStrictEqual({ ok: true, value: '9007199254740993' });
    expect(parseAmount(12345678901234567993, 'yuan')).toStrictEqual({ ok: false, problem: unsafe });
  });

  it('an order number held as a JS number beyond 2^53 is refused instead of falling back to a rounded event.orderNo', () => {
    const event = tradeEvent('TRADE_SUCCESS', hexId(62), orderRow({ order_no: 12345678901234567993 }), { orderNo: '12345678901234567000' });
    expect(build(event)).toStrictEqual({ ok: false, message: `trade_order.order_no: column "order_no" ${unsafe}` });
  });

  it('a sharer column holding something unreadable is refused, not silently dropped', () => {
    expect(build(tradeEvent('TRADE_SUCCESS', hexId(63), orderRow({ sharer_phone: true })))).toStrictEqual({
      ok: false,
      message: 'event_parent.user_id_no: column "sharer_phone" is neither text nor a number',
    });
  });
});

describe('amounts', () => {
  it.each([
    ['12.50', '1250'],
    ['12.5', '1250'],
    ['12', '1200'],
    ['0.01', '1'],
    ['0.10', '10'],
    ['12.500', '1250'],
    [12.5, '1250'],
    [0.07, '7'],
    ['92233720368547758.07', '9223372036854775807'],
    ['007.10', '710'],
  ])('yuan %j → %s fen', (input, expected) => {
    expect(parseAmount(input, 'yuan')).toStrictEqual({ ok: true, value: expected });
  });

  it.each(['12.505', '-1', '1e3', '.5', 'abc', '', '92233720368547758.08'])('refuses yuan %j', (input) => {
    expect(parseAmount(input, 'yuan').ok).toBe(false);
  });

  it.each([
    [100, '100'],
    ['100', '100'],
    ['100.00', '100'],
    ['0', '0'],
  ])('fen %j → %s', (input, expected) => {
    expect(parseAmount(input, 'fen')).toStrictEqual({ ok: true, value: expected });
  });

  it.each([1.5, '1.5', -1, true, null])('refuses fen %j', (input) => {
    expect(parseAmount(input, 'fen').ok).toBe(false);
  });
});

describe('timestamps', () => {
  it.each([
    ['2020-12-27T10:34:14Z', '2020-12-27T10:34:14.000Z'],
    ['2020-12-27T18:34:14+08:00', '2020-12-27T10:34:14.000Z'],
    ['2020-12-27 18:34:14+08', '2020-12-27T10:34:14.000Z'],
    ['2020-12-27T18:34:14.5', '2020-12-27T10:34:14.500Z'],
    ['1609065254000', '2020-12-27T10:34:14.000Z'],
    [1609065254000, '2020-12-27T10:34:14.000Z'],
  ])('%j → %s (zone-less values are China time)', (input, expected) => {
    const parsed = parseInstant(input);
    expect(parsed.ok && parsed.value.toISOString()).toBe(expected);
  });

  it.each(['1609065254', '2020-13-40T00:00:00Z', 'yesterday'])('refuses %j', (input) => {
    expect(parseInstant(input).ok).toBe(false);
  });
});

describe('config', () => {
  const base = { ...sinkConfig(), kind: 'antchain' as const, timeout: '20s', maxResponseBytes: '256KB', retry: {}, accessSecret: 'x' };

  it('applies defaults and keeps the parsed durations', () => {
    const parsed = antchainSinkSchema.parse({ ...base, confirmTime: { column: 'c', offset: '1h' } });
    expect(parsed).toMatchObject({ amountUnit: 'fen', timeout: 20_000, maxResponseBytes: 256_000, pauseAfterUntrustedAnswers: 5, sdkVersion: 'ts-undici-1.0.0', baseSdkVersion: '3.4.0', confirmTime: { offset: 3_600_000 } });
  });

  it('refuses unknown keys, TWO_STEP without confirmTime and a non-http endpoint', () => {
    expect(antchainSinkSchema.safeParse({ ...base, secretKey: 'x' }).success).toBe(false);
    expect(antchainSinkSchema.safeParse({ ...base, buyer: { column: 'b', type: 'PHONE', extra: 1 } }).success).toBe(false);
    const noTime = antchainSinkSchema.safeParse({ ...base, confirmTime: undefined });
    expect(noTime.success).toBe(false);
    expect(noTime.error?.issues[0]?.path).toEqual(['confirmTime']);
    expect(antchainSinkSchema.safeParse({ ...base, endpoint: 'ftp://example.com' }).success).toBe(false);
    expect(antchainSinkSchema.safeParse({ ...base, confirmType: 'DIRECT' }).success).toBe(false);
  });

  it('a missing secret fails sink creation with a SecretError naming the config path', () => {
    const create = () => createAntchainSink(sinkConfig(), { logger: silentLogger(), env: {}, name: 'antchain-main' });
    expect(create).toThrow(SecretError);
    expect(create).toThrow('sinks.antchain-main.accessSecret: environment variable ANTCHAIN_TEST_SECRET is not set');
  });
});

describe('handles()', () => {
  const codes = (config: AntchainSinkConfig) => {
    const sink = createAntchainSink(config, { logger: silentLogger(), env: TEST_ENV });
    const handled = [
      tradeEvent('TRADE_SUCCESS', hexId(40)),
      tradeEvent('REFUND_SUCCESS', hexId(41)),
      tradeEvent('TRADE_CONFIRM', hexId(42)),
      visitEvent(hexId(43)),
      visitEvent(hexId(44), { page: 'SHARE_LANDING_PAGE' }),
    ]
      .filter((event) => sink.handles(event))
      .map((event) => event.code);
    void sink.close();
    return handled;
  };

  it('TWO_STEP: no TRADE_CONFIRM', () => {
    expect(codes(sinkConfig())).toEqual(['TRADE_SUCCESS', 'REFUND_SUCCESS', 'CONTRACT_DETAIL_PAGE', 'SHARE_LANDING_PAGE']);
  });

  it('TWO_STEP_MANUAL: every code', () => {
    expect(codes(sinkConfig({ confirmType: 'TWO_STEP_MANUAL' }))).toHaveLength(5);
  });

  it('config.events narrows the set', () => {
    expect(codes(sinkConfig({ events: ['TRADE_SUCCESS', 'TRADE_CONFIRM', 'SHARE_LANDING_PAGE'] }))).toEqual(['TRADE_SUCCESS', 'SHARE_LANDING_PAGE']);
  });
});
