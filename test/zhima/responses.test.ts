import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadCertMaterial } from '../../connectors/sinks/zhima/cert.js';
import { interpretResponse, type VerifyKey } from '../../connectors/sinks/zhima/response.js';
import { extractSignedContent, verifySignedContent } from '../../connectors/sinks/zhima/response-sign.js';
import { RESPONSE_KEY } from '../../connectors/sinks/zhima/wire.js';
import { GATEWAY_PUBLIC, SPEC, VECTORS } from './helpers.js';

/** Every golden response vector is accepted or refused as marked, through the sink's own verifier. */

const KEY: VerifyKey = { publicKey: createPublicKey(GATEWAY_PUBLIC), responseKey: RESPONSE_KEY };
const answer = (body: string, status = 200) => interpretResponse({ status, body: Buffer.from(body, 'utf8') }, KEY);

describe('responses of the request vectors', () => {
  const expected: Record<string, { status: string; code?: string }> = {
    v1_buy_watch_movie: { status: 'delivered' },
    v2_refund_like_with_app_auth_token: { status: 'rejected', code: 'ZMDATA.BIZ_STATE_CODE_ERROR' },
    v3_chinese_and_special_chars: { status: 'delivered' },
  };

  it.each(VECTORS.request_vectors.map((v) => [v.name, v] as const))('%s: verified and classified, tampered copy refused', (name, v) => {
    const extracted = extractSignedContent(v.response.raw_body, RESPONSE_KEY);
    expect(extracted).toEqual({ ok: true, key: RESPONSE_KEY, content: v.response.signed_substring });
    const meaning = answer(v.response.raw_body);
    expect(meaning.verified).toBe(true);
    expect(meaning.status).toBe(expected[name]!.status);
    if (meaning.status !== 'delivered') expect(meaning.code).toBe(expected[name]!.code);
    const tampered = answer(v.response.tampered_raw_body);
    expect(tampered).toMatchObject({ status: 'retry', code: 'RESPONSE_SIGNATURE_INVALID' });
  });

  it('keeps the success fields worth keeping', () => {
    const meaning = answer(VECTORS.request_vectors[0]!.response.raw_body);
    expect(meaning).toMatchObject({ status: 'delivered', result: { biz_result: 'success' }, remote: { code: '10000' } });
  });
});

describe('response vectors', () => {
  const expected: Record<string, { status: string; code?: string; verified: boolean }> = {
    r1_service_unavailable_signed: { status: 'retry', code: 'isp.unknow-error', verified: true },
    r2_business_system_error_signed: { status: 'retry', code: 'SYSTEM_ERROR', verified: true },
    r3_invalid_signature_signed: { status: 'sink_failure', code: 'isv.invalid-signature', verified: true },
    r4_pretty_printed_signed_verbatim: { status: 'delivered', verified: true },
    r5_escaped_slash_signed_over_raw: { status: 'delivered', verified: true },
    r6_escaped_slash_signed_over_unescaped: { status: 'delivered', verified: true },
    r7_error_response_without_sign_validateSign: { status: 'sink_failure', code: 'isv.invalid-app-id', verified: false },
    r8_error_response_without_sign_no_validate: { status: 'sink_failure', code: 'isv.invalid-app-id', verified: false },
    r9_success_without_sign: { status: 'retry', code: 'RESPONSE_UNSIGNED', verified: false },
    r10_signed_with_wrong_key: { status: 'retry', code: 'RESPONSE_SIGNATURE_INVALID', verified: false },
    r11_http_502: { status: 'retry', code: 'HTTP_502', verified: false },
  };

  it('covers every vector in the file', () => {
    expect(VECTORS.response_vectors.map((v) => v.name).sort()).toEqual(Object.keys(expected).sort());
  });

  it.each(VECTORS.response_vectors.map((v) => [v.name, v] as const))('%s', (name, v) => {
    const want = expected[name]!;
    if (v.brace_matched_substring !== null) {
      const extracted = extractSignedContent(v.raw_body, RESPONSE_KEY);
      expect(extracted.ok && extracted.content).toBe(v.brace_matched_substring);
    }
    const meaning = answer(v.raw_body, v.http_status);
    expect(meaning.status).toBe(want.status);
    expect(meaning.verified === true).toBe(want.verified);
    if (meaning.status !== 'delivered') expect(meaning.code).toBe(want.code);
  });

  it('r6 verifies only through the \\/ fallback', () => {
    const r6 = VECTORS.response_vectors.find((v) => v.name.startsWith('r6'))!;
    const content = extractSignedContent(r6.raw_body, RESPONSE_KEY);
    const sign = (JSON.parse(r6.raw_body) as { sign: string }).sign;
    expect(content.ok && content.content.includes('\\/')).toBe(true);
    expect(verifySignedContent(content.ok ? content.content.replaceAll('\\/', '/') : '', sign, KEY.publicKey)).toBe(true);
  });

  it('never leaks an Alipay user id echoed in sub_msg', () => {
    const body = JSON.stringify({ error_response: { code: '40002', msg: 'Invalid Arguments', sub_code: 'isv.invalid-signature', sub_msg: 'x&amp;biz_content={"user_id":"2088102000000001"}' } });
    const meaning = answer(body);
    expect(meaning.remote.message).not.toContain('2088102000000001');
    expect(meaning.remote.message).toContain('2088[redacted]');
  });
});

