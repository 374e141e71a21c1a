import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { canonicalString, percentEncode, signParams, signRequest, verifyResponseSign, type ParamObject } from '../../connectors/sinks/antchain/index.js';
import { startAntchainSimulator, type AntchainSimulator, type AntchainSimulatorOptions } from '../../src/sandbox/antchain-simulator.js';
import { TEST_AK, TEST_SECRET, vector, vectors } from './fixtures.js';

const FORM = 'application/x-www-form-urlencoded; charset=UTF-8';
const VECTOR_CLOCK = new Date('2024-05-20T08:30:00Z');

const sims: AntchainSimulator[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((sim) => sim.close()));
});

async function start(options: Partial<AntchainSimulatorOptions> = {}): Promise<AntchainSimulator> {
  const sim = await startAntchainSimulator({ accessKey: TEST_AK, accessSecret: TEST_SECRET, now: () => VECTOR_CLOCK, ...options });
  sims.push(sim);
  return sim;
}

interface Answer {
  status: number;
  text: string;
  response?: Record<string, unknown>;
  sign?: string;
}

async function post(url: string, body: string, contentType = FORM, method: 'POST' | 'GET' = 'POST'): Promise<Answer> {
  const res = await request(url, { method, headers: { 'content-type': contentType }, body: method === 'POST' ? body : undefined });
  const text = await res.body.text();
  let parsed: { response?: Record<string, unknown>; sign?: string } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    // plain-text answers (404, 405, 503) stay as text
  }
  return { status: res.statusCode, text, response: parsed.response, sign: parsed.sign };
}

/** A validly signed request with arbitrary business parameters, to probe the product rules. */
function signedBody(business: ParamObject, options: { secret?: string; accessKey?: string; at?: Date; reqMsgId?: string } = {}): string {
  const result = signRequest(
    business,
    { at: options.at ?? VECTOR_CLOCK, reqMsgId: options.reqMsgId ?? 'a'.repeat(32) },
    { accessKey: options.accessKey ?? TEST_AK, accessSecret: options.secret ?? TEST_SECRET },
    { url: 'http://unused/gateway.do' },
  );
  if (!result.ok) throw new Error(result.message);
  return result.signed.request.body;
}

const visit = (extra: ParamObject = {}): ParamObject => ({ ...vector('visit_contract_detail_direct').inputs.business_params_nested, ...extra });
const trade = (extra: ParamObject = {}): ParamObject => ({ ...vector('trade_success_two_step_with_confirm_time').inputs.business_params_nested, ...extra });

describe('the simulator accepts what the spec and the SDKs send', () => {
  it('every request vector, layout A, in business order: PROCESSED, signed, one effect each', async () => {
    const sim = await start();
    for (const v of vectors.request_vectors) {
      const answer = await post(sim.url, v.http.body);
      expect(answer.response).toMatchObject({ req_msg_id: v.inputs.req_msg_id, result_code: 'OK', event_status: 'PROCESSED' });
      expect(verifyResponseSign(answer.text, answer.sign!, TEST_SECRET)).toBe(true);
    }
    const stats = sim.stats();
    expect(stats.effects).toBe(5);
    expect(stats.effectKeys).toEqual(vectors.request_vectors.map((v) => v.inputs.business_params_nested.request_id));
    expect(stats.violations).toEqual([]);
    expect(stats.effectList[1]).toMatchObject({ code: 'TRADE_SUCCESS', orderNo: 'd1284971f4b64f438124fa5cf8147ef6', confirmType: 'TWO_STEP' });
  });

  it('layout B (Tea SDK: system parameters and sign in the query string) verifies too and is a duplicate', async () => {
    const sim = await start();
    const v = vector('visit_contract_detail_direct');
    const first = await post(sim.url, v.http.body);
    const alt = await post(`${sim.url}${new URL(v.alt_layout_tea_style.url).search}`, v.alt_layout_tea_style.body);
    const tea = await post(`${sim.url}${new URL(v.tea_sdk_replica.url).search}`, v.tea_sdk_replica.body);
    expect(alt.response?.event_id).toBe(first.response?.event_id);
    expect(tea.response?.event_id).toBe(first.response?.event_id);
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 2, rejectedSignatures: 0, violations: [] });
  });
});

