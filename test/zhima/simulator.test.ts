import { createPrivateKey, sign as rsaSign } from 'node:crypto';
import { AlipaySdk } from 'alipay-sdk';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startZhimaSimulator, type ZhimaSimulator } from '../../src/sandbox/zhima-simulator.js';
import { APP_ID, APP_PRIVATE_PKCS1, APP_PUBLIC, GATEWAY_PRIVATE, GATEWAY_PUBLIC, keyText } from './helpers.js';

/**
 * What the simulator answers to each kind of bad request. Requests are built here by hand
 * (own canonical string, own signing) so the simulator is checked independently of the sink;
 * signed answers are verified with alipay-sdk's checkResponseSign.
 */

const RESPONSE_KEY = 'zhima_data_state_data_sync_response';
const APP_KEY = createPrivateKey(APP_PRIVATE_PKCS1);
const sdk = new AlipaySdk({ appId: APP_ID, privateKey: APP_PRIVATE_PKCS1, alipayPublicKey: GATEWAY_PUBLIC });

let sim: ZhimaSimulator;
beforeAll(async () => {
  sim = await startZhimaSimulator({
    appId: APP_ID,
    appPublicKeyPem: APP_PUBLIC,
    gatewayPrivateKeyPem: GATEWAY_PRIVATE,
    bizStateCodes: ['CONTRACT_STATE_WATCH_MOVIE_BUY'],
    appAuthTokens: ['202401BBtestAppAuthToken0000000000000001'],
  });
});
afterEach(() => sim.reset());
afterAll(() => sim.close());

const beijing = (ms = Date.now()): string => new Date(ms + 8 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ');

function biz(patch: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    user_id: '2088102000000001',
    out_biz_no: `sim-${Math.random().toString(16).slice(2)}`,
    out_principal_id: '1303902',
    biz_state_code: 'CONTRACT_STATE_WATCH_MOVIE_BUY',
    category_code: 'WATCH_MOVIE',
    service_id: '2019080700000000000001800100',
    biz_data: '{"buyCnt":3}',
    ...patch,
  };
}

interface Call {
  params?: Record<string, string | undefined>;
  bizContent?: string;
  /** Parameter names sent in the body instead of the query (biz_content is always in the body unless listed in `query`). */
  inBody?: string[];
  inQuery?: string[];
  /** Leave these out of the signed string. */
  unsigned?: string[];
  key?: ReturnType<typeof createPrivateKey>;
  tamper?: (query: URLSearchParams) => void;
}

