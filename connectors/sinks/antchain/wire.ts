import type { PreparedRequest } from '../../../src/core/sink.js';
import { flattenParams, type ParamObject } from './params.js';
import { canonicalString, hmacSha1Base64, percentEncode } from './sign.js';
import { formatReqTime } from './time.js';

/** System parameters of the ENT event-report call (spec section 2.1). */
export const EVENT_REPORT_METHOD = 'antchain.ent.event.report.exec';
export const EVENT_REPORT_VERSION = '1.0';
export const SIGN_TYPE = 'HmacSHA1';

export const REQUEST_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8',
  Accept: 'application/json',
};

export interface Credentials {
  accessKey: string;
  accessSecret: string;
}

export interface WireOptions {
  url: string;
  sdkVersion?: string;
  baseSdkVersion?: string;
}

/** One signed attempt: the flat parameters, what was signed, and the HTTP request (layout A). */
export interface SignedRequest {
  params: Record<string, string>;
  canonical: string;
  sign: string;
  request: PreparedRequest;
}

export type WireResult = { ok: true; signed: SignedRequest } | { ok: false; message: string };

/** `req_msg_id` is 32 lowercase hex (a UUID without hyphens), fresh for every attempt. */
export const REQ_MSG_ID_PATTERN = /^[0-9a-f]{32}$/;

/** A lone surrogate cannot be UTF-8 encoded, so it could never be signed the way the server reads it. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Layout A (spec 1.1): every parameter, `sign` included, in the form body; no query string.
 * The body is the canonical string plus `&sign=`, which is valid form encoding as it stands.
 */
export function signRequest(
  business: ParamObject,
  attempt: { at: Date; reqMsgId: string },
  credentials: Credentials,
  options: WireOptions,
): WireResult {
  if (!REQ_MSG_ID_PATTERN.test(attempt.reqMsgId)) {
    throw new TypeError('req_msg_id must be 32 lowercase hex characters');
  }
  const flat = flattenParams({
    method: EVENT_REPORT_METHOD,
    version: EVENT_REPORT_VERSION,
    access_key: credentials.accessKey,
    sign_type: SIGN_TYPE,
    req_msg_id: attempt.reqMsgId,
    req_time: formatReqTime(attempt.at),
    base_sdk_version: options.baseSdkVersion,
    sdk_version: options.sdkVersion,
    ...business,
  });
  for (const [key, value] of Object.entries(flat)) {
    if (LONE_SURROGATE.test(value)) return { ok: false, message: `${key}: value is not valid Unicode text` };
  }
  const params = sortedCopy(flat);
  const canonical = canonicalString(params);
  const sign = hmacSha1Base64(credentials.accessSecret, canonical);
  return {
    ok: true,
    signed: {
      params,
      canonical,
      sign,
      request: { method: 'POST', url: options.url, headers: { ...REQUEST_HEADERS }, body: `${canonical}&sign=${percentEncode(sign)}` },
    },
  };
}

function sortedCopy(params: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(params).sort()) out[key] = params[key]!;
  return out;
}

/**
 * `{base}/gateway.do`: a configured base URL gets `gateway.do` appended (as the SDKs'
 * profile does); a URL already ending in `/gateway.do` is used as it is.
 */
export function gatewayUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (!url.pathname.endsWith('/gateway.do')) {
    url.pathname = `${url.pathname.replace(/\/+$/, '')}/gateway.do`;
  }
  return url.toString();
}
