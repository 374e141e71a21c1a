import { readFileSync } from 'node:fs';
import { AlipaySdk } from 'alipay-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createZhimaSink } from '../../connectors/sinks/zhima/index.js';
import { extractSignedContent } from '../../connectors/sinks/zhima/response-sign.js';
import type { BusinessEvent } from '../../src/core/events.js';
import type { PreparedRequest } from '../../src/core/sink.js';
import { silentLogger } from '../../src/log.js';
import { startZhimaSimulator, type ZhimaSimulator } from '../../src/sandbox/zhima-simulator.js';
import { APP_ID, APP_PRIVATE_PKCS1, APP_PRIVATE_PKCS8, APP_PUBLIC, GATEWAY_PRIVATE, GATEWAY_PUBLIC, parseConfig, SPEC, tradeEvent, VECTORS } from './helpers.js';

/**
 * alipay-sdk@4.14.0 as an independent oracle (spec §9): it checks the requests our sink
 * builds, and, used as a client, the answers our simulator signs.
 */

const METHOD = 'zhima.data.state.data.sync';
const RESPONSE_KEY = 'zhima_data_state_data_sync_response';
const TOKEN = '202401BBtestAppAuthToken0000000000000001';
const beijing = (ms = Date.now()): string => new Date(ms + 8 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ');

/** Passing the *app* public key as "alipayPublicKey" is deliberate: rsaCheck then verifies our request signatures. */
const requestChecker = new AlipaySdk({ appId: APP_ID, privateKey: APP_PRIVATE_PKCS1, alipayPublicKey: APP_PUBLIC });

const events: Array<[string, BusinessEvent]> = [
  ['ASCII', tradeEvent({}, { cinema_name: 'Free Cinema' })],
  ['Chinese and & = + % / " \\ in values', tradeEvent({ id: '外部订单-0003' }, { cinema_name: '杭华街 a&b=c+d%20/e "q" \\ 完' })],
  ['refund', tradeEvent({ code: 'REFUND_SUCCESS', refund: { cinema_name: '退款' } })],
];

function ourRequest(event: BusinessEvent, withToken: boolean): PreparedRequest {
  const sink = createZhimaSink(
    parseConfig({ endpoint: 'https://openapi.alipay.com/gateway.do', privateKey: APP_PRIVATE_PKCS8, ...(withToken && { appAuthToken: TOKEN }) }),
    { logger: silentLogger() },
  );
  const preview = sink.preview(event, { at: new Date('2024-03-01T04:05:06Z'), nonce: 'ab'.repeat(16) });
  if (preview.status !== 'request') throw new Error(preview.status);
  return preview.request;
}

/** The gateway's view: merge query and body, drop sign and empties, sort, raw values. */
function gatewayCanonical(req: PreparedRequest): { canonical: string; sign: string; params: Map<string, string> } {
  const params = new Map([...new URL(req.url).searchParams, ...new URLSearchParams(req.body)]);
  const canonical = [...params.keys()].filter((k) => k !== 'sign' && params.get(k) !== '').sort().map((k) => `${k}=${params.get(k)}`).join('&');
  return { canonical, sign: params.get('sign')!, params };
}

describe.each(events)('alipay-sdk checks our request: %s', (_name, event) => {
  it.each([false, true])('rsaCheck accepts our signature (app_auth_token: %s) and refuses a changed string', (withToken) => {
    const { canonical, sign } = gatewayCanonical(ourRequest(event, withToken));
    expect(requestChecker.rsaCheck(canonical, sign, 'RSA2')).toBe(true);
    expect(requestChecker.rsaCheck(canonical.replace('version=1.0', 'version=1.1'), sign, 'RSA2')).toBe(false);
  });

  it.each([false, true])('sdkExecute signs the same inputs identically (app_auth_token: %s)', (withToken) => {
    const { sign, params } = gatewayCanonical(ourRequest(event, withToken));
    const sdkOut = new URLSearchParams(
      requestChecker.sdkExecute(
        METHOD,
        {
          timestamp: params.get('timestamp'),
          format: 'JSON',
          ...(withToken && { app_auth_token: TOKEN }),
          bizContent: JSON.parse(params.get('biz_content')!) as Record<string, string>,
        },
        { bizContentAutoSnakeCase: false },
      ),
    );
    expect(sdkOut.get('biz_content')).toBe(params.get('biz_content'));
    expect(sdkOut.get('sign')).toBe(sign);
  });
});

describe('alipay-sdk agrees with our response extraction', () => {
  const bodies = [
    ...VECTORS.request_vectors.map((v) => v.response.raw_body),
    ...VECTORS.response_vectors.filter((v) => v.raw_body.includes(RESPONSE_KEY) && v.raw_body.includes('"sign"')).map((v) => v.raw_body),
  ];

  it.each(bodies.map((b, i) => [i, b] as const))('body #%s: getSignStr equals our brace-matched substring', (_i, body) => {
    const ours = extractSignedContent(body, RESPONSE_KEY);
    expect(ours.ok).toBe(true);
    expect(requestChecker.getSignStr(body, RESPONSE_KEY)).toBe(ours.ok ? ours.content : undefined);
  });
});

describe('alipay-sdk as a client of the simulator (validateSign: true)', () => {
  let sim: ZhimaSimulator;
  let client: AlipaySdk;

  beforeAll(async () => {
    sim = await startZhimaSimulator({ appId: APP_ID, appPublicKeyPem: APP_PUBLIC, gatewayPrivateKeyPem: GATEWAY_PRIVATE, bizStateCodes: ['BUY'] });
    client = new AlipaySdk({ appId: APP_ID, privateKey: APP_PRIVATE_PKCS1, alipayPublicKey: GATEWAY_PUBLIC, gateway: sim.url, camelcase: false });
  });
  afterEach(() => {
    sim.setFaults({ corruptSignatureRate: 0 });
    sim.reset();
  });
  afterAll(() => sim.close());

  // The SDK formats `timestamp` in process-local time; pass Beijing time so the simulator's skew check passes in any TZ.
  const exec = (outBizNo: string, state = 'BUY') =>
    client.exec(
      METHOD,
      {
        timestamp: beijing(),
        bizContent: { user_id: '2088102000000001', out_biz_no: outBizNo, out_principal_id: '1303902', biz_state_code: state, category_code: 'WATCH_MOVIE', service_id: 'S1', biz_data: '{"buyCnt":3}' },
      },
      { validateSign: true },
    );

  it('accepts the signed success, and the repeat is a duplicate', async () => {
    expect(await exec('sdk-1')).toMatchObject({ code: '10000', msg: 'Success', biz_result: 'success' });
    expect(await exec('sdk-1')).toMatchObject({ code: '10000', biz_result: 'success' });
    expect(sim.stats()).toMatchObject({ effects: 1, duplicates: 1, rejectedSignatures: 0 });
  });

  it('accepts the signed business error', async () => {
    expect(await exec('sdk-2', 'NOT_AGREED')).toMatchObject({ code: '40004', sub_code: 'ZMDATA.BIZ_STATE_CODE_ERROR' });
  });

  it('refuses the corrupted signature the simulator injects', async () => {
    sim.setFaults({ corruptSignatureRate: 1 });
    await expect(exec('sdk-3')).rejects.toThrow(/验签失败/);
    expect(sim.stats()).toMatchObject({ effects: 1, faultsInjected: { corruptSignature: 1 } });
  });

  it('an empty parameter the SDK signs is refused like the real gateway does (issue #48)', async () => {
    const result = await client.exec(METHOD, { timestamp: beijing(), notify_url: '', bizContent: { user_id: '2088102000000001' } }, { validateSign: true });
    expect(result).toMatchObject({ code: '40002', sub_code: 'isv.invalid-signature' });
  });

  it('cert mode: the SDK accepts answers carrying alipay_cert_sn, and our sink in cert mode delivers', async () => {
    const cv = VECTORS.cert_mode_vector;
    const cert = (file: string): string => readFileSync(`${SPEC}${file}`, 'utf8');
    const certSim = await startZhimaSimulator({
      appId: APP_ID,
      appPublicKeyPem: APP_PUBLIC,
      gatewayPrivateKeyPem: GATEWAY_PRIVATE,
      cert: { appCertSn: cv.app_cert_sn, alipayRootCertSn: cv.alipay_root_cert_sn, alipayCertSn: cv.alipay_cert_sn },
    });
    const certClient = new AlipaySdk({
      appId: APP_ID,
      privateKey: APP_PRIVATE_PKCS1,
      gateway: certSim.url,
      camelcase: false,
      appCertContent: cert(cv.files.app_cert),
      alipayRootCertContent: cert(cv.files.alipay_root_cert),
      alipayPublicCertContent: cert(cv.files.alipay_public_cert),
    });
    const bizContent = { user_id: '2088102000000001', out_biz_no: 'cert-1', out_principal_id: '1', biz_state_code: 'B', category_code: 'C', service_id: 'S', biz_data: '{}' };
    expect(await certClient.exec(METHOD, { timestamp: beijing(), bizContent }, { validateSign: true })).toMatchObject({ code: '10000' });
    const sink = createZhimaSink(
      parseConfig({
        endpoint: certSim.url,
        alipayPublicKey: undefined,
        certMode: { appCert: cert(cv.files.app_cert), alipayRootCert: cert(cv.files.alipay_root_cert), alipayCert: cert(cv.files.alipay_public_cert) },
      }),
      { logger: silentLogger() },
    );
    const outcome = await sink.deliver(tradeEvent(), new AbortController().signal);
    await sink.close();
    await certSim.close();
    expect(outcome.status).toBe('delivered');
    expect(certSim.stats()).toMatchObject({ effects: 2, invalidRequests: 0, rejectedSignatures: 0 });
  });
});
