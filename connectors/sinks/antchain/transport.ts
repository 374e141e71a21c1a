import { request, type Dispatcher } from 'undici';
import type { PreparedRequest } from '../../../src/core/sink.js';

/**
 * One HTTP exchange with a whole-attempt deadline. Transport problems are values: the sink
 * classifies them all as `retry` (the effect may or may not exist; request_id dedupes).
 */
export type HttpAnswer =
  | { ok: true; status: number; body: string; retryAfterMs?: number }
  | { ok: false; code: string; message: string };

export async function sendRequest(
  dispatcher: Dispatcher,
  prepared: PreparedRequest,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<HttpAnswer> {
  // One controller per attempt, fed by the caller's signal and our deadline. Listeners and the
  // timer are removed afterwards, so a long-lived dispatcher signal does not collect attempts.
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
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
    const body = await response.body.text();
    return { ok: true, status: response.statusCode, body, retryAfterMs: retryAfter(response.headers['retry-after']) };
  } catch (err) {
    if (signal.aborted) return { ok: false, code: 'ABORTED', message: 'attempt abandoned by the caller' };
    if (timedOut) return { ok: false, code: 'TIMEOUT', message: `no complete answer within ${timeoutMs} ms` };
    return { ok: false, ...describeError(err) };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

function describeError(err: unknown): { code: string; message: string } {
  const error = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof error.code === 'string' ? error.code : typeof error.cause?.code === 'string' ? error.cause.code : 'NETWORK_ERROR';
  const message = typeof error.message === 'string' ? error.message : String(err);
  return { code, message };
}

/** `Retry-After` in seconds (an HTTP date is rare for APIs and is ignored). */
function retryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  return Number(text.trim()) * 1_000;
}
