import { hmacSha1Base64 } from '../../../connectors/sinks/antchain/sign.js';
import type { SimEffect } from './state.js';

/**
 * Gateway answer bodies (spec section 5). Successes are signed over the exact text of the
 * `response` member; errors are unsigned, as the SDKs expect (they verify only OK answers).
 */
export function signedAnswer(response: Record<string, unknown>, secret: string): string {
  const text = JSON.stringify(response);
  return `{"response":${text},"sign":${JSON.stringify(hmacSha1Base64(secret, text))}}`;
}

export function errorAnswer(reqMsgId: string | undefined, code: string, message: string): string {
  return JSON.stringify({ response: { req_msg_id: reqMsgId ?? '', result_code: code, result_msg: message } });
}

/** The OK answer for an effect, recorded now or earlier (a duplicate gets the same event_id). */
export function effectResponse(reqMsgId: string, effect: SimEffect): Record<string, unknown> {
  return {
    req_msg_id: reqMsgId,
    result_code: 'OK',
    result_msg: 'OK',
    event_id: effect.eventId,
    event_status: 'PROCESSED',
    token_status: effect.tokenStatus,
    token_amount: effect.tokenAmount,
    message: '',
    parent_token_amount: effect.parentTokenAmount,
  };
}

/** OK without an effect: NEED_RETRY (report again) or EVENT_NOT_SUPPORTED. */
export function statusResponse(reqMsgId: string, eventStatus: 'NEED_RETRY' | 'EVENT_NOT_SUPPORTED'): Record<string, unknown> {
  return {
    req_msg_id: reqMsgId,
    result_code: 'OK',
    result_msg: 'OK',
    event_status: eventStatus,
    token_status: 'NO_NEED_ALLOCATION',
    token_amount: 0,
    message: eventStatus === 'NEED_RETRY' ? 'please report again' : 'event not supported by the project',
  };
}
