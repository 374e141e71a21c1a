import { canonicalString, hmacSha1Base64, signaturesEqual } from '../../../connectors/sinks/antchain/sign.js';

/**
 * What the simulated gateway checks before the product sees a request: parameter
 * placement, system parameters, credentials, signature and clock (spec sections 1, 2.1, 4).
 * A failure carries the result_code the simulator answers with.
 */
export type GatewayFailure = {
  ok: false;
  code: 'ACCESS_DENIED' | 'MISSING_PARAMETER' | 'INVALID_PARAMETER' | 'METHOD_NOT_FOUND';
  message: string;
  /** Counted as a rejected signature/credential rather than an invalid request. */
  auth: boolean;
};

export type GatewayCheck = { ok: true; params: Record<string, string> } | GatewayFailure;

export interface GatewayKeys {
  /** access_key → secret. */
  secrets: ReadonlyMap<string, string>;
  now: () => Date;
  maxSkewMs: number;
}

const REQUIRED_SYSTEM = ['method', 'version', 'access_key', 'sign_type', 'req_msg_id', 'req_time', 'sign', 'product_instance_id'];

/** ISO-8601 as the various SDKs send it: `…Z`, with milliseconds, or with a numeric offset. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$/;

const fail = (code: GatewayFailure['code'], message: string, auth = false): GatewayFailure => ({ ok: false, code, message, auth });

/**
 * Body and query merged, both decoded as form data (the signature covers their union, so a
 * Tea-style client with system parameters in the query string verifies too).
 */
export function mergeParams(query: string, body: string): { ok: true; params: Record<string, string> } | GatewayFailure {
  const params: Record<string, string> = {};
  for (const source of [new URLSearchParams(query), new URLSearchParams(body)]) {
    for (const [key, value] of source) {
      if (key in params) return fail('INVALID_PARAMETER', `parameter ${key} is given more than once`);
      params[key] = value;
    }
  }
  return { ok: true, params };
}

export function checkGateway(params: Record<string, string>, keys: GatewayKeys): GatewayCheck {
  for (const name of REQUIRED_SYSTEM) {
    if (!params[name]) return fail('MISSING_PARAMETER', `missing parameter ${name}`);
  }
  if (params.method !== 'antchain.ent.event.report.exec' || params.version !== '1.0') {
    return fail('METHOD_NOT_FOUND', `no API ${params.method} version ${params.version}`);
  }
  const secret = keys.secrets.get(params.access_key!);
  if (secret === undefined) return fail('ACCESS_DENIED', 'access_key not found', true);
  if (params.sign_type !== 'HmacSHA1') return fail('ACCESS_DENIED', `sign_type ${params.sign_type} not supported`, true);
  const expected = hmacSha1Base64(secret, canonicalString(params));
  if (!signaturesEqual(expected, params.sign!)) return fail('ACCESS_DENIED', 'signature does not match', true);
  if (!/^[0-9a-fA-F]{32}$/.test(params.req_msg_id!)) return fail('INVALID_PARAMETER', 'req_msg_id must be 32 hex characters');
  const reqTime = params.req_time!;
  const at = ISO_TIME.test(reqTime) ? Date.parse(reqTime) : Number.NaN;
  if (Number.isNaN(at)) return fail('INVALID_PARAMETER', 'req_time is not an ISO-8601 timestamp');
  if (Math.abs(keys.now().getTime() - at) > keys.maxSkewMs) {
    return fail('ACCESS_DENIED', `req_time is more than ${Math.round(keys.maxSkewMs / 60_000)} minutes away from the gateway clock`);
  }
  return { ok: true, params };
}
