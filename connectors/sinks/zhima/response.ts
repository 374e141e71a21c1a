import type { KeyObject } from 'node:crypto';
import { clipRemoteText, REMOTE_CODE_MAX, REMOTE_TEXT_MAX, type AnswerTrust } from '../../../src/core/trust.js';
import { ruleFor, type Verdict } from './result-codes.js';
import { extractSignedContent, verifySignedContent } from './response-sign.js';

/**
 * Turns one HTTP answer into a verdict. Pure: no clock, no I/O, so the golden response
 * vectors (and hostile answers) can be fed straight in. The rule that matters most: nothing
 * is `delivered` unless its signature verifies with the Alipay public key. Every piece of
 * remote text kept is clipped (codes to REMOTE_CODE_MAX, prose to REMOTE_TEXT_MAX).
 */

export interface RawResponse {
  status: number;
  body: Uint8Array;
  /** `Retry-After` header, if any. */
  retryAfter?: string;
}

export interface VerifyKey {
  publicKey: KeyObject;
  /** Top-level member holding the response object, e.g. zhima_data_state_data_sync_response. */
  responseKey: string;
  /** Cert mode: the SN of the configured Alipay public-key certificate. */
  alipayCertSn?: string;
}

export interface RemoteFields {
  code?: string;
  subCode?: string;
  message?: string;
}

export type Interpretation = (
  | { status: 'delivered'; remote: RemoteFields; result: Record<string, unknown> }
  | { status: Verdict; code: string; message: string; afterMs?: number; remote: RemoteFields }
) & {
  /** Whether the answer's signature verified (false also when unsigned or unreadable). */
  verified?: boolean;
  /**
   * `untrusted`: unreadable (not UTF-8, not a JSON object, no response member), a signature
   * that fails, a success without one; `trusted`: verified, or an error answer the gateway
   * left unsigned; `neutral`: an HTTP error status (see src/core/trust.ts).
   */
  trust: AnswerTrust;
};

const MAX_RETRY_AFTER_MS = 3_600_000;

/** Alipay user ids are personal data; sub_msg (e.g. isv.invalid-signature) can echo them. */
export function scrubUserIds(text: string): string {
  return text.replace(/(?<!\d)2088\d{8,60}(?!\d)/g, '2088[redacted]');
}

function retryAfterMs(header: string | undefined): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, MAX_RETRY_AFTER_MS);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.min(Math.max(at - Date.now(), 0), MAX_RETRY_AFTER_MS);
}

function httpStatusVerdict(res: RawResponse): Interpretation {
  const remote = {};
  const trust = 'neutral';
  if (res.status === 429 || res.status === 408 || res.status >= 500) {
    const afterMs = retryAfterMs(res.retryAfter);
    return { status: 'retry', code: `HTTP_${res.status}`, message: `gateway answered HTTP ${res.status}`, remote, trust, ...(afterMs !== undefined && { afterMs }) };
  }
  // Every coded gateway outcome comes with 200; anything else (404, 403, 3xx) is the endpoint or network setup.
  return { status: 'sink_failure', code: `HTTP_${res.status}`, message: `gateway answered HTTP ${res.status}; check endpoint`, remote, trust };
}

const badResponse = (message: string): Interpretation => ({ status: 'retry', code: 'BAD_RESPONSE', message, remote: {}, trust: 'untrusted' });

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
}

function code(value: unknown): string | undefined {
  const found = text(value);
  return found === undefined ? undefined : clipRemoteText(found, REMOTE_CODE_MAX);
}

/** sub_msg or msg, clipped first, then scrubbed (the scrub only ever sees the kept part). */
function remoteFields(data: Record<string, unknown>): RemoteFields {
  const message = text(data.sub_msg) || text(data.msg);
  return { code: code(data.code), subCode: code(data.sub_code), ...(message && { message: clipRemoteText(message, REMOTE_TEXT_MAX, scrubUserIds) }) };
}

