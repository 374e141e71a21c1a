import { createHash, createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createZhimaSink } from '../../connectors/sinks/zhima/index.js';
import { parsePrivateKey } from '../../connectors/sinks/zhima/keys.js';
import { signSync } from '../../connectors/sinks/zhima/sign.js';
import { unsignedCall } from '../../connectors/sinks/zhima/wire.js';
import { silentLogger } from '../../src/log.js';
import { APP_PRIVATE_PKCS1, APP_PRIVATE_PKCS8, GATEWAY_PUBLIC, keyFile, parseConfig, VECTORS, vectorSetup, type RequestVector } from './helpers.js';

/** Every golden request vector, reproduced byte for byte through the sink's own preview path. */

function previewOf(vector: RequestVector, privateKey: string) {
  const { config, event, at } = vectorSetup(vector);
  const sink = createZhimaSink(parseConfig({ ...config, privateKey, alipayPublicKey: GATEWAY_PUBLIC }), { logger: silentLogger() });
  const nonce = vector.http_request.headers['alipay-request-id']!;
  const result = sink.preview(event, { at, nonce });
  if (result.status !== 'request') throw new Error(`preview gave ${result.status}`);
  return result.request;
}

const bareBase64 = (pem: string): string => pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');

describe.each(VECTORS.request_vectors.map((v) => [v.name, v] as const))('request vector %s', (_name, vector) => {
  it('builds the canonical string, its hash and the signature', () => {
    const { at } = vectorSetup(vector);
    const call = unsignedCall(
      { appId: vector.inputs.app_id, ...(vector.inputs.app_auth_token && { appAuthToken: vector.inputs.app_auth_token }) },
      vector.biz_content_string,
      at,
    );
    expect(call.canonical).toBe(vector.canonical_string);
    expect(createHash('sha256').update(call.canonical, 'utf8').digest('hex')).toBe(vector.canonical_string_utf8_sha256_hex);
    expect(signSync(call.canonical, parsePrivateKey(APP_PRIVATE_PKCS1, 'k'))).toBe(vector.sign);
  });

  it.each([
    ['PKCS#1 PEM', APP_PRIVATE_PKCS1],
    ['PKCS#8 PEM', APP_PRIVATE_PKCS8],
    ['bare base64 PKCS#8', bareBase64(APP_PRIVATE_PKCS8)],
    ['bare base64 PKCS#1', bareBase64(APP_PRIVATE_PKCS1)],
  ])('previews the exact HTTP request with a %s key', (_kind, key) => {
    const request = previewOf(vector, key);
    const url = new URL(request.url);
    expect(request.url).toBe(vector.http_request.production_url);
    expect(url.pathname + url.search).toBe(vector.http_request.path_and_query);
    expect([...url.searchParams]).toEqual(vector.http_request.query_params_decoded);
    expect(request.body).toBe(vector.http_request.body);
    expect([...new URLSearchParams(request.body)]).toEqual(vector.http_request.body_params_decoded);
    for (const name of ['content-type', 'accept', 'alipay-request-id', 'content-length']) {
      expect(request.headers[name], name).toBe(vector.http_request.headers[name]);
    }
    expect(request.method).toBe('POST');
  });
});

describe('key containers', () => {
  it('PKCS#1 and PKCS#8 containers of one key give identical signatures', () => {
    const text = 'app_id=1&biz_content={"a":"汉字 & = +"}';
    const a = signSync(text, parsePrivateKey(APP_PRIVATE_PKCS1, 'k1'));
    const b = signSync(text, parsePrivateKey(APP_PRIVATE_PKCS8, 'k8'));
    const c = signSync(text, createPrivateKey(APP_PRIVATE_PKCS1));
    expect(a).toBe(b);
    expect(a).toBe(c);
    expect(a).toHaveLength(344);
  });
});

describe('cert mode vector', () => {
  const cv = VECTORS.cert_mode_vector;
  const v1 = VECTORS.request_vectors[0]!;

  it('adds app_cert_sn and alipay_root_cert_sn to the query and the signed string', () => {
    const { config, event, at } = vectorSetup(v1);
    const sink = createZhimaSink(
      parseConfig({
        ...config,
        alipayPublicKey: undefined,
        certMode: {
          appCert: { file: keyFile(cv.files.app_cert.replace('keys/', '')) },
          alipayRootCert: { file: keyFile(cv.files.alipay_root_cert.replace('keys/', '')) },
          alipayCert: { file: keyFile(cv.files.alipay_public_cert.replace('keys/', '')) },
        },
      }),
      { logger: silentLogger() },
    );
    const result = sink.preview(event, { at, nonce: cv.http_request.headers['alipay-request-id']! });
    expect(result.status).toBe('request');
    if (result.status !== 'request') return;
    expect(result.request.url).toBe(cv.http_request.production_url);
    expect(result.request.body).toBe(cv.http_request.body);
    const query = new URL(result.request.url).searchParams;
    expect(query.get('app_cert_sn')).toBe(cv.app_cert_sn);
    expect(query.get('alipay_root_cert_sn')).toBe(cv.alipay_root_cert_sn);
    expect(query.get('sign')).toBe(cv.sign);
    const call = unsignedCall({ appId: v1.inputs.app_id, appCertSn: cv.app_cert_sn, alipayRootCertSn: cv.alipay_root_cert_sn }, v1.biz_content_string, at);
    expect(call.canonical).toBe(cv.canonical_string);
  });
});
