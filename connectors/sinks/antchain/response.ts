import { clipRemoteText, REMOTE_CODE_MAX, REMOTE_TEXT_MAX } from '../../../src/core/trust.js';
import { extractResponseStringToSign, hmacSha1Base64, signaturesEqual } from './sign.js';

/**
 * What a gateway answer says, read from the body text (spec section 5). The body is parsed
 * whatever the HTTP status; the signature is only checked when `result_code` is OK. Remote
 * text is clipped as it is read (codes to REMOTE_CODE_MAX, prose to REMOTE_TEXT_MAX), so
 * nothing downstream (classification, logs, the ledger) ever holds more of a hostile answer.
 */
export type ParsedResponse =
  | { kind: 'not_json' }
  | { kind: 'no_response' }
  | {
      kind: 'response';
      resultCode?: string;
      resultMsg?: string;
      reqMsgId?: string;
      fields: ResponseFields;
      /** Present only for OK answers: whether `sign` matches the raw `response` text. */
      signValid?: boolean;
    };

export interface ResponseFields {
  event_id?: string;
  event_status?: string;
  token_status?: string;
  token_amount?: number | string;
  parent_token_amount?: number | string;
  message?: string;
}

/** A token amount is a Java long (19 digits); a longer literal is kept clipped, visibly. */
const MAX_INTEGER_TEXT = 40;

export function parseGatewayResponse(body: string, secret: string): ParsedResponse {
  const json = parseJson(body);
  if (!isObject(json) || !isObject(json.response)) return json === undefined ? { kind: 'not_json' } : { kind: 'no_response' };
  let response = json.response;
  let source = body;
  let signValid: boolean | undefined;
  if (code(pick(response, 'result_code')) === 'OK') {
    // The fields acted on must be the signed ones: with two `response` members JSON.parse
    // keeps the last, while the signature covers the first.
    const signed = signedResponse(body, json.sign, secret);
    signValid = signed !== undefined;
    if (signed) ({ object: response, text: source } = signed);
  }
  const parsed: ParsedResponse = {
    kind: 'response',
    resultCode: code(pick(response, 'result_code')),
    resultMsg: prose(pick(response, 'result_msg')),
    reqMsgId: code(pick(response, 'req_msg_id')),
    fields: {
      event_id: prose(pick(response, 'event_id')),
      event_status: code(pick(response, 'event_status')),
      token_status: code(pick(response, 'token_status')),
      token_amount: integer(source, response, 'token_amount'),
      parent_token_amount: integer(source, response, 'parent_token_amount'),
      message: prose(pick(response, 'message')),
    },
  };
  if (signValid !== undefined) parsed.signValid = signValid;
  return parsed;
}

/** The `response` text the gateway signed and its parse, when `sign` is its HMAC under `secret`. */
function signedResponse(body: string, sign: unknown, secret: string): { text: string; object: Record<string, unknown> } | undefined {
  if (typeof sign !== 'string') return undefined;
  const text = extractResponseStringToSign(body);
  if (text === undefined || !signaturesEqual(hmacSha1Base64(secret, text), sign)) return undefined;
  const object = parseJson(text);
  return isObject(object) ? { text, object } : undefined;
}

/** JSON.parse is linear and iterative in V8: deep nesting and huge literals cost time, not stack. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const camelCase = (snake: string): string => snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** Some gateways answer in camelCase (spec 5.2): accept both spellings. */
function pick(response: Record<string, unknown>, snake: string): unknown {
  if (Object.hasOwn(response, snake)) return response[snake];
  const camel = camelCase(snake);
  return Object.hasOwn(response, camel) ? response[camel] : undefined;
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

const code = (value: unknown): string | undefined => clip(text(value), REMOTE_CODE_MAX);
const prose = (value: unknown): string | undefined => clip(text(value), REMOTE_TEXT_MAX);

function clip(value: string | undefined, max: number): string | undefined {
  return value === undefined ? undefined : clipRemoteText(value, max);
}

/**
 * Longs beyond 2^53 lose digits in JSON.parse; then the literal is taken from the raw text
 * (the signed text, for OK answers) and kept as a string, so a recorded token amount is
 * never silently wrong. Of several literals under the key (duplicate keys: JSON.parse keeps
 * the last) the last one that parses to the same number is taken.
 */
function integer(source: string, response: Record<string, unknown>, snake: string): number | string | undefined {
  const value = pick(response, snake);
  if (typeof value === 'string') return clipRemoteText(value, MAX_INTEGER_TEXT);
  if (typeof value !== 'number') return undefined;
  if (Number.isSafeInteger(value)) return value;
  const pattern = new RegExp(`"(?:${snake}|${camelCase(snake)})"\\s*:\\s*(-?\\d+(?:\\.\\d+)?(?:[eE][+-]?\\d+)?)`, 'g');
  let literal: string | undefined;
  for (const match of source.matchAll(pattern)) {
    if (Number(match[1]) === value) literal = match[1];
  }
  return literal === undefined ? value : clipRemoteText(literal, MAX_INTEGER_TEXT);
}
