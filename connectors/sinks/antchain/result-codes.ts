import type { ParsedResponse, ResponseFields } from './response.js';

/**
 * Gateway answer → outcome class (spec section 7). `delivered` is only ever reached through
 * an OK answer whose signature verified; everything else either retries under the same
 * request_id, parks the one event, or pauses the whole sink.
 */
export type OutcomeClass = 'delivered' | 'retry' | 'rejected' | 'sink_failure';

export interface CodeRule<O extends OutcomeClass = OutcomeClass> {
  outcome: O;
  note: string;
}

/** `result_code` values (symbolic, and the seed's numbers, which may sit in either field). */
export const RESULT_CODES: Readonly<Record<string, CodeRule<Exclude<OutcomeClass, 'delivered'>>>> = {
  INVALID_PARAMETER: { outcome: 'rejected', note: '1001 parameter error: fix the data' },
  '1001': { outcome: 'rejected', note: 'INVALID_PARAMETER' },
  LOGON_ID_NOT_FOUND: { outcome: 'rejected', note: '1005 the Alipay account does not exist' },
  '1005': { outcome: 'rejected', note: 'LOGON_ID_NOT_FOUND' },
  FAILED_NEED_RETRY: { outcome: 'retry', note: '1009 failed, report again' },
  '1009': { outcome: 'retry', note: 'FAILED_NEED_RETRY' },
  FAILED_NO_RETRY: { outcome: 'rejected', note: '1010 failed, do not retry' },
  '1010': { outcome: 'rejected', note: 'FAILED_NO_RETRY' },
  UNKNOWN: { outcome: 'retry', note: '1011 unknown error, report again' },
  '1011': { outcome: 'retry', note: 'UNKNOWN' },
  MISSING_PARAMETER: { outcome: 'rejected', note: 'gateway parameter check' },
  EVENT_NOT_SUPPORTED: { outcome: 'rejected', note: 'the project does not support this event' },
  UNKNOWN_ERROR: { outcome: 'retry', note: 'unexpected gateway error' },
  PROVIDER_UNKNOWN_ERROR: { outcome: 'retry', note: 'the product behind the gateway failed' },
  ACCESS_DENIED: { outcome: 'sink_failure', note: 'unknown AK, bad signature, IP not whitelisted or no permission' },
  METHOD_NOT_FOUND: { outcome: 'sink_failure', note: 'wrong method/version: every request would fail' },
  INVALID_SIGNATURE: { outcome: 'sink_failure', note: 'wrong secret' },
  SIGNATURE_INVALID: { outcome: 'sink_failure', note: 'wrong secret' },
  SIGNATURE_DOES_NOT_MATCH: { outcome: 'sink_failure', note: 'wrong secret' },
  INVALID_ACCESS_KEY: { outcome: 'sink_failure', note: 'wrong access key' },
  ACCESS_KEY_NOT_FOUND: { outcome: 'sink_failure', note: 'wrong access key' },
  INVALID_TIMESTAMP: { outcome: 'sink_failure', note: 'clock skew: fix NTP' },
  REQUEST_EXPIRED: { outcome: 'sink_failure', note: 'clock skew: fix NTP' },
  IP_NOT_IN_WHITELIST: { outcome: 'sink_failure', note: 'egress IP not whitelisted' },
};

/** `event_status` of an OK answer (spec 5.2, section 7). */
export const EVENT_STATUSES: Readonly<Record<string, CodeRule>> = {
  PROCESSED: { outcome: 'delivered', note: 'handled' },
  REPORTED: { outcome: 'delivered', note: 'accepted, processing later' },
  PROCESSING: { outcome: 'delivered', note: 'accepted, in progress' },
  NEED_RETRY: { outcome: 'retry', note: 'report again with the same request_id' },
  EVENT_NOT_SUPPORTED: { outcome: 'rejected', note: 'the project does not support this event' },
};

/**
 * Codes outside the table that still smell of credentials, signing, clocks or whitelists:
 * every request would fail the same way, so pause the sink rather than park events one by one.
 */