describe('gateway checks', () => {
  const body = () => vector('visit_contract_detail_direct').http.body;
  const cases: Array<[string, () => string, string, string, 'rejectedSignatures' | 'invalidRequests']> = [
    ['a tampered parameter (bad signature)', () => body().replace('project_id=123', 'project_id=124'), 'ACCESS_DENIED', 'signature does not match', 'rejectedSignatures'],
    ['a signature made with another secret', () => signedBody(visit(), { secret: 'wrong-secret' }), 'ACCESS_DENIED', 'signature does not match', 'rejectedSignatures'],
    ['an unknown access key', () => signedBody(visit(), { accessKey: 'NOPE' }), 'ACCESS_DENIED', 'access_key not found', 'rejectedSignatures'],
    ['no sign', () => body().replace(/&sign=[^&]*$/, ''), 'MISSING_PARAMETER', 'missing parameter sign', 'invalidRequests'],
    ['no product_instance_id', () => signedBody({ ...visit(), product_instance_id: undefined }), 'MISSING_PARAMETER', 'product_instance_id', 'invalidRequests'],
    ['another method', () => body().replace('method=antchain.ent.event.report.exec', 'method=antchain.ent.event.info.query'), 'METHOD_NOT_FOUND', 'antchain.ent.event.info.query', 'invalidRequests'],
    ['a stale req_time', () => signedBody(visit(), { at: new Date(VECTOR_CLOCK.getTime() - 16 * 60_000) }), 'ACCESS_DENIED', 'req_time is more than 15 minutes', 'invalidRequests'],
    ['a replayed body with a new req_msg_id', () => body().replace('req_msg_id=0a1b2c3d4e5f60718293a4b5c6d7e8f9', 'req_msg_id=ffffffffffffffffffffffffffffffff'), 'ACCESS_DENIED', 'signature', 'rejectedSignatures'],
    ['sign_type HmacSHA256', () => body().replace('sign_type=HmacSHA1', 'sign_type=HmacSHA256'), 'ACCESS_DENIED', 'sign_type', 'rejectedSignatures'],
    ['a parameter given twice', () => `${body()}&project_id=123`, 'INVALID_PARAMETER', 'more than once', 'invalidRequests'],
  ];
  for (const [what, makeBody, code, message, counter] of cases) {
    it(`refuses ${what} with an unsigned ${code}`, async () => {
      const sim = await start();
      const answer = await post(sim.url, makeBody());
      expect(answer.response).toMatchObject({ result_code: code, result_msg: expect.stringContaining(message) });
      expect(answer.sign).toBeUndefined();
      expect(sim.stats()).toMatchObject({ requests: 1, effects: 0, [counter]: 1 });
    });
  }

  it.each([
    ['req_msg_id', 'not-hex-not-32', 'req_msg_id must be 32 hex'],
    ['req_time', '2024/05/20 08:30:00', 'req_time is not an ISO-8601'],
  ])('checks the %s format on a correctly signed request', async (key, value, message) => {
    const sim = await start();
    const params = { ...vector('visit_contract_detail_direct').flattened_params, [key]: value };
    const body = `${canonicalString(params)}&sign=${percentEncode(signParams(params, TEST_SECRET))}`;
    expect((await post(sim.url, body)).response).toMatchObject({ result_code: 'INVALID_PARAMETER', result_msg: expect.stringContaining(message) });
  });

  it('accepts the other ISO-8601 req_time shapes official SDKs send', async () => {
    const sim = await start();
    for (const [i, reqTime] of ['2024-05-20T08:30:00.123Z', '2024-05-20T16:30:00+08:00'].entries()) {
      const params = { ...vector('visit_contract_detail_direct').flattened_params, req_time: reqTime, request_id: `r${i}` };
      const body = `${canonicalString(params)}&sign=${percentEncode(signParams(params, TEST_SECRET))}`;
      expect((await post(sim.url, body)).response).toMatchObject({ result_code: 'OK' });
    }
  });

  it('refuses a JSON body, another path and another method', async () => {
    const sim = await start();
    expect((await post(sim.url, '{"a":1}', 'application/json')).response).toMatchObject({ result_code: 'INVALID_PARAMETER' });
    expect((await post(sim.url.replace('/gateway.do', '/other'), body())).status).toBe(404);
    expect((await post(sim.url, '', FORM, 'GET')).status).toBe(405);
    expect(sim.stats()).toMatchObject({ requests: 1, invalidRequests: 1, effects: 0 });
  });
});

