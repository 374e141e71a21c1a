import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createZhimaSink, KeyError, zhimaSinkSchema } from '../../connectors/sinks/zhima/index.js';
import { buildBizContent } from '../../connectors/sinks/zhima/request.js';
import { beijingTimestamp } from '../../connectors/sinks/zhima/timestamp.js';
import { silentLogger } from '../../src/log.js';
import { APP_PRIVATE_PKCS1, APP_PUBLIC, GATEWAY_PUBLIC, parseConfig, tradeEvent } from './helpers.js';

const ENDPOINT = 'https://openapi.alipay.com/gateway.do';
const config = parseConfig({ endpoint: ENDPOINT });

function bizContentOf(result: ReturnType<typeof buildBizContent>): Record<string, string> {
  if (result.status !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(result)}`);
  return JSON.parse(result.bizContent) as Record<string, string>;
}

describe('event → biz_content', () => {
  it('writes the seven fields in the document order with biz_data as a JSON string in config order', () => {
    const event = tradeEvent({ id: 'abc123' });
    const biz = bizContentOf(buildBizContent(config, event));
    expect(Object.keys(biz)).toEqual(['user_id', 'out_biz_no', 'out_principal_id', 'biz_state_code', 'category_code', 'service_id', 'biz_data']);
    expect(biz).toMatchObject({ user_id: '2088102000000001', out_biz_no: 'abc123', out_principal_id: '1303902', biz_state_code: 'CONTRACT_STATE_WATCH_MOVIE_BUY' });
    expect(typeof biz.biz_data).toBe('string');
    expect(biz.biz_data).toBe(`{"buyCnt":3,"cinemaName":"自由人影城","orderNo":"${event.order!.order_no as string}","startTime":"2020-01-25 12:30:00"}`);
  });

  it.each([null, '', '   ', undefined])('no Alipay user id (%j) → not_applicable naming the column', (value) => {
    const event = tradeEvent({}, { alipay_user_id: value as null });
    if (value === undefined) delete event.order!.alipay_user_id;
    expect(buildBizContent(config, event)).toEqual({ status: 'not_applicable', reason: 'no Alipay user id in column alipay_user_id' });
  });

  it.each(['1234567', '2088abc', 'x2088102000000001', true])('a user id that is not 2088+digits (%j) is rejected without echoing it', (value) => {
    const result = buildBizContent(config, tradeEvent({}, { alipay_user_id: value }));
    expect(result).toMatchObject({ status: 'rejected', code: 'INVALID_EVENT' });
    expect(result.status === 'rejected' && result.message).toContain('alipay_user_id');
    expect(result.status === 'rejected' && result.message).not.toContain(String(value));
  });

  it('a missing mapped column is rejected naming the field and the column', () => {
    const result = buildBizContent(config, tradeEvent({}, { cinema_name: null }));
    expect(result).toEqual({ status: 'rejected', code: 'INVALID_EVENT', message: 'biz_data.cinemaName: column cinema_name is missing or null' });
  });

  it('a missing principal id is rejected naming its column', () => {
    const result = buildBizContent(config, tradeEvent({}, { movie_id: null }));
    expect(result.status === 'rejected' && result.message).toBe('out_principal_id: column movie_id is missing or empty');
  });

  it('optional fields are left out when null', () => {
    const biz = bizContentOf(buildBizContent(config, tradeEvent({}, { show_start: null })));
    expect(JSON.parse(biz.biz_data!)).not.toHaveProperty('startTime');
  });

  it('converts types: integer from int8 text, number from numeric text, string from anything', () => {
    const typed = parseConfig({
      endpoint: ENDPOINT,
      bizData: {
        n: { column: 'amount', type: 'number' },
        i: { column: 'count', type: 'integer' },
        s: 'flag',
        j: 'meta',
      },
    });
    const event = tradeEvent({}, { amount: '35.50', count: '12', flag: true, meta: { a: [1] } });
    expect(JSON.parse(bizContentOf(buildBizContent(typed, event)).biz_data!)).toEqual({ n: 35.5, i: 12, s: 'true', j: '{"a":[1]}' });
    for (const [column, value] of [['count', '1.5'], ['count', '1e3'], ['amount', 'abc'], ['amount', '.5']] as const) {
      const bad = buildBizContent(typed, tradeEvent({}, { amount: '1', count: '1', flag: 'x', meta: 'y', [column]: value }));
      expect(bad.status === 'rejected' && bad.message).toMatch(new RegExp(`column ${column} is not`));
    }
  });

  it('enforces biz_data ≤ 4096 characters and ≤ 4096 UTF-8 bytes', () => {
    const one = parseConfig({ endpoint: ENDPOINT, bizData: { t: 'text' } });
    const overhead = '{"t":""}'.length;
    const fits = buildBizContent(one, tradeEvent({}, { text: 'a'.repeat(4096 - overhead) }));
    expect(fits.status).toBe('ok');
    const tooManyChars = buildBizContent(one, tradeEvent({}, { text: 'a'.repeat(4097 - overhead) }));
    expect(tooManyChars.status === 'rejected' && tooManyChars.message).toMatch(/limit is 4096/);
    // 2000 CJK characters are well under 4096 characters but 6000 bytes.
    const tooManyBytes = buildBizContent(one, tradeEvent({}, { text: '汉'.repeat(2000) }));
    expect(tooManyBytes.status === 'rejected' && tooManyBytes.message).toMatch(/6008 UTF-8 bytes/);
  });

  it('a refund row overrides the order row for the columns it has', () => {
    const event = tradeEvent({ code: 'REFUND_SUCCESS', refund: { cinema_name: '退款影城', ticket_count: null } });
    const biz = bizContentOf(buildBizContent(config, event));
    expect(biz.biz_state_code).toBe('CONTRACT_STATE_WATCH_MOVIE_REFUND');
    expect(JSON.parse(biz.biz_data!)).toMatchObject({ cinemaName: '退款影城', buyCnt: 3 });
  });
});

describe('handles', () => {
  const sink = createZhimaSink(parseConfig({ endpoint: ENDPOINT, states: { TRADE_SUCCESS: 'BUY', REFUND_SUCCESS: 'REFUND' }, events: ['TRADE_SUCCESS', 'TRADE_CONFIRM'] }), { logger: silentLogger() });
  afterAll(() => sink.close());

  it('takes mapped TRADE codes that config.events allows, nothing else', () => {
    expect(sink.handles(tradeEvent())).toBe(true);
    expect(sink.handles(tradeEvent({ code: 'REFUND_SUCCESS' }))).toBe(false); // mapped, but not in events
    expect(sink.handles(tradeEvent({ code: 'TRADE_CONFIRM' }))).toBe(false); // allowed, but not mapped
    expect(sink.handles({ ...tradeEvent(), code: 'CONTRACT_DETAIL_PAGE', kind: 'VISIT' })).toBe(false);
    expect(sink.kind).toBe('zhima');
    expect(sink.name).toBe('zhima');
  });

  it('preview says not_applicable for an unmapped code and without a user id', () => {
    const at = new Date();
    expect(sink.preview(tradeEvent({ code: 'TRADE_CONFIRM' }), { at, nonce: '0'.repeat(32) }).status).toBe('not_applicable');
    expect(sink.preview(tradeEvent({}, { alipay_user_id: null }), { at, nonce: '0'.repeat(32) })).toEqual({ status: 'not_applicable', reason: 'no Alipay user id in column alipay_user_id' });
  });
});

describe('Beijing timestamp', () => {
  const originalTz = process.env.TZ;
  afterEach(() => {
    if (originalTz === undefined) delete process.env.TZ;
    else process.env.TZ = originalTz;
  });

  it('is epoch + 8 h whatever the process time zone is', () => {
    const at = new Date('2024-01-15T02:30:00Z');
    const seen = ['UTC', 'America/Los_Angeles', 'Asia/Shanghai', 'Pacific/Kiritimati'].map((tz) => {
      process.env.TZ = tz;
      return [beijingTimestamp(at), at.getHours()] as const;
    });
    expect(new Set(seen.map(([ts]) => ts))).toEqual(new Set(['2024-01-15 10:30:00']));
    // The zones really differed: local hours moved while our timestamp did not.
    expect(new Set(seen.map(([, hour]) => hour)).size).toBeGreaterThan(1);
  });

  it('crosses the date line at 16:00 UTC', () => {
    expect(beijingTimestamp(new Date('2023-12-31T16:00:00Z'))).toBe('2024-01-01 00:00:00');
    expect(beijingTimestamp(new Date('2024-02-28T23:59:59Z'))).toBe('2024-02-29 07:59:59');
  });
});

describe('config', () => {
  const base = { kind: 'zhima', endpoint: ENDPOINT, appId: '2021000000000001', privateKey: 'x', alipayPublicKey: 'y', userIdColumn: 'u', principalIdColumn: 'p', categoryCode: 'C', serviceId: 'S', states: { TRADE_SUCCESS: 'B' }, bizData: {} };

  it('applies the common defaults and keeps bizData order', () => {
    const parsed = zhimaSinkSchema.parse({ ...base, timeout: '5s', bizData: { z: 'a', a: { column: 'b', type: 'integer' } } });
    expect(parsed.timeout).toBe(5000);
    expect(parsed.concurrency).toBe(16);
    expect(Object.keys(parsed.bizData)).toEqual(['z', 'a']);
  });

  it.each([
    ['an unknown key', { surprise: 1 }, 'surprise'],
    ['a VISIT code in states', { states: { CONTRACT_DETAIL_PAGE: 'X' } }, 'states'],
    ['an endpoint with a query', { endpoint: `${ENDPOINT}?charset=utf-8` }, 'endpoint'],
    ['no key to verify answers', { alipayPublicKey: undefined }, 'alipayPublicKey'],
    ['an unknown bizData type', { bizData: { a: { column: 'b', type: 'date' } } }, 'bizData'],
  ])('refuses %s', (_name, patch, path) => {
    const result = zhimaSinkSchema.safeParse({ ...base, ...patch });
    expect(result.success).toBe(false);
    expect(JSON.stringify(result.error?.issues)).toContain(path);
  });
});

describe('key loading at creation', () => {
  const secretish = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7notakey';

  it.each([
    ['a malformed private key', { privateKey: secretish }, 'sinks.zhima.privateKey'],
    ['a public key as private key', { privateKey: APP_PUBLIC }, 'sinks.zhima.privateKey'],
    ['a private key as Alipay public key', { alipayPublicKey: APP_PRIVATE_PKCS1 }, 'sinks.zhima.alipayPublicKey'],
    ['a malformed public key', { alipayPublicKey: secretish }, 'sinks.zhima.alipayPublicKey'],
  ])('%s throws naming the config path, never the key text', (_name, patch, path) => {
    const make = () => createZhimaSink(parseConfig({ endpoint: ENDPOINT, ...patch }), { logger: silentLogger() });
    expect(make).toThrow(KeyError);
    expect(make).toThrow(path);
    try {
      make();
    } catch (err) {
      expect((err as Error).message).not.toContain('MII');
    }
  });

  it('resolves env and file references; a missing variable is named', () => {
    const cfg = parseConfig({ endpoint: ENDPOINT, privateKey: { env: 'ZHIMA_TEST_KEY' }, alipayPublicKey: GATEWAY_PUBLIC });
    expect(() => createZhimaSink(cfg, { logger: silentLogger(), env: {} })).toThrow('sinks.zhima.privateKey: environment variable ZHIMA_TEST_KEY is not set');
    const sink = createZhimaSink(cfg, { logger: silentLogger(), env: { ZHIMA_TEST_KEY: APP_PRIVATE_PKCS1 }, name: 'zm2' });
    expect(sink.name).toBe('zm2');
  });
});
