import { sign as rsaSign, type KeyObject } from 'node:crypto';

/**
 * Gateway answers, in the envelope the real gateway uses:
 *   {"zhima_data_state_data_sync_response":{…},["alipay_cert_sn":"…",]"sign":"…"}
 * signed with RSA-SHA256 over the response object's exact text; or, for failures before the
 * method or app is resolved, the old unsigned {"error_response":{…}}.
 */

export const RESPONSE_KEY = 'zhima_data_state_data_sync_response';

export interface ResponseFields {
  code: string;
  msg: string;
  sub_code?: string;
  sub_msg?: string;
  biz_result?: string;
}

export type Answer =
  | { kind: 'signed'; fields: ResponseFields }
  | { kind: 'error_response'; fields: ResponseFields };

export const SUCCESS: ResponseFields = { code: '10000', msg: 'Success', biz_result: 'success' };

const MSG: Record<string, string> = {
  '20000': 'Service Currently Unavailable',
  '20001': 'Insufficient Token Permissions',
  '40001': 'Missing Required Arguments',
  '40002': 'Invalid Arguments',
  '40004': 'Business Failed',
};

export function failure(code: string, subCode: string, subMsg: string): ResponseFields {
  return { code, msg: MSG[code] ?? 'Failed', sub_code: subCode, sub_msg: subMsg };
}

export const signedFailure = (code: string, subCode: string, subMsg: string): Answer => ({
  kind: 'signed',
  fields: failure(code, subCode, subMsg),
});

export const unsignedFailure = (code: string, subCode: string, subMsg: string): Answer => ({
  kind: 'error_response',
  fields: failure(code, subCode, subMsg),
});

export interface AnswerSigner {
  key: KeyObject;
  /** Cert mode: the SN of the Alipay public-key certificate, sent next to `sign`. */
  alipayCertSn?: string;
}

/**
 * RSA PKCS#1 v1.5 signatures are deterministic: the same text under the same key always has
 * the same signature. The gateway's answers repeat (every success is the same text), so the
 * simulator signs each distinct answer once instead of spending a private-key operation per
 * request on the CPU it shares with the connector under test.
 */
const signatures = new WeakMap<KeyObject, Map<string, string>>();

function signText(text: string, key: KeyObject): string {
  let memo = signatures.get(key);
  if (!memo) signatures.set(key, (memo = new Map()));
  let sig = memo.get(text);
  if (sig === undefined) {
    sig = rsaSign('sha256', Buffer.from(text, 'utf8'), key).toString('base64');
    if (memo.size >= 256) memo.clear();
    memo.set(text, sig);
  }
  return sig;
}

/** The response body text. `corrupt` signs different bytes, so the sign is well-formed but wrong. */
export function answerBody(answer: Answer, signer: AnswerSigner, corrupt = false): string {
  const inner = JSON.stringify(answer.fields);
  if (answer.kind === 'error_response') return `{"error_response":${inner}}`;
  const sign = signText(corrupt ? `${inner} ` : inner, signer.key);
  const certSn = signer.alipayCertSn === undefined ? '' : `"alipay_cert_sn":${JSON.stringify(signer.alipayCertSn)},`;
  return `{"${RESPONSE_KEY}":${inner},${certSn}"sign":"${sign}"}`;
}