describe('product rules → INVALID_PARAMETER', () => {
  const cases: Array<[string, ParamObject, string]> = [
    ['a 10-digit phone', visit({ event_child: { user_id_no: '+86-1300000000', user_id_type: 'PHONE' } }), 'event_child.user_id_no'],
    ['a phone without +86-', visit({ event_parent: { user_id_no: '13000000001', user_id_type: 'PHONE' } }), 'event_parent.user_id_no'],
    ['an unknown user_id_type', visit({ event_child: { user_id_no: 'x', user_id_type: 'SHARE_CODE' } }), 'user_id_type'],
    ['a visit that is not DIRECT', visit({ confirm_type: 'TWO_STEP' }), 'DIRECT'],
    ['a trade code on a visit', visit({ event_instance_code: 'TRADE_SUCCESS' }), 'event_instance_code'],
    ['event_type SHARE', visit({ event_type: 'SHARE' }), 'event_type'],
    ['TWO_STEP without confirm_time', trade({ confirm_time: undefined }), 'confirm_time'],
    ['a confirm_time with fraction and Z', trade({ confirm_time: '2020-12-27T10:34:14.000Z' }), 'pattern'],
    ['a fractional amount', trade({ trade_order: { ...(trade().trade_order as ParamObject), actual_total_amount: '1.5' } }), 'actual_total_amount'],
    ['a negative count', trade({ trade_order: { ...(trade().trade_order as ParamObject), item_count: '-1' } }), 'item_count'],
    ['currency USD', trade({ trade_order: { ...(trade().trade_order as ParamObject), currency: 'USD' } }), 'currency'],
    ['no order number', trade({ trade_order: { ...(trade().trade_order as ParamObject), order_no: undefined } }), 'trade_order.order_no'],
    ['TRADE_SUCCESS without confirm_type', trade({ confirm_type: undefined, confirm_time: undefined }), 'confirm_type'],
    ['no request_id', visit({ request_id: undefined }), 'request_id'],
    ['an unknown parameter', visit({ event_childs: 'x' }), 'unknown parameter'],
  ];
  for (const [what, business, message] of cases) {
    it(what, async () => {
      const sim = await start();
      const answer = await post(sim.url, signedBody(business));
      expect(answer.response).toMatchObject({ result_code: 'INVALID_PARAMETER', result_msg: expect.stringContaining(message) });
      expect(sim.stats()).toMatchObject({ effects: 0, invalidRequests: 1 });
    });
  }

  it('knows projects, logon ids and unsupported events only when told', async () => {
    const sim = await start({ projects: ['123'], unknownLogonIds: ['ghost@example.com'], unsupportedEvents: ['SHARE_LANDING_PAGE'] });
    expect((await post(sim.url, signedBody(visit({ project_id: '9' })))).response).toMatchObject({ result_code: 'INVALID_PARAMETER', result_msg: 'project_id 9 does not exist' });
    const ghost = visit({ event_child: { user_id_no: 'ghost@example.com', user_id_type: 'ALIPAY_LOGON_ID' } });
    expect((await post(sim.url, signedBody(ghost))).response).toMatchObject({ result_code: 'LOGON_ID_NOT_FOUND', result_msg: '1005' });
    const landing = await post(sim.url, signedBody(visit({ event_instance_code: 'SHARE_LANDING_PAGE' })));
    expect(landing.response).toMatchObject({ result_code: 'OK', event_status: 'EVENT_NOT_SUPPORTED' });
    expect(verifyResponseSign(landing.text, landing.sign!, TEST_SECRET)).toBe(true);
    expect(sim.stats().effects).toBe(0);
  });
});

