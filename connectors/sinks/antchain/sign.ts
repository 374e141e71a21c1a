import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * AntChain gateway signing (spec section 4) and response verification (section 5.4).
 * Both sides of the simulator use these too, so the golden vectors pin them.
 */

/**
 * RFC 3986 percent-encoding of the UTF-8 bytes: only `A–Z a–z 0–9 - _ . ~` stay bare.
 * encodeURIComponent leaves `! ' ( ) *` bare as well, so those are fixed up afterwards.
 * Throws URIError on a lone surrogate; callers validate strings before they get here.
 */
export function percentEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Sorted by raw key code units (JS string comparison), `enc(key)=enc(value)` joined with `&`. */
export function canonicalString(params: Readonly<Record<string, string>>): string {
  return Object.keys(params)
    .filter((key) => key !== 'sign')
    .sort(compareCodeUnits)
    .map((key) => `${percentEncode(key)}=${percentEncode(params[key]!)}`)
    .join('&');
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Base64 HMAC-SHA1 with the secret's UTF-8 bytes as key (no trailing `&`, unlike Alibaba RPC). */
export function hmacSha1Base64(secret: string, message: string): string {
  return createHmac('sha1', Buffer.from(secret, 'utf8')).update(Buffer.from(message, 'utf8')).digest('base64');
}

/** The `sign` parameter for a flat parameter map (`sign` itself excluded). */
export function signParams(params: Readonly<Record<string, string>>, secret: string): string {
  return hmacSha1Base64(secret, canonicalString(params));
}

/** Compares two signatures without leaking where they differ. */
export function signaturesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * The exact raw text of the `response` member, braces included, as the gateway signed it.
 * Never a re-serialisation: whitespace and key order are part of the signed bytes.
 * - start: the first `{` after the first `"response"`;
 * - end when `"sign"` follows `"response"`: the last `}` before the last `"sign"`;
 * - end otherwise: the last `}` before the body's final `}`.
 * Returns undefined when the body has no such span.
 */
export function extractResponseStringToSign(body: string): string | undefined {
  const responseAt = body.indexOf('"response"');
  if (responseAt < 0) return undefined;
  const start = body.indexOf('{', responseAt);
  if (start < 0) return undefined;
  const signAt = body.lastIndexOf('"sign"');
  let end: number;
  if (signAt > responseAt) {
    end = body.lastIndexOf('}', signAt);
  } else {
    const final = body.lastIndexOf('}');
    end = final > 0 ? body.lastIndexOf('}', final - 1) : -1;
  }
  if (end < start) return undefined;
  return body.slice(start, end + 1);
}

/** True iff `sign` is the HMAC of the body's raw `response` text under `secret`. */
export function verifyResponseSign(body: string, sign: string, secret: string): boolean {
  const signed = extractResponseStringToSign(body);
  if (signed === undefined) return false;
  return signaturesEqual(hmacSha1Base64(secret, signed), sign);
}
