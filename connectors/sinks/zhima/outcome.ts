import type { AttemptInfo, DeliveryOutcome } from '../../../src/core/sink.js';
import { clipRemoteText, REMOTE_CODE_MAX, type AnswerTrust } from '../../../src/core/trust.js';
import { RESPONSE_TOO_LARGE, type HttpResult } from './http.js';
import { interpretResponse, type Interpretation, type VerifyKey } from './response.js';

/**
 * One attempt's record and outcome. `requestId` is what Alipay support can search for: the
 * alipay-request-id we sent, plus the gateway's trace_id when it returned one.
 */

export interface AttemptContext {
  requestId: string;
  durationMs: number;
}

/** The gateway's trace_id header, as much of it as an id can be. */
function traceIdOf(http: HttpResult): string | undefined {
  return http.ok && http.traceId !== undefined ? clipRemoteText(http.traceId, REMOTE_CODE_MAX) : undefined;
}

function attemptInfo(ctx: AttemptContext, http: HttpResult, meaning?: Interpretation): AttemptInfo {
  const traceId = traceIdOf(http);
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
  /** What the answer says about trusting the gateway's answers (src/core/trust.ts). */
  trust: AnswerTrust;
}

/** No answer to judge, except one too large to read: that is no gateway answer either. */
export function attemptResult(ctx: AttemptContext, http: HttpResult, key: VerifyKey): AttemptResult {
  if (!http.ok) {
    const outcome: DeliveryOutcome = { status: 'retry', info: attemptInfo(ctx, http), code: http.code, message: clipRemoteText(http.message) };
    return { outcome, trust: http.code === RESPONSE_TOO_LARGE ? 'untrusted' : 'neutral' };
  }
  const meaning = interpretResponse(http.response, key);
  return { outcome: toOutcome(meaning, attemptInfo(ctx, http, meaning), traceIdOf(http)), trust: meaning.trust };
}

/** Verdict messages quote remote text (each part clipped already); the whole stays bounded too. */
function toOutcome(meaning: Interpretation, info: AttemptInfo, traceId: string | undefined): DeliveryOutcome {
  if (meaning.status === 'delivered') {
    return { status: 'delivered', info, result: { ...meaning.result, ...(traceId && { trace_id: traceId }) } };
  }
  const message = clipRemoteText(meaning.message);
  if (meaning.status === 'retry') {
    return { status: 'retry', info, code: meaning.code, message, ...(meaning.afterMs !== undefined && { afterMs: meaning.afterMs }) };
  }
  return { status: meaning.status, info, code: meaning.code, message };
}