describe('idempotency and ordering', () => {
  it('the same request_id twice is one effect with one event_id, counted as a duplicate', async () => {
    const sim = await start();
    const first = await post(sim.url, signedBody(trade(), { reqMsgId: '1'.repeat(32) }));
    const second = await post(sim.url, signedBody(trade(), { reqMsgId: '2'.repeat(32) }));
    expect(second.response).toMatchObject({ req_msg_id: '2'.repeat(32), event_id: first.response?.event_id, event_status: 'PROCESSED' });
    expect(sim.stats()).toMatchObject({ requests: 2, effects: 1, duplicates: 1, violations: [] });
  });

  it('a reused request_id with different content is flagged', async () => {
    const sim = await start();
    await post(sim.url, signedBody(trade()));
    await post(sim.url, signedBody(trade({ project_id: '456' })));
    expect(sim.stats().violations).toEqual([
      { requestId: '7c9e6679742540de944be07fc1f90ae7', orderNo: 'd1284971f4b64f438124fa5cf8147ef6', code: 'TRADE_SUCCESS', reason: 'REQUEST_ID_CONFLICT' },
    ]);
  });

  it('a refund or confirm before the order’s TRADE_SUCCESS is answered PROCESSED but recorded as a violation', async () => {
    const sim = await start();
    const refund = await post(sim.url, vector('refund_success').http.body);
    expect(refund.response).toMatchObject({ result_code: 'OK', event_status: 'PROCESSED' });
    await post(sim.url, vector('trade_success_two_step_with_confirm_time').http.body);
    await post(sim.url, vector('trade_confirm').http.body);
    expect(sim.stats().violations).toEqual([
      { requestId: 'b2c3d4e5f60718293a4b5c6d7e8f90a1', orderNo: 'd1284971f4b64f438124fa5cf8147ef6', code: 'REFUND_SUCCESS', reason: 'ORDER_BEFORE_TRADE_SUCCESS' },
    ]);
  });
});

describe('faults and the admin surface', () => {
  it('the same seed injects the same faults; another seed does not', async () => {
    const run = async (seed: number) => {
      const sim = await start({ seed, faults: { http5xxRate: 0.5 } });
      const statuses: number[] = [];
      for (let i = 0; i < 24; i += 1) statuses.push((await post(sim.url, signedBody(visit()))).status);
      return statuses;
    };
    const a = await run(7);
    expect(await run(7)).toEqual(a);
    expect(await run(8)).not.toEqual(a);
    expect(a).toContain(503);
    expect(a).toContain(200);
  });

  it('GET /__sim/stats, POST /__sim/faults and POST /__sim/reset drive it out of process', async () => {
    const sim = await start();
    const admin = (path: string) => sim.url.replace('/gateway.do', path);
    await post(sim.url, signedBody(visit()));
    const stats = await request(admin('/__sim/stats'));
    expect(await stats.body.json()).toMatchObject({ requests: 1, effects: 1, effectKeys: ['056289b5d0504b35af4418d0520499c0'] });

    const set = await request(admin('/__sim/faults'), { method: 'POST', body: JSON.stringify({ http5xxRate: 1 }) });
    expect(await set.body.json()).toMatchObject({ http5xxRate: 1, hangRate: 0 });
    expect((await post(sim.url, signedBody(visit()))).status).toBe(503);
    expect(sim.stats().faultsInjected.http5xx).toBe(1);

    const bad = await request(admin('/__sim/faults'), { method: 'POST', body: JSON.stringify({ http5xxRate: 2 }) });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
    const unknown = await request(admin('/__sim/faults'), { method: 'POST', body: JSON.stringify({ lossRate: 1 }) });
    expect(unknown.statusCode).toBe(400);
    await unknown.body.dump();

    const reset = await request(admin('/__sim/reset'), { method: 'POST' });
    expect(reset.statusCode).toBe(200);
    await reset.body.dump();
    expect(sim.stats()).toMatchObject({ requests: 0, effects: 0, effectKeys: [] });
    expect(sim.faults().http5xxRate).toBe(1);
  });

  it('setFaults refuses out-of-range values', async () => {
    const sim = await start();
    expect(() => sim.setFaults({ needRetryRate: -0.1 })).toThrow();
    expect(sim.setFaults({ needRetryRate: 0.25 }).needRetryRate).toBe(0.25);
  });
});
