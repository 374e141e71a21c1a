import { request, type Dispatcher } from 'undici';
import type { PreparedRequest } from '../../../src/core/sink.js';
import type { RawResponse } from './response.js';

/**
 * One POST, bounded in time and in the size of its answer (`maxResponseBytes`). Network
 * trouble comes back as a value: every failure here leaves the outcome unknown, and the same
 * out_biz_no is simply sent again.
 */

export const RESPONSE_TOO_LARGE = 'RESPONSE_TOO_LARGE';

export type HttpResult =
  | { ok: true; response: RawResponse; traceId?: string }
  | {
      ok: false;
      code: 'TIMEOUT' | 'ABORTED' | 'CONNECT_ERROR' | 'CONNECTION_RESET' | 'NETWORK_ERROR' | typeof RESPONSE_TOO_LARGE;
      message: string;
    };

export interface SendOptions {
  dispatcher: Dispatcher;
  timeoutMs: number;
  signal: AbortSignal;
  /** Largest body read; past it the body is destroyed unread and the answer is RESPONSE_TOO_LARGE. */
  maxResponseBytes: number;
  /** The config option that sets the cap, named in the message (e.g. `sinks.zhima.maxResponseBytes`). */
  capOption: string;
}

class BodyTooLarge extends Error {
  constructor(readonly seen: string) {
    super('response body too large');
  }
}

/** Sizes with digit groups, as everywhere remote-facing text is logged. */
const bytes = (n: number): string => n.toLocaleString('en-US');

/**
 * The body, or BodyTooLarge at the point it went over `max`: an announced Content-Length over
 * the cap is refused before reading, a longer stream is destroyed at the chunk that passes
 * it, so the connection is dropped instead of drained and nothing near its size is held.
 */
async function readBody(body: Dispatcher.ResponseData['body'], contentLength: string | undefined, max: number): Promise<Buffer> {
  const announced = Number(contentLength);
  if (Number.isFinite(announced) && announced > max) {
    body.destroy();
    throw new BodyTooLarge(`announced ${bytes(announced)} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > max) {
      body.destroy();
      throw new BodyTooLarge(`passed it after ${bytes(size)} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  return code;
}

function networkFailure(err: unknown, timedOut: boolean, aborted: boolean, options: SendOptions): HttpResult {
  const code = errorCode(err);
  const detail = `${code ?? (err as Error)?.name ?? 'Error'}`;
  if (timedOut || (code !== undefined && TIMEOUT_CODES.has(code))) return { ok: false, code: 'TIMEOUT', message: `no complete answer within the attempt timeout (${detail})` };
  if (aborted) return { ok: false, code: 'ABORTED', message: 'attempt abandoned by the dispatcher' };
  if (err instanceof BodyTooLarge) {
    const message = `answer over the ${bytes(options.maxResponseBytes)}-byte cap (${err.seen}), abandoned unread; raise ${options.capOption} if the gateway's answers really are this large`;
    return { ok: false, code: RESPONSE_TOO_LARGE, message };
  }
  if (code !== undefined && CONNECT_CODES.has(code)) return { ok: false, code: 'CONNECT_ERROR', message: `cannot connect to the gateway (${detail})` };
  if (code !== undefined && RESET_CODES.has(code)) return { ok: false, code: 'CONNECTION_RESET', message: `connection closed before the answer (${detail})` };
  return { ok: false, code: 'NETWORK_ERROR', message: `request failed (${detail})` };
}

/** Sends `req`; gives up after `timeoutMs` or when `signal` aborts. Never rejects. */
export async function send(req: PreparedRequest, options: SendOptions): Promise<HttpResult> {
  // One controller per attempt, fed by the caller's signal and the deadline; the listener
  // and the timer go when the attempt ends, so the caller's long-lived signal keeps nothing.
  const controller = new AbortController();
  let timedOut = false;
  const timeout = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('attempt timeout'));
  }, options.timeoutMs);
  const onAbort = () => controller.abort(options.signal.reason);
  if (options.signal.aborted) onAbort();
  else options.signal.addEventListener('abort', onAbort, { once: true });
  const signal = controller.signal;
  try {
    const res = await request(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      dispatcher: options.dispatcher,
      signal,
    });
    const body = await readBody(res.body, header(res.headers, 'content-length'), options.maxResponseBytes);
    const retryAfter = header(res.headers, 'retry-after');
    const traceId = header(res.headers, 'trace_id');
    return { ok: true, response: { status: res.statusCode, body, ...(retryAfter && { retryAfter }) }, ...(traceId && { traceId }) };
  } catch (err) {
    return networkFailure(err, timedOut, options.signal.aborted, options);
  } finally {
    clearTimeout(timeout);
    options.signal.removeEventListener('abort', onAbort);
  }
}
