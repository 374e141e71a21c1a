import { describe, expect, it } from 'vitest';
import { classifyAnswer, looksLikeAuthFailure, parseGatewayResponse } from '../../connectors/sinks/antchain/index.js';
import { hmacSha1Base64 } from '../../connectors/sinks/antchain/sign.js';
import { maskPersonal } from '../../connectors/sinks/antchain/sink.js';

const SECRET = 'classify-secret';
const REQ = '0123456789abcdef0123456789abcdef';

function signed(response: Record<string, unknown>): string {
  const text = JSON.stringify(response);
  return `{"response":${text},"sign":"${hmacSha1Base64(SECRET, text)}"}`;
}

function classify(body: string, status = 200) {
  return classifyAnswer(status, parseGatewayResponse(body, SECRET), REQ);
}

const ok = (extra: Record<string, unknown>) => ({ req_msg_id: REQ, result_code: 'OK', result_msg: 'OK', ...extra });

describe('OK answers', () => {
  it.each(['PROCESSED', 'REPORTED', 'PROCESSING'])('%s with a valid sign → delivered with the result fields', (status) => {
    const verdict = classify(signed(ok({ event_id: 'E1', event_status: status, token_status: 'TOKEN_SUCCESS', token_amount: 150, parent_token_amount: 50 })));
    expect(verdict).toStrictEqual({
      outcome: 'delivered',
      code: status,
      message: 'OK',
      result: { event_id: 'E1', token_status: 'TOKEN_SUCCESS', token_amount: 150, parent_token_amount: 50, event_status: status },
    });
  });

  it('reads camelCase answers and keeps Longs beyond 2^53 exact', () => {
    const body = signed({ reqMsgId: REQ, resultCode: 'OK', eventId: 'E2', eventStatus: 'PROCESSED', tokenStatus: 'TOKEN_SUCCESS', tokenAmount: 1 }).replace(
      '"tokenAmount":1',
      '"tokenAmount":9007199254740993',
    );
    // Re-sign after the textual edit so only the big number is under test.
    const response = body.slice(body.indexOf('{', 2), body.lastIndexOf(',"sign"'));
    const resigned = `{"response":${response},"sign":"${hmacSha1Base64(SECRET, response)}"}`;
    expect(classify(resigned)).toMatchObject({ outcome: 'delivered', result: { event_id: 'E2', token_amount: '9007199254740993' } });
  });

  it.each([
    ['NEED_RETRY', 'retry'],
    ['EVENT_NOT_SUPPORTED', 'rejected'],
    ['SOMETHING_NEW', 'rejected'],
  ])('event_status %s → %s', (status, outcome) => {
    expect(classify(signed(ok({ event_status: status })))).toMatchObject({ outcome });
  });

  it('an OK answer with a missing or wrong sign is never delivered', () => {
    const unsigned = JSON.stringify({ response: ok({ event_status: 'PROCESSED', event_id: 'E3' }) });
    expect(classify(unsigned)).toMatchObject({ outcome: 'retry', code: 'INVALID_RESPONSE_SIGNATURE' });
    const forged = signed(ok({ event_status: 'PROCESSED' })).replace('PROCESSED', 'PROCESSING');
    expect(classify(forged)).toMatchObject({ outcome: 'retry', code: 'INVALID_RESPONSE_SIGNATURE' });
  });

  it('a signed answer for another req_msg_id is not taken for this attempt', () => {
    expect(classify(signed(ok({ req_msg_id: 'f'.repeat(32), event_status: 'PROCESSED' })))).toMatchObject({ outcome: 'retry', code: 'RESPONSE_MISMATCH' });
  });
});

describe('result codes', () => {
  const error = (code: string, msg = 'x') => JSON.stringify({ response: { req_msg_id: REQ, result_code: code, result_msg: msg } });
  it.each([
    ['FAILED_NEED_RETRY', 'retry'],
    ['1009', 'retry'],
    ['UNKNOWN', 'retry'],
    ['1011', 'retry'],
    ['UNKNOWN_ERROR', 'retry'],
    ['PROVIDER_UNKNOWN_ERROR', 'retry'],
    ['INVALID_PARAMETER', 'rejected'],
    ['1001', 'rejected'],
    ['LOGON_ID_NOT_FOUND', 'rejected'],
    ['FAILED_NO_RETRY', 'rejected'],
    ['EVENT_NOT_SUPPORTED', 'rejected'],
    ['MISSING_PARAMETER', 'rejected'],
    ['ACCESS_DENIED', 'sink_failure'],
    ['METHOD_NOT_FOUND', 'sink_failure'],
    ['INVALID_SIGNATURE', 'sink_failure'],
    ['SIGNATURE_INVALID', 'sink_failure'],
    ['INVALID_ACCESS_KEY', 'sink_failure'],
    ['AK_NOT_FOUND', 'sink_failure'],
    ['REQ_TIME_EXPIRED', 'sink_failure'],
    ['INVALID_TIMESTAMP', 'sink_failure'],
    ['IP_NOT_IN_WHITE_LIST', 'sink_failure'],
    ['SOME_NEW_CODE', 'rejected'],
  ])('%s → %s', (code, outcome) => {
    expect(classify(error(code))).toMatchObject({ outcome, code });
  });

  it('falls back to the seed number in result_msg for an unknown result_code', () => {
    expect(classify(error('BIZ_ERROR', '1009'))).toMatchObject({ outcome: 'retry', code: 'BIZ_ERROR' });
  });

  it('classifies by the body even when the HTTP status is an error', () => {
    expect(classify(error('INVALID_PARAMETER'), 500)).toMatchObject({ outcome: 'rejected' });
    expect(classify(signed(ok({ event_status: 'PROCESSED' })), 502)).toMatchObject({ outcome: 'delivered' });
  });

  it('does not take harmless words for auth failures', () => {
    expect(looksLikeAuthFailure('ORDER_NOT_FOUND')).toBe(false);
    expect(looksLikeAuthFailure('DESIGNATED_ERROR')).toBe(false);
    expect(looksLikeAuthFailure('SIGN_TYPE_NOT_SUPPORTED')).toBe(true);
  });
});

describe('answers without a gateway response', () => {
  it.each([
    [200, 'not json', 'retry', 'RESPONSE_FORMAT_ERROR'],
    [200, '{"result":1}', 'retry', 'MISSING_RESPONSE'],
    [200, '[1,2]', 'retry', 'MISSING_RESPONSE'],
    [500, '<html>', 'retry', 'HTTP_500'],
    [503, '', 'retry', 'HTTP_503'],
    [429, 'slow down', 'retry', 'HTTP_429'],
    [404, 'Not Found', 'sink_failure', 'HTTP_404'],
    [403, 'Forbidden', 'sink_failure', 'HTTP_403'],
    [413, 'too large', 'rejected', 'HTTP_413'],
  ])('HTTP %i %j → %s %s', (status, body, outcome, code) => {
    expect(classify(body, status)).toMatchObject({ outcome, code });
  });
});

describe('log masking', () => {
  it('removes phone numbers and e-mail addresses from remote messages', () => {
    expect(maskPersonal('account user@example.com / +86-13000000000 not found (1005)')).toBe('account [redacted] / [redacted] not found (1005)');
  });
});