describe('the real Alipay-sandbox-signed response', () => {
  const rv = VECTORS.real_gateway_response_vector;
  const key: VerifyKey = { publicKey: createPublicKey(rv.alipay_public_key_pem), responseKey: rv.response_key };

  it('extracts the signed substring and verifies it with the sandbox public key', () => {
    const extracted = extractSignedContent(rv.raw_body, rv.response_key);
    expect(extracted.ok && extracted.content).toBe(rv.signed_substring);
    expect(verifySignedContent(rv.signed_substring, rv.sign, key.publicKey)).toBe(true);
    expect(interpretResponse({ status: 200, body: Buffer.from(rv.raw_body) }, key).verified).toBe(true);
  });

  it('refuses it once a single byte changes', () => {
    const tampered = rv.raw_body.replace('CAxAToWB1', 'CAxAToWB2');
    expect(interpretResponse({ status: 200, body: Buffer.from(tampered) }, key)).toMatchObject({ status: 'retry', code: 'RESPONSE_SIGNATURE_INVALID' });
    // Signed with the sandbox key, so our test gateway key must refuse it too.
    expect(verifySignedContent(rv.signed_substring, rv.sign, KEY.publicKey)).toBe(false);
  });
});

describe('cert mode response', () => {
  const cv = VECTORS.cert_mode_vector;
  const certs = loadCertMaterial(
    {
      appCert: readFileSync(`${SPEC}${cv.files.app_cert}`, 'utf8'),
      alipayRootCert: readFileSync(`${SPEC}${cv.files.alipay_root_cert}`, 'utf8'),
      alipayCert: readFileSync(`${SPEC}${cv.files.alipay_public_cert}`, 'utf8'),
    },
    'certMode',
  );

  it('computes the three SNs of the vector', () => {
    expect([certs.appCertSn, certs.alipayRootCertSn, certs.alipayCertSn]).toEqual([cv.app_cert_sn, cv.alipay_root_cert_sn, cv.alipay_cert_sn]);
  });

  it('verifies the response with the key inside the Alipay public-key certificate', () => {
    const key: VerifyKey = { publicKey: certs.alipayPublicKey, responseKey: RESPONSE_KEY, alipayCertSn: certs.alipayCertSn };
    expect(extractSignedContent(cv.response_raw_body, RESPONSE_KEY)).toMatchObject({ content: cv.response_signed_substring });
    expect(interpretResponse({ status: 200, body: Buffer.from(cv.response_raw_body) }, key)).toMatchObject({ status: 'delivered', verified: true });
  });

  it('names a rotated certificate when the SN differs and the signature fails', () => {
    const key: VerifyKey = { publicKey: createPublicKey(readFileSync(`${SPEC}keys/app_public.pem`)), responseKey: RESPONSE_KEY, alipayCertSn: 'aaaa' };
    const meaning = interpretResponse({ status: 200, body: Buffer.from(cv.response_raw_body) }, key);
    expect(meaning).toMatchObject({ status: 'retry', code: 'RESPONSE_SIGNATURE_INVALID' });
    expect(meaning.status !== 'delivered' && meaning.message).toContain('rotated');
  });
});

describe('malformed bodies', () => {
  it.each([
    ['not JSON', '<html>oops</html>'],
    ['JSON array', '[1,2]'],
    ['no response key', '{"other_response":{"code":"10000"},"sign":"abc="}'],
    ['response key twice', `{"${RESPONSE_KEY}":{"code":"10000","biz_result":"success"},"${RESPONSE_KEY}":{"code":"10000"},"sign":"abc="}`],
    ['truncated', `{"${RESPONSE_KEY}":{"code":"10000","msg":"Succ`],
  ])('%s → retry BAD_RESPONSE', (_name, body) => {
    expect(answer(body)).toMatchObject({ status: 'retry', code: 'BAD_RESPONSE' });
  });

  it('invalid UTF-8 → retry BAD_RESPONSE', () => {
    expect(interpretResponse({ status: 200, body: Uint8Array.from([0x7b, 0xff, 0x7d]) }, KEY)).toMatchObject({ status: 'retry', code: 'BAD_RESPONSE' });
  });

  it('braces and quotes inside string values do not confuse extraction', () => {
    const inner = '{"code":"10000","msg":"a } \\" { ]","biz_result":"success"}';
    const body = `{"${RESPONSE_KEY}":${inner},"sign":"x"}`;
    expect(extractSignedContent(body, RESPONSE_KEY)).toEqual({ ok: true, key: RESPONSE_KEY, content: inner });
  });

  it('HTTP 429 honours Retry-After; HTTP 404 is a sink failure', () => {
    expect(interpretResponse({ status: 429, body: Buffer.alloc(0), retryAfter: '7' }, KEY)).toMatchObject({ status: 'retry', afterMs: 7000 });
    expect(answer('nope', 404)).toMatchObject({ status: 'sink_failure', code: 'HTTP_404' });
  });
});
