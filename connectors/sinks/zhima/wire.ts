import type { PreparedRequest } from '../../../src/core/sink.js';
import { canonicalString, nonEmpty, type Param } from './sign.js';
import { beijingTimestamp } from './timestamp.js';

/**
 * The HTTP shape of one call, as the official SDKs send it: every common parameter, `sign`
 * included, in the URL query; `biz_content`, the only business parameter, form-encoded in
 * the body. Both are serialised with URLSearchParams (space → `+`, `+` → `%2B`), which is
 * byte for byte what the Node SDK produces.
 */

export const METHOD = 'zhima.data.state.data.sync';
export const RESPONSE_KEY = 'zhima_data_state_data_sync_response';
export const CONTENT_TYPE = 'application/x-www-form-urlencoded;charset=UTF-8';

/** What stays the same on every call of one sink. */
export interface CommonParams {
  appId: string;
  appAuthToken?: string;
  appCertSn?: string;
  alipayRootCertSn?: string;
}

export interface UnsignedCall {
  /** Parameters in the order they go on the wire (query first, then biz_content); empties dropped. */
  params: Param[];
  canonical: string;
}

/** Builds the parameter list and the canonical string for one attempt at `at`. */
export function unsignedCall(common: CommonParams, bizContent: string, at: Date): UnsignedCall {
  // The Node SDK's order; the gateway does not care, but it keeps the URL comparable with the vectors.
  const params = nonEmpty([
    ['method', METHOD],
    ['app_id', common.appId],
    ['charset', 'utf-8'],
    ['version', '1.0'],
    ['sign_type', 'RSA2'],
    ['timestamp', beijingTimestamp(at)],
    ['format', 'JSON'],
    ['app_auth_token', common.appAuthToken ?? ''],
    ['app_cert_sn', common.appCertSn ?? ''],
    ['alipay_root_cert_sn', common.alipayRootCertSn ?? ''],
    ['biz_content', bizContent],
  ]);
  return { params, canonical: canonicalString(params) };
}

/** The complete request once the signature is known. `requestId` is the 32-hex alipay-request-id. */
export function preparedRequest(endpoint: string, call: UnsignedCall, sign: string, requestId: string): PreparedRequest {
  const query = new URLSearchParams();
  let bizContent = '';
  for (const [name, value] of call.params) {
    if (name === 'biz_content') bizContent = value;
    else query.append(name, value);
  }
  query.append('sign', sign);
  const url = new URL(endpoint);
  url.search = query.toString();
  const body = new URLSearchParams([['biz_content', bizContent]]).toString();
  return {
    method: 'POST',
    url: url.toString(),
    headers: {
      'content-type': CONTENT_TYPE,
      accept: 'application/json',
      'alipay-request-id': requestId,
      'content-length': String(Buffer.byteLength(body)),
    },
    body,
  };
}
