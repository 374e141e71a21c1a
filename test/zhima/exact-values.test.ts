import { generateKeyPairSync } from 'node:crypto';
import { MockAgent } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { createZhimaSink, KeyError } from '../../connectors/sinks/zhima/index.js';
import { buildBizData } from '../../connectors/sinks/zhima/biz-data.js';
import { buildBizContent } from '../../connectors/sinks/zhima/request.js';
import type { JsonValue } from '../../src/core/events.js';
import type { Sink } from '../../src/core/sink.js';
import { silentLogger } from '../../src/log.js';
import { parseConfig, tradeEvent } from './helpers.js';

/**
 * Issue 12: numbers go into biz_data with exactly the digits of their column, and values
 * over the document's lengths are refused per event (never cut), naming field, limit, length.
 */

const ENDPOINT = 'https://openapi.alipay.com/gateway.do';

function bizDataOf(mapping: Parameters<typeof buildBizData>[0], row: Parameters<typeof buildBizData>[1]): string {
  const built = buildBizData(mapping, row);
  if (!built.ok) throw new Error(built.message);
  return built.value;
}

function rejection(result: ReturnType<typeof buildBizContent>): string {
  if (result.status !== 'rejected') throw new Error(`expected a rejection, got ${JSON.stringify(result)}`);
  expect(result.code).toBe('INVALID_EVENT');
  return result.message;
}

describe('biz_data numbers keep the digits of their column', () => {
  const amount = { amount: { column: 'amount', type: 'number' as const, optional: false } };
  const count = { count: { column: 'count', type: 'integer' as const, optional: false } };

  it.each([
    ['12345678901234567993', '12345678901234567993'],
    ['-12345678901234567993.000000000000000001', '-12345678901234567993.000000000000000001'],
    ['12.30', '12.30'],
    ['0.10', '0.10'],
    ['100.00', '100.00'],
    ['007.50', '7.50'],
    ['+5', '5'],
    ['-0', '-0'],
    ['0', '0'],
    [' 35.50 ', '35.50'],
    ['1.5E+3', '1.5E+3'],
    ['2e-7', '2e-7'],
  ])('number %j → %s', (column, token) => {
    expect(bizDataOf(amount, { amount: column })).toBe(`{"amount":${token}}`);
  });

  it.each([
    ['12345678901234567993', '12345678901234567993'],
    ['-9223372036854775809', '-9223372036854775809'],
    ['0042', '42'],
    ['12.00', '12'],
  ])('integer %j → %s', (column, token) => {
    expect(bizDataOf(count, { count: column })).toBe(`{"count":${token}}`);
  });

  it('the exact text parses back to the same decimal digits, where a double could not hold them', () => {
    const text = bizDataOf(amount, { amount: '12345678901234567993' });
    expect(JSON.stringify(JSON.parse(text))).not.toBe(text); // proof the old path (via a double) rounded
    expect(/"amount":(\d+)/.exec(text)?.[1]).toBe('12345678901234567993');
  });

  it('JS numbers of ordinary size are written exactly as JSON.stringify writes them', () => {
    const row = { a: 3, b: 0, c: 35.5, d: -0.25, e: 9007199254740991 };
    const mapping = Object.fromEntries(Object.keys(row).map((k) => [k, { column: k, type: 'number' as const, optional: false }]));
    expect(bizDataOf(mapping, row)).toBe(JSON.stringify(row));
  });

  it.each<['number' | 'integer' | 'string', JsonValue]>([
    ['number', 12345678901234567993],
    ['integer', 2 ** 53 + 2],
    ['string', 12345678901234567993],
    ['string', { nested: [1, 2 ** 60] }],
  ])('a %s field whose JS number is beyond 2^53 is refused (it may already be rounded)', (type, value) => {
    const built = buildBizData({ f: { column: 'col', type, optional: false } }, { col: value });
    expect(built).toStrictEqual({
      ok: false,
      message: 'biz_data.f: column col holds a JSON number beyond 2^53, which may already have been rounded; deliver the column as text (numeric or int8)',
    });
  });

  it.each([
    ['number', '.5'],
    ['number', '5.'],
    ['number', '1,5'],
    ['number', '0x10'],
    ['number', 'NaN'],
    ['number', 'Infinity'],
    ['number', ''],
    ['number', true],
    ['integer', '1.5'],
    ['integer', '1e3'],
    ['integer', 1.5],
  ] as const)('%s field refuses %j naming field and column', (type, value) => {
    const built = buildBizData({ f: { column: 'col', type, optional: false } }, { col: value });
    expect(built).toStrictEqual({ ok: false, message: `biz_data.f: column col is not ${type === 'integer' ? 'an integer' : 'a number'}` });
  });

  it('the exact digits reach the signed request, inside the double-encoded biz_data', () => {
    const sink = createZhimaSink(parseConfig({ endpoint: ENDPOINT, bizData: { price: { column: 'price', type: 'number' } } }), { logger: silentLogger() });
    try {
      const preview = sink.preview(tradeEvent({}, { price: '12345678901234567993.10' }), { at: new Date('2024-01-15T02:30:00Z'), nonce: 'a'.repeat(32) });
      if (preview.status !== 'request') throw new Error(JSON.stringify(preview));
      const bizContent = JSON.parse(new URLSearchParams(preview.request.body).get('biz_content')!) as { biz_data: string };
      expect(bizContent.biz_data).toBe('{"price":12345678901234567993.10}');
    } finally {
      void sink.close();
    }
  });
});

