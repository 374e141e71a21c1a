import { verify as rsaVerify, type KeyObject } from 'node:crypto';

/**
 * Response signatures. The gateway signs the response object exactly as it appears in the
 * body, so we cut that text out by brace matching (string- and escape-aware, as the Java
 * SDK's extractSignContent does) and never re-serialise parsed JSON: whitespace, key order
 * and `\/` or `\uXXXX` escapes are all part of the signed bytes.
 */

export const ERROR_RESPONSE_KEY = 'error_response';

export type Extraction =
  | { ok: true; key: string; content: string }
  | { ok: false; reason: string };

interface Member {
  key: string;
  start: number;
  end: number; // exclusive
}

const WS = new Set([' ', '\t', '\n', '\r']);

function skipWs(text: string, i: number): number {
  while (i < text.length && WS.has(text[i]!)) i++;
  return i;
}

/** Index just past the string literal starting at `i` (which holds `"`), or -1. */
function skipString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text[j];
    if (c === '\\') j++;
    else if (c === '"') return j + 1;
  }
  return -1;
}

/** Index just past the JSON value starting at `i`, or -1. Braces inside strings do not count. */
function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return skipString(text, i);
  if (c !== '{' && c !== '[') {
    let j = i;
    while (j < text.length && !WS.has(text[j]!) && text[j] !== ',' && text[j] !== '}' && text[j] !== ']') j++;
    return j > i ? j : -1;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const d = text[j];
    if (d === '"') {
      j = skipString(text, j) - 1;
      if (j < 0) return -1;
    } else if (d === '{' || d === '[') depth++;
    else if (d === '}' || d === ']') {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  return -1;
}

/** The members of the top-level object with the text span of each value, or undefined if malformed. */
function topLevelMembers(text: string): Member[] | undefined {
  let i = skipWs(text, 0);
  if (text[i] !== '{') return undefined;
  const members: Member[] = [];
  i = skipWs(text, i + 1);
  if (text[i] === '}') return members;
  for (;;) {
    if (text[i] !== '"') return undefined;
    const keyEnd = skipString(text, i);
    if (keyEnd < 0) return undefined;
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWs(text, keyEnd);
    if (text[i] !== ':') return undefined;
    const start = skipWs(text, i + 1);
    const end = skipValue(text, start);
    if (end < 0) return undefined;
    members.push({ key, start, end });
    i = skipWs(text, end);
    if (text[i] === '}') return members;
    if (text[i] !== ',') return undefined;
    i = skipWs(text, i + 1);
  }
}

/**
 * Cuts out the signed text: the value of `responseKey`, else of `error_response`, verbatim.
 * A body carrying the key twice is refused, as the official .NET and newer Java SDKs do,
 * because a second copy could make a verifier and a parser look at different objects.
 */
export function extractSignedContent(body: string, responseKey: string): Extraction {
  const members = topLevelMembers(body);
  if (!members) return { ok: false, reason: 'response is not a JSON object' };
  for (const key of [responseKey, ERROR_RESPONSE_KEY]) {
    const found = members.filter((m) => m.key === key);
    if (found.length === 0) continue;
    const member = found[0]!;
    if (found.length > 1 || body.indexOf(`"${key}"`, member.end) >= 0) {
      return { ok: false, reason: `response key ${key} appears more than once` };
    }
    if (body[member.start] !== '{') return { ok: false, reason: `${key} is not a JSON object` };
    return { ok: true, key, content: body.slice(member.start, member.end) };
  }
  return { ok: false, reason: `response has neither ${responseKey} nor ${ERROR_RESPONSE_KEY}` };
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function verifies(content: string, signature: Buffer, key: KeyObject): boolean {
  // A public-key RSA operation costs microseconds, so verifying on the event loop is fine.
  return rsaVerify('sha256', Buffer.from(content, 'utf8'), key, signature);
}

/**
 * Verifies `sign` (base64 RSA-SHA256) over the extracted content with the Alipay public key.
 * Some gateway paths sign the text before JSON escaping of `/`, so, like the Java SDK, a
 * failed check is retried once with every `\/` replaced by `/`.
 */
export function verifySignedContent(content: string, sign: string, key: KeyObject): boolean {
  if (!BASE64.test(sign) || sign.length % 4 !== 0) return false;
  const seen = verified.get(key);
  const memoKey = content.length <= MEMO_MAX_CONTENT ? `${sign}\n${content}` : undefined;
  if (memoKey !== undefined && seen?.has(memoKey)) return true;
  const signature = Buffer.from(sign, 'base64');
  const ok = verifies(content, signature, key) || (content.includes('\\/') && verifies(content.replaceAll('\\/', '/'), signature, key));
  if (ok && memoKey !== undefined) remember(key, memoKey);
  return ok;
}

/**
 * Answers that verified, by key. RSA verification is a pure function of (key, content,
 * sign): the same bytes verified once verify again, so a repeated answer (every success
 * answer of this method is the same text) skips the RSA operation. Failures are never
 * remembered; the memo is small and starts over when full.
 */
const verified = new WeakMap<KeyObject, Set<string>>();
const MEMO_MAX_CONTENT = 1024;
const MEMO_MAX_ENTRIES = 256;

function remember(key: KeyObject, memoKey: string): void {
  let set = verified.get(key);
  if (!set) verified.set(key, (set = new Set()));
  if (set.size >= MEMO_MAX_ENTRIES) set.clear();
  set.add(memoKey);
}
