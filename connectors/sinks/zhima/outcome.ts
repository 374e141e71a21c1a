import type { AttemptInfo, DeliveryOutcome } from '../../../src/core/sink.js';
import type { HttpResult } from './http.js';
import { interpretResponse, type Interpretation, type VerifyKey } from './response.js';

/**
 * One attempt's record and outcome. `requestId` is what Alipay support can search for: the
 * alipay-request-id we sent, plus the gateway's trace_id when it returned one.
 */

export interface AttemptContext {
  requestId: string;
  durationMs: number;
}

function attemptInfo(ctx: AttemptContext, http: HttpResult, meaning?: Interpretation): AttemptInfo {
  const traceId = http.ok ? http.traceId : undefined;
  const remote = meaning?.remote ?? {};
  return {
    requestId: traceId ? `${ctx.requestId};trace_id=${traceId}` : ctx.requestId,
    ...(http.ok && { httpStatus: http.response.status }),
    ...(remote.code !== undefined && { remoteCode: remote.code }),
    ...(remote.subCode !== undefined && { remoteSubCode: remote.subCode }),
    ...(remote.message !== undefined && { remoteMessage: remote.message }),
    durationMs: Math.round(ctx.durationMs * 10) / 10,
  };
}

export interface AttemptResult {
  outcome: DeliveryOutcome;
  /** The answer carried a signature that verified with the Alipay public key. */
  verified: boolean;
}

export function attemptResult(ctx: AttemptContext, http: HttpResult, key: VerifyKey): AttemptResult {
  if (!http.ok) {
    return { outcome: { status: 'retry', info: attemptInfo(ctx, http), code: http.code, message: http.message }, verified: false };
  }
  const meaning = interpretResponse(http.response, key);
  return { outcome: toOutcome(meaning, attemptInfo(ctx, http, meaning), http.traceId), verified: meaning.verified === true };
}

function toOutcome(meaning: Interpretation, info: AttemptInfo, traceId: string | undefined): DeliveryOutcome {
  if (meaning.status === 'delivered') {
    return { status: 'delivered', info, result: { ...meaning.result, ...(traceId && { trace_id: traceId }) } };
  }
  if (meaning.status === 'retry') {
    return { status: 'retry', info, code: meaning.code, message: meaning.message, ...(meaning.afterMs !== undefined && { afterMs: meaning.afterMs }) };
  }
  return { status: meaning.status, info, code: meaning.code, message: meaning.message };
}