describe('biz_content lengths: over the limit is a per-event rejection, never a cut', () => {
  const config = parseConfig({ endpoint: ENDPOINT });

  it.each([
    ['out_principal_id', { movie_id: 'm'.repeat(129) }, 'out_principal_id: column movie_id is 129 characters; the limit is 128'],
    ['user_id', { alipay_user_id: `2088${'1'.repeat(61)}` }, 'user_id: column alipay_user_id is 65 characters; the limit is 64'],
  ])('%s', (_field, row, message) => {
    expect(rejection(buildBizContent(config, tradeEvent({}, row)))).toBe(message);
  });

  it('exactly at the limit is sent', () => {
    expect(buildBizContent(config, tradeEvent({}, { movie_id: 'm'.repeat(128), alipay_user_id: `2088${'1'.repeat(60)}` })).status).toBe('ok');
    expect(buildBizContent(config, tradeEvent({ id: 'x'.repeat(128) })).status).toBe('ok');
  });

  it('out_biz_no (the event id) over 128', () => {
    expect(rejection(buildBizContent(config, tradeEvent({ id: 'x'.repeat(10_000) })))).toBe('out_biz_no: the event id is 10000 characters; the limit is 128');
  });

  it('an order number of 10,000 characters in biz_data is refused, not truncated', () => {
    const message = rejection(buildBizContent(config, tradeEvent({}, { order_no: '9'.repeat(10_000) })));
    expect(message).toMatch(/^biz_data is 10\d{3} characters \(10\d{3} UTF-8 bytes\); the limit is 4096$/);
  });

  it('config-derived fields are checked too (biz_state_code, category_code, service_id)', () => {
    // The schema bounds these at load; a config built another way still cannot slip through.
    const cases = [
      [{ ...config, states: { TRADE_SUCCESS: 'S'.repeat(65) } }, 'biz_state_code: states.TRADE_SUCCESS is 65 characters; the limit is 64'],
      [{ ...config, categoryCode: 'C'.repeat(70) }, 'category_code: categoryCode is 70 characters; the limit is 64'],
      [{ ...config, serviceId: '1'.repeat(129) }, 'service_id: serviceId is 129 characters; the limit is 128'],
    ] as const;
    for (const [cfg, message] of cases) expect(rejection(buildBizContent(cfg, tradeEvent()))).toBe(message);
  });

  it('a principal id held as a JS number beyond 2^53 is refused, not rounded', () => {
    expect(rejection(buildBizContent(config, tradeEvent({}, { movie_id: 12345678901234567993 })))).toBe(
      'out_principal_id: column movie_id holds a JSON number beyond 2^53, which may already have been rounded; deliver the column as text',
    );
  });

  it('the sink parks such an event without sending anything', async () => {
    // Every request through this agent fails: a rejection (not a retry) proves nothing was sent.
    const agent = new MockAgent();
    agent.disableNetConnect();
    const sink: Sink = createZhimaSink(config, { logger: silentLogger(), dispatcher: agent });
    try {
      const outcome = await sink.deliver(tradeEvent({}, { movie_id: 'm'.repeat(200) }), new AbortController().signal);
      expect(outcome).toStrictEqual({
        status: 'rejected',
        code: 'INVALID_EVENT',
        message: 'out_principal_id: column movie_id is 200 characters; the limit is 128',
        info: { durationMs: 0 },
      });
    } finally {
      await sink.close();
      await agent.close();
    }
  });
});

describe('common parameters from config are bounded at start-up', () => {
  const sinks: Sink[] = [];
  afterAll(async () => {
    await Promise.all(sinks.map((s) => s.close()));
  });

  it('a key whose signatures exceed sign\'s 344 characters stops creation, naming the path', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const make = () => createZhimaSink(parseConfig({ endpoint: ENDPOINT, privateKey: pem }), { logger: silentLogger() });
    expect(make).toThrow(KeyError);
    expect(make).toThrow('sinks.zhima.privateKey: a 3072-bit key makes 512-character signatures; sign is limited to 344 (an RSA-2048 key)');
  });

  it('app_auth_token over 40 characters stops creation; 40 is fine', () => {
    const make = (token: string) => createZhimaSink(parseConfig({ endpoint: ENDPOINT, appAuthToken: token }), { logger: silentLogger() });
    expect(() => make('t'.repeat(41))).toThrow('sinks.zhima.appAuthToken: is 41 characters; the limit is 40');
    sinks.push(make('t'.repeat(40)));
  });
});