const AUTH_WORDS = new Set([
  'SIGN', 'SIGNATURE', 'AK', 'ACCESSKEY', 'AUTH', 'UNAUTHORIZED', 'AUTHENTICATION', 'AUTHORIZATION',
  'PERMISSION', 'FORBIDDEN', 'DENIED', 'WHITELIST', 'TIMESTAMP', 'REQTIME', 'CLOCK', 'SKEW',
]);

export function looksLikeAuthFailure(code: string): boolean {
  const words = code.toUpperCase().replace(/ACCESS[_.-]?KEY/g, 'ACCESSKEY').replace(/WHITE[_.-]LIST/g, 'WHITELIST')
    .replace(/REQ[_.-]?TIME/g, 'REQTIME').split(/[^A-Z0-9]+/);
  return words.some((word) => AUTH_WORDS.has(word));
}

export type Classification =
  | { outcome: 'delivered'; code: string; message: string; result: Record<string, unknown> }
  | { outcome: 'retry' | 'rejected' | 'sink_failure'; code: string; message: string };

export function classifyAnswer(httpStatus: number, parsed: ParsedResponse, reqMsgId: string): Classification {
  if (parsed.kind === 'response' && parsed.resultCode !== undefined) {
    if (parsed.resultCode === 'OK') return classifyOk(parsed, reqMsgId);
    return classifyCode(parsed.resultCode, parsed.resultMsg);
  }
  return classifyHttp(httpStatus, parsed.kind === 'not_json' ? 'RESPONSE_FORMAT_ERROR' : 'MISSING_RESPONSE');
}

function classifyOk(parsed: Extract<ParsedResponse, { kind: 'response' }>, reqMsgId: string): Classification {
  if (parsed.signValid !== true) {
    return { outcome: 'retry', code: 'INVALID_RESPONSE_SIGNATURE', message: 'OK answer with a missing or wrong sign; not taken as delivered' };
  }
  if (parsed.reqMsgId !== undefined && parsed.reqMsgId !== reqMsgId) {
    return { outcome: 'retry', code: 'RESPONSE_MISMATCH', message: `signed answer is for req_msg_id ${parsed.reqMsgId}, not this attempt` };
  }
  const status = parsed.fields.event_status;
  const rule = status === undefined ? undefined : EVENT_STATUSES[status];
  const message = parsed.fields.message || parsed.resultMsg || status || 'OK';
  if (!rule || status === undefined) {
    return { outcome: 'rejected', code: `EVENT_STATUS_${status ?? 'MISSING'}`, message: `OK answer with unknown event_status ${status ?? '(none)'}` };
  }
  if (rule.outcome === 'delivered') return { outcome: 'delivered', code: status, message, result: resultOf(parsed.fields) };
  return { outcome: rule.outcome, code: status, message };
}

function classifyCode(code: string, resultMsg: string | undefined): Classification {
  const message = resultMsg ?? code;
  const rule = RESULT_CODES[code] ?? (resultMsg !== undefined ? RESULT_CODES[resultMsg] : undefined);
  if (rule) return { outcome: rule.outcome, code, message };
  if (looksLikeAuthFailure(code)) return { outcome: 'sink_failure', code, message };
  // Unknown codes park the event with an alert rather than retry forever (spec section 7).
  return { outcome: 'rejected', code, message: `unknown result_code: ${message}` };
}

function classifyHttp(status: number, formatCode: string): Classification {
  const message = `HTTP ${status} without a gateway response`;
  if (status >= 500 || status === 429 || status === 408 || status === 425) {
    return { outcome: 'retry', code: `HTTP_${status}`, message };
  }
  // A 4xx without a gateway answer is a proxy/path/host problem shared by every request,
  // except for the statuses that are about this one request's size or shape.
  if ([400, 413, 414, 422, 431].includes(status)) return { outcome: 'rejected', code: `HTTP_${status}`, message };
  if (status >= 400) return { outcome: 'sink_failure', code: `HTTP_${status}`, message };
  return { outcome: 'retry', code: formatCode, message: `HTTP ${status}: ${formatCode === 'RESPONSE_FORMAT_ERROR' ? 'body is not JSON' : 'JSON without a response object'}` };
}

function resultOf(fields: ResponseFields): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const key of ['event_id', 'token_status', 'token_amount', 'parent_token_amount', 'event_status'] as const) {
    if (fields[key] !== undefined) result[key] = fields[key];
  }
  return result;
}
