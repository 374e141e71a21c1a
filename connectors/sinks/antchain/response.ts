import { verifyResponseSign } from './sign.js';

/**
 * What a gateway answer says, read from the body text (spec section 5). The body is parsed
 * whatever the HTTP status; the signature is only checked when `result_code` is OK.
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

export function parseGatewayResponse(body: string, secret: string): ParsedResponse {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { kind: 'not_json' };
  }
  if (!isObject(json) || !isObject(json.response)) return { kind: 'no_response' };
  const response = json.response;
  const resultCode = text(pick(response, 'result_code'));
  const parsed: ParsedResponse = {
    kind: 'response',
    resultCode,
    resultMsg: text(pick(response, 'result_msg')),
    reqMsgId: text(pick(response, 'req_msg_id')),
    fields: {
      event_id: text(pick(response, 'event_id')),
      event_status: text(pick(response, 'event_status')),
      token_status: text(pick(response, 'token_status')),
      token_amount: integer(body, response, 'token_amount'),
      parent_token_amount: integer(body, response, 'parent_token_amount'),
      message: text(pick(response, 'message')),
    },
  };
  if (resultCode === 'OK') {
    parsed.signValid = typeof json.sign === 'string' && verifyResponseSign(body, json.sign, secret);
  }
  return parsed;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Some gateways answer in camelCase (spec 5.2): accept both spellings. */
function pick(response: Record<string, unknown>, snake: string): unknown {
  if (snake in response) return response[snake];
  return response[snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())];
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

/**
 * Longs beyond 2^53 lose digits in JSON.parse; then the digits are taken from the raw text
 * and kept as a string, so a recorded token amount is never silently wrong.
 */
function integer(body: string, response: Record<string, unknown>, snake: string): number | string | undefined {
  const value = pick(response, snake);
  if (typeof value !== 'number') return typeof value === 'string' ? value : undefined;
  if (Number.isSafeInteger(value)) return value;
  const camel = snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  const raw = new RegExp(`"(?:${snake}|${camel})"\\s*:\\s*(-?\\d+)`).exec(body);
  return raw ? raw[1] : value;
}