/**
 * What a success keeps: its scalar members, text clipped. Nested values are left out: the
 * ledger stores the result as JSON, and JSON.stringify cannot go as deep as a (signed, yet
 * absurd) answer can nest.
 */
function keptResult(data: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (key === 'code' || key === 'msg') continue;
    if (typeof value === 'string') result[clipRemoteText(key, REMOTE_CODE_MAX)] = clipRemoteText(value, REMOTE_TEXT_MAX);
    else if (typeof value === 'number' || typeof value === 'boolean' || value === null) result[clipRemoteText(key, REMOTE_CODE_MAX)] = value;
  }
  return result;
}

function decode(body: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return undefined;
  }
}

function parseObject(raw: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(raw);
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

type SignState = 'verified' | 'unsigned' | 'invalid';

function signState(content: string, envelope: Record<string, unknown>, key: VerifyKey): SignState {
  if (envelope.sign === undefined) return 'unsigned';
  return typeof envelope.sign === 'string' && verifySignedContent(content, envelope.sign, key.publicKey) ? 'verified' : 'invalid';
}

function invalidSignature(envelope: Record<string, unknown>, key: VerifyKey, remote: RemoteFields): Interpretation {
  const sn = code(envelope.alipay_cert_sn);
  const rotated = key.alipayCertSn !== undefined && sn !== undefined && sn !== key.alipayCertSn;
  const message = rotated
    ? `response signed with Alipay cert ${sn}, configured cert is ${key.alipayCertSn}: rotated certificate?`
    : 'response signature does not verify with the configured Alipay public key';
  return { status: 'retry', code: 'RESPONSE_SIGNATURE_INVALID', message, remote, trust: 'untrusted' };
}

function describe(remote: RemoteFields): string {
  return [remote.code, remote.subCode, remote.message].filter(Boolean).join(' ');
}

/** Success needs a verified signature; errors are classified even unsigned (old error_response). */
function verdictFor(data: Record<string, unknown>, state: SignState, remote: RemoteFields): Interpretation {
  const remoteCode = remote.code ?? '';
  const trust = 'trusted';
  if (remoteCode === '10000') {
    if (state !== 'verified') return { status: 'retry', code: 'RESPONSE_UNSIGNED', message: 'success answer carries no sign', remote, trust: 'untrusted' };
    if (data.biz_result === 'success') return { status: 'delivered', remote, result: keptResult(data), trust };
    const message = `biz_result=${code(data.biz_result) ?? '(missing)'} ${describe(remote)}`;
    return { status: 'rejected', code: remote.subCode ?? 'BIZ_RESULT_FAILED', message, remote, trust };
  }
  const rule = ruleFor(remoteCode, remote.subCode);
  const unsigned = state === 'unsigned' ? ' (unsigned answer)' : '';
  return {
    status: rule.verdict,
    code: remote.subCode || remoteCode || 'UNKNOWN',
    message: `${describe(remote)}${unsigned}`,
    remote,
    trust,
    ...(rule.afterMs !== undefined && { afterMs: rule.afterMs }),
  };
}

export function interpretResponse(res: RawResponse, key: VerifyKey): Interpretation {
  if (res.status !== 200) return httpStatusVerdict(res);
  const raw = decode(res.body);
  if (raw === undefined) return badResponse('response body is not valid UTF-8');
  const envelope = parseObject(raw);
  if (!envelope) return badResponse('response body is not a JSON object');
  const extracted = extractSignedContent(raw, key.responseKey);
  if (!extracted.ok) return badResponse(extracted.reason);
  const data = envelope[extracted.key] as Record<string, unknown>;
  const remote = remoteFields(data);
  const state = signState(extracted.content, envelope, key);
  if (state === 'invalid') return invalidSignature(envelope, key, remote);
  return { ...verdictFor(data, state, remote), verified: state === 'verified' };
}
