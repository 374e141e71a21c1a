import { request, type Dispatcher } from 'undici';
import type { PreparedRequest } from '../../../src/core/sink.js';

/**
 * One HTTP exchange with a whole-attempt deadline and a cap on the answer's size. Transport
 * problems are values: the sink classifies them all as `retry` (the effect may or may not
 * exist; request_id dedupes).
 */
export type HttpAnswer =
  | { ok: true; status: number; body: string; retryAfterMs?: number }
  | { ok: false; code: string; message: string };

export const RESPONSE_TOO_LARGE = 'RESPONSE_TOO_LARGE';

export interface SendOptions {
  timeoutMs: number;
  /** Largest body read; past it the body is destroyed unread and the answer is RESPONSE_TOO_LARGE. */
  maxResponseBytes: number;
  /** The config option that sets the cap, named in the message (e.g. `sinks.antchain.maxResponseBytes`). */
  capOption: string;
}

export async function sendRequest(
  dispatcher: Dispatcher,
  prepared: PreparedRequest,
  signal: AbortSignal,
  options: SendOptions,
): Promise<HttpAnswer> {
  // One controller per attempt, fed by the caller's signal and our deadline. Listeners and the
  // timer are removed afterwards, so a long-lived dispatcher signal does not collect attempts.
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, options.timeoutMs);
  const onAbort = () => controller.abort();
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  try {
    const response = await request(prepared.url, {
      dispatcher,
      method: prepared.method,
      headers: prepared.headers,
      body: prepared.body,
      signal: controller.signal,
    });
    // Read the body whatever the status: gateway errors arrive as JSON with any status.
    const read = await readCapped(response.body, response.headers['content-length'], options.maxResponseBytes);
    if (!read.ok) return { ok: false, code: RESPONSE_TOO_LARGE, message: tooLargeMessage(read, options) };
    return { ok: true, status: response.statusCode, body: read.text, retryAfterMs: retryAfter(response.headers['retry-after']) };
  } catch (err) {
    if (signal.aborted) return { ok: false, code: 'ABORTED', message: 'attempt abandoned by the caller' };
    if (timedOut) return { ok: false, code: 'TIMEOUT', message: `no complete answer within ${options.timeoutMs} ms` };
    return { ok: false, ...describeError(err) };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

type Read = { ok: true; text: string } | { ok: false; announced?: number; received: number };

/**
 * The body as UTF-8 text (a BOM dropped, as undici's `text()` does), or the point where it
 * went over `max`: an announced Content-Length over the cap is refused before reading, a
 * longer stream is destroyed at the chunk that passes it, so the connection is dropped
 * instead of drained and nothing near the answer's size is ever held.
 */
async function readCapped(body: Dispatcher.ResponseData['body'], contentLength: string | string[] | undefined, max: number): Promise<Read> {
  const announced = Number(Array.isArray(contentLength) ? contentLength[0] : contentLength);
  if (Number.isFinite(announced) && announced > max) {
    body.destroy();
    return { ok: false, announced, received: 0 };
  }
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of body) {
    received += (chunk as Buffer).length;
    if (received > max) {
      body.destroy();
      return { ok: false, received };
    }
    chunks.push(chunk as Buffer);
  }
  return { ok: true, text: new TextDecoder().decode(Buffer.concat(chunks, received)) };
}

/** Sizes with digit groups: log masking takes long digit runs for phone numbers. */
function tooLargeMessage(read: Extract<Read, { ok: false }>, options: SendOptions): string {
  const bytes = (n: number) => n.toLocaleString('en-US');
  const seen = read.announced !== undefined ? `announced ${bytes(read.announced)} bytes` : `passed it after ${bytes(read.received)} bytes`;
  return `answer over the ${bytes(options.maxResponseBytes)}-byte cap (${seen}), abandoned unread; raise ${options.capOption} if the gateway's answers really are this large`;
}

function describeError(err: unknown): { code: string; message: string } {
  const error = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof error.code === 'string' ? error.code : typeof error.cause?.code === 'string' ? error.cause.code : 'NETWORK_ERROR';
  const message = typeof error.message === 'string' ? error.message : String(err);
  return { code, message };
}

/** A Retry-After longer than this is taken as this: a hostile or broken header cannot park a delivery for years. */
const MAX_RETRY_AFTER_MS = 3_600_000;

/** `Retry-After` in seconds (an HTTP date is rare for APIs and is ignored). */
function retryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  return Math.min(Number(text.trim()) * 1_000, MAX_RETRY_AFTER_MS);
}