async function call(c: Call = {}) {
  const all: Record<string, string> = {};
  const base = { method: 'zhima.data.state.data.sync', app_id: APP_ID, charset: 'utf-8', version: '1.0', sign_type: 'RSA2', timestamp: beijing(), format: 'JSON', biz_content: c.bizContent ?? JSON.stringify(biz()) };
  for (const [k, v] of Object.entries({ ...base, ...c.params })) if (v !== undefined) all[k] = v;
  const canonical = Object.keys(all).filter((k) => !c.unsigned?.includes(k)).sort().map((k) => `${k}=${all[k]}`).join('&');
  all.sign = rsaSign('sha256', Buffer.from(canonical, 'utf8'), c.key ?? APP_KEY).toString('base64');
  const query = new URLSearchParams();
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(all)) {
    const toBody = c.inBody?.includes(k) || (k === 'biz_content' && !c.inQuery?.includes(k));
    (toBody ? body : query).append(k, v);
  }
  c.tamper?.(query);
  const res = await request(`${sim.url}?${query}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded;charset=UTF-8' }, body: body.toString() });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: res.statusCode === 200 ? (JSON.parse(text) as Record<string, Record<string, string> & { sign?: string }>) : undefined };
}

/** The answer object, after checking it is signed and verifies (alipay-sdk throws otherwise). */
function signedAnswer(r: Awaited<ReturnType<typeof call>>): Record<string, string> {
  expect(r.status).toBe(200);
  const sign = r.json?.sign as unknown as string;
  expect(typeof sign).toBe('string');
  sdk.checkResponseSign(r.text, RESPONSE_KEY, sign, '');
  return r.json![RESPONSE_KEY]!;
}

describe('zhima simulator: good requests', () => {
  it('answers success, signed so alipay-sdk verifies it, and records one effect', async () => {
    const content = biz();
    const r = await call({ bizContent: JSON.stringify(content) });
    expect(signedAnswer(r)).toEqual({ code: '10000', msg: 'Success', biz_result: 'success' });
    expect(sim.stats()).toMatchObject({ requests: 1, effects: 1, effectKeys: [content.out_biz_no] });
  });

  it('accepts a known app_auth_token and a timestamp 14 minutes off', async () => {
    const r = await call({ params: { app_auth_token: '202401BBtestAppAuthToken0000000000000001', timestamp: beijing(Date.now() - 14 * 60_000) } });
    expect(signedAnswer(r).code).toBe('10000');
  });
});

describe('zhima simulator: bad requests', () => {
  it.each([
    ['missing method', '40001', 'isv.missing-method', { params: { method: undefined } }],
    ['unknown method', '40002', 'isv.invalid-method', { params: { method: 'alipay.trade.pay' } }],
    ['missing app_id', '40001', 'isv.missing-app-id', { params: { app_id: undefined } }],
    ['unknown app_id', '40002', 'isv.invalid-app-id', { params: { app_id: '2021999999999999' } }],
  ] as const)('%s → unsigned error_response %s %s', async (_name, code, subCode, c) => {
    const r = await call(c);
    expect(r.json).toEqual({ error_response: expect.objectContaining({ code, sub_code: subCode }) });
    expect(sim.stats()).toMatchObject({ invalidRequests: 1, effects: 0 });
  });

  it.each([
    ['missing timestamp', '40001', 'isv.missing-timestamp', { params: { timestamp: undefined } }],
    ['missing version', '40001', 'isv.missing-version', { params: { version: undefined } }],
    ['missing sign_type', '40001', 'isv.missing-signature-type', { params: { sign_type: undefined } }],
    ['sign_type RSA', '40002', 'isv.invalid-signature-type', { params: { sign_type: 'RSA' } }],
    ['charset gbk', '40002', 'isv.invalid-charset', { params: { charset: 'gbk' } }],
    ['charset in the body', '40002', 'isv.invalid-signature', { inBody: ['charset'] }],
    ['format xml', '40002', 'isv.invalid-format', { params: { format: 'XML' } }],
    ['version 2.0', '40002', 'isv.invalid-parameter', { params: { version: '2.0' } }],
    ['an ISO timestamp', '40002', 'isv.invalid-timestamp', { params: { timestamp: new Date().toISOString() } }],
    ['a UTC wall-clock timestamp (the Docker bug)', '40002', 'isv.invalid-timestamp', { params: { timestamp: beijing(Date.now() - 8 * 3_600_000) } }],
    ['a timestamp 16 minutes ahead', '40002', 'isv.invalid-timestamp', { params: { timestamp: beijing(Date.now() + 16 * 60_000) } }],
    ['Feb 30th', '40002', 'isv.invalid-timestamp', { params: { timestamp: '2024-02-30 10:00:00' } }],
    ['an unknown app_auth_token', '20001', 'aop.invalid-app-auth-token', { params: { app_auth_token: 'nope' } }],
    ['biz_content in the query', '40002', 'isv.invalid-parameter', { inQuery: ['biz_content'] }],
    ['a common parameter in the body', '40002', 'isv.invalid-parameter', { inBody: ['timestamp'] }],
    ['an empty parameter left out of the signature', '40002', 'isv.invalid-parameter', { params: { notify_url: '' }, unsigned: ['notify_url'] }],
    ['no biz_content', '40002', 'isv.invalid-parameter', { params: { biz_content: undefined } }],
    ['biz_content that is not JSON', '40002', 'isv.invalid-parameter', { bizContent: 'user_id=2088' }],
  ] as const)('%s → signed %s %s', async (_name, code, subCode, c) => {
    expect(signedAnswer(await call(c as Call))).toMatchObject({ code, sub_code: subCode });
    expect(sim.stats()).toMatchObject({ effects: 0 });
  });

  it('a duplicated parameter is refused', async () => {
    const r = await call({ tamper: (q) => q.append('version', '1.0') });
    expect(signedAnswer(r)).toMatchObject({ code: '40002', sub_code: 'isv.invalid-parameter' });
  });

  it.each([
    ['signed with another key', { key: createPrivateKey(keyText('gateway_private_pkcs1.pem')) }],
    ['a parameter changed after signing', { tamper: (q: URLSearchParams) => q.set('timestamp', beijing(Date.now() - 1000)) }],
    ['an empty parameter that was signed (alipay-sdk issue #48)', { params: { notify_url: '' } }],
  ])('%s → 40002 isv.invalid-signature echoing the gateway canonical string', async (_name, c) => {
    const answer = signedAnswer(await call(c as Call));
    expect(answer).toMatchObject({ code: '40002', sub_code: 'isv.invalid-signature' });
    expect(answer.sub_msg).toContain('网关生成的验签字符串为：app_id=2021000000000001&amp;biz_content=');
    expect(sim.stats()).toMatchObject({ rejectedSignatures: 1, invalidRequests: 0, effects: 0 });
  });

  it.each([
    ['user_id missing', 'ZMDATA.USER_ID_ERROR', { user_id: undefined }],
    ['user_id not 2088…', 'ZMDATA.USER_ID_ERROR', { user_id: '1234567890' }],
    ['user_id a number', 'ZMDATA.USER_ID_ERROR', { user_id: 2088102000000001 }],
    ['out_biz_no empty', 'ZMDATA.OUT_BIZ_NO_NULL', { out_biz_no: '' }],
    ['out_biz_no 129 chars', 'ZMDATA.OUT_BIZ_NO_NULL', { out_biz_no: 'x'.repeat(129) }],
    ['out_principal_id 129 chars', 'ZMDATA.OUT_PRINCIPAL_ID_ERROR', { out_principal_id: '1'.repeat(129) }],
    ['biz_state_code not agreed', 'ZMDATA.BIZ_STATE_CODE_ERROR', { biz_state_code: 'CONTRACT_STATE_WATCH_MOVIE_REFUND' }],
    ['category_code 65 chars', 'ZMDATA.CATEGORY_CODE_ERROR', { category_code: 'C'.repeat(65) }],
    ['service_id missing', 'ZMDAT.SERVICE_ID_ERROR', { service_id: undefined }],
    ['biz_data as a nested object', 'ZMDATA.BIZ_DATA_ERROR', { biz_data: { buyCnt: 3 } }],
    ['biz_data not JSON', 'ZMDATA.BIZ_DATA_ERROR', { biz_data: 'buyCnt=3' }],
    ['biz_data 4097 chars', 'ZMDATA.BIZ_DATA_ERROR', { biz_data: JSON.stringify({ t: 'a'.repeat(4089) }) }],
  ] as const)('%s → signed 40004 %s', async (_name, subCode, patch) => {
    const answer = signedAnswer(await call({ bizContent: JSON.stringify(biz(patch)) }));
    expect(answer).toMatchObject({ code: '40004', msg: 'Business Failed', sub_code: subCode });
    expect(sim.stats()).toMatchObject({ invalidRequests: 1, effects: 0 });
  });

  it('biz_data of exactly 4096 chars is accepted', async () => {
    const text = JSON.stringify({ t: 'a'.repeat(4088) });
    expect(text).toHaveLength(4096);
    expect(signedAnswer(await call({ bizContent: JSON.stringify(biz({ biz_data: text })) })).code).toBe('10000');
  });

  it('answers 405 to GET, 404 elsewhere, 413 to huge bodies', async () => {
    expect((await request(sim.url)).statusCode).toBe(405);
    expect((await request(sim.url.replace('/gateway.do', '/other'), { method: 'POST' })).statusCode).toBe(404);
    const huge = await request(sim.url, { method: 'POST', body: 'x'.repeat(1_048_577) });
    expect(huge.statusCode).toBe(413);
  });
});

describe('zhima simulator: idempotency, faults and admin', () => {
  it('repeats are duplicates; a repeat with different content is flagged', async () => {
    const content = biz();
    await call({ bizContent: JSON.stringify(content) });
    await call({ bizContent: JSON.stringify(content) });
    await call({ bizContent: JSON.stringify({ ...content, biz_data: '{"buyCnt":4}' }) });
    expect(sim.stats()).toMatchObject({ requests: 3, effects: 1, duplicates: 2, conflictingDuplicates: 1 });
  });

  it('faults follow the seed: the same seed gives the same sequence', async () => {
    const run = async (seed: number): Promise<number[]> => {
      const s = await startZhimaSimulator({ appId: APP_ID, appPublicKeyPem: APP_PUBLIC, gatewayPrivateKeyPem: GATEWAY_PRIVATE, seed, faults: { http5xxRate: 0.5 } });
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await request(s.url, { method: 'POST' })).statusCode);
      await s.close();
      return statuses;
    };
    const [a, b, c] = [await run(11), await run(11), await run(12)];
    expect(a).toEqual(b);
    expect(a).toContain(502);
    expect(a).not.toEqual(c);
  });

  it('drives faults, stats and reset over /__sim/*', async () => {
    const admin = sim.url.replace('/gateway.do', '/__sim');
    const set = await request(`${admin}/faults`, { method: 'POST', body: JSON.stringify({ http5xxRate: 1 }) });
    expect(await set.body.json()).toMatchObject({ http5xxRate: 1, hangRate: 0 });
    expect((await call()).status).toBe(502);
    const stats = (await (await request(`${admin}/stats`)).body.json()) as { requests: number; faultsInjected: { http5xx: number } };
    expect(stats).toMatchObject({ requests: 1, faultsInjected: { http5xx: 1 } });
    const bad = await request(`${admin}/faults`, { method: 'POST', body: JSON.stringify({ http5xxRate: 2 }) });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
    await (await request(`${admin}/faults`, { method: 'POST', body: '{"http5xxRate":0}' })).body.dump();
    await (await request(`${admin}/reset`, { method: 'POST' })).body.dump();
    expect(sim.stats().requests).toBe(0);
    expect(sim.faults().http5xxRate).toBe(0);
  });
});
