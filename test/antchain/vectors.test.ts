import { describe, expect, it } from 'vitest';
import {
  canonicalString,
  extractResponseStringToSign,
  flattenParams,
  hmacSha1Base64,
  parseGatewayResponse,
  percentEncode,
  signParams,
  signRequest,
  verifyResponseSign,
} from '../../connectors/sinks/antchain/index.js';
import { vectors } from './fixtures.js';

describe('request vectors (spec section 4, antchain-vectors.json)', () => {
  it('covers the five published request vectors', () => {
    expect(vectors.request_vectors.map((v) => v.name)).toEqual([
      'visit_contract_detail_direct',
      'trade_success_two_step_with_confirm_time',
      'trade_confirm',
      'trade_success_two_step_manual_no_parent_prod',
      'refund_success',
    ]);
  });

  for (const v of vectors.request_vectors) {
    describe(v.name, () => {
      const signed = () => {
        const result = signRequest(
          v.inputs.business_params_nested,
          { at: new Date(v.inputs.req_time), reqMsgId: v.inputs.req_msg_id },
          { accessKey: v.inputs.access_key, accessSecret: v.inputs.secret_key },
          { url: v.http.url, sdkVersion: v.inputs.sdk_version, baseSdkVersion: v.inputs.base_sdk_version },
        );
        if (!result.ok) throw new Error(result.message);
        return result.signed;
      };

      it('flattens to the vector parameters, in sorted order', () => {
        expect(signed().params).toStrictEqual(v.flattened_params);
        expect(Object.keys(signed().params)).toEqual(Object.keys(v.flattened_params));
      });

      it('builds the canonical string byte for byte', () => {
        expect(signed().canonical).toBe(v.canonical_string);
        expect(canonicalString(v.flattened_params)).toBe(v.canonical_string);
      });

      it('signs to the vector signature', () => {
        expect(signed().sign).toBe(v.signature);
        expect(signParams(v.flattened_params, v.inputs.secret_key)).toBe(v.signature);
      });

      it('produces the layout-A HTTP request byte for byte', () => {
        expect(signed().request).toStrictEqual(v.http);
      });

      it('signs the Tea SDK replica parameter set to its own signature', () => {
        const tea = { ...v.flattened_params, base_sdk_version: 'TeaSDK-2.0', sdk_version: '1.4.17' };
        expect(canonicalString(tea)).toBe(v.tea_sdk_replica.canonical_string);
        expect(signParams(tea, v.inputs.secret_key)).toBe(v.tea_sdk_replica.signature);
      });

      it('ignores a sign parameter already present in the input set', () => {
        expect(canonicalString({ ...v.flattened_params, sign: v.signature })).toBe(v.canonical_string);
      });
    });
  }
});

describe('response vectors (spec section 5.4)', () => {
  for (const r of vectors.response_vectors) {
    it(`${r.name}: ${r.verify === null ? 'not verified (not OK)' : r.verify ? 'verifies' : 'is refused'}`, () => {
      const parsed = parseGatewayResponse(r.raw_body, r.secret_key);
      expect(parsed.kind).toBe('response');
      if (parsed.kind !== 'response') return;
      if (r.verify === null) {
        expect(parsed.resultCode).not.toBe('OK');
        expect(parsed.signValid).toBeUndefined();
        return;
      }
      expect(extractResponseStringToSign(r.raw_body)).toBe(r.string_to_sign);
      expect(hmacSha1Base64(r.secret_key, r.string_to_sign!) === r.expected_sign).toBe(r.verify);
      expect(verifyResponseSign(r.raw_body, r.expected_sign!, r.secret_key)).toBe(r.verify);
      expect(parsed.signValid).toBe(r.verify);
    });
  }

  const good = vectors.response_vectors.find((r) => r.name === 'success_signed')!;
  const tampered: Array<[string, string]> = [
    ['a changed event_status', good.raw_body.replace('"PROCESSED"', '"PROCESSEd"')],
    ['an added space inside response', good.raw_body.replace('"result_code":"OK"', '"result_code": "OK"')],
    ['a changed sign', good.raw_body.replace('CSWl87P0lg', 'CSWl87P0lh')],
    ['no sign at all', good.raw_body.replace(/,"sign":"[^"]*"/, '')],
    ['a sign that is not a string', good.raw_body.replace(/"sign":"[^"]*"/, '"sign":12')],
  ];
  for (const [what, body] of tampered) {
    it(`refuses an OK answer with ${what}`, () => {
      const parsed = parseGatewayResponse(body, good.secret_key);
      expect(parsed.kind === 'response' && parsed.signValid).toBe(false);
    });
  }

  it('refuses a correct answer checked with another secret', () => {
    const parsed = parseGatewayResponse(good.raw_body, 'another-secret');
    expect(parsed.kind === 'response' && parsed.signValid).toBe(false);
  });

  it('verifies an answer whose sign member comes first', () => {
    const response = good.string_to_sign!;
    const body = `{"sign":"${good.expected_sign}","response":${response}}`;
    expect(extractResponseStringToSign(body)).toBe(response);
    expect(verifyResponseSign(body, good.expected_sign!, good.secret_key)).toBe(true);
  });
});

describe('encoding vectors (RFC 3986, code-unit sort)', () => {
  for (const e of vectors.encoding_vectors) {
    it(e.name, () => {
      expect(canonicalString(e.params)).toBe(e.canonical_string);
      expect(signParams(e.params, e.secret)).toBe(e.signature);
    });
  }

  it.each([
    [' ', '%20'],
    ['*', '%2A'],
    ['~', '~'],
    ["!'()", '%21%27%28%29'],
    ['+:/=&', '%2B%3A%2F%3D%26'],
    ['AZaz09-_.', 'AZaz09-_.'],
    ['中', '%E4%B8%AD'],
    ['😀', '%F0%9F%98%80'],
  ])('percent-encodes %j as %s', (input, expected) => {
    expect(percentEncode(input)).toBe(expected);
  });
});

describe('SDK-published vectors', () => {
  for (const ref of vectors.reference_vectors_from_sdk_tests) {
    it(`${ref.source} → ${ref.expected_sign}`, () => {
      if (ref.params) {
        expect(signParams(ref.params, ref.secret)).toBe(ref.expected_sign);
      } else {
        expect(verifyResponseSign(ref.raw_body!, ref.expected_sign, ref.secret)).toBe(true);
        const parsed = parseGatewayResponse(ref.raw_body!, ref.secret);
        expect(parsed.kind === 'response' && parsed.signValid).toBe(true);
      }
    });
  }
});

describe('flattening rules (spec section 3)', () => {
  it('nests with dots, lists 1-based, integers as digits, and drops null, undefined and empty', () => {
    expect(
      flattenParams({
        a: { b: 'x', c: null, d: '', e: undefined, f: { g: 7 } },
        list: ['p', { name: 'q' }],
        n: 12800,
        big: 9_007_199_254_740_993n,
        t: true,
      }),
    ).toStrictEqual({ 'a.b': 'x', 'a.f.g': '7', 'list.1': 'p', 'list.2.name': 'q', n: '12800', big: '9007199254740993', t: 'true' });
  });

  it('refuses a float where a Long is expected', () => {
    expect(() => flattenParams({ amount: 1.5 })).toThrow(/not a safe integer/);
  });
});
