import type { Dispatcher } from 'undici';
import type { Logger } from '../log.js';
import type { BusinessEvent } from './events.js';

/**
 * What one HTTP attempt looked like, recorded for every attempt whatever its outcome.
 * `requestId` is the per-attempt id the remote side knows (AntChain `req_msg_id`,
 * Alipay `alipay-request-id`/trace id) so operators can quote it to support.
 */
export interface AttemptInfo {
  requestId?: string;
  httpStatus?: number;
  remoteCode?: string;
  remoteSubCode?: string;
  remoteMessage?: string;
  durationMs: number;
}

/**
 * The result of one delivery attempt.
 * - `delivered`: the remote effect exists (verified answer). `result` keeps what the API
 *   returned on success (e.g. event_id, token_status).
 * - `retry`: not known to be done; try again later with the same idempotency key.
 * - `rejected`: this event can never succeed as it is; park it with the remote reason.
 * - `not_applicable`: this sink has nothing to send for this event (e.g. no Alipay user id).
 * - `sink_failure`: the sink itself is broken (bad credentials, clock skew, access denied):
 *   the dispatcher pauses the whole sink instead of parking events one by one.
 */
export type DeliveryOutcome =
  | { status: 'delivered'; info: AttemptInfo; result?: Record<string, unknown> }
  | { status: 'retry'; info: AttemptInfo; code: string; message: string; afterMs?: number }
  | { status: 'rejected'; info: AttemptInfo; code: string; message: string }
  | { status: 'not_applicable'; reason: string }
  | { status: 'sink_failure'; info: AttemptInfo; code: string; message: string };

/** The exact HTTP request a sink would send. */
export interface PreparedRequest {
  method: 'POST';
  url: string;
  headers: Record<string, string>;
  body: string;
}

export type PreviewResult =
  | { status: 'request'; request: PreparedRequest }
  | { status: 'not_applicable'; reason: string }
  | { status: 'rejected'; code: string; message: string };

export interface PreviewOptions {
  /** Pins the request clock (timestamps in the signed parameters). */
  at: Date;
  /** Pins the per-request random id (hex). */
  nonce: string;
}

/**
 * A destination API. One `deliver` call is exactly one attempt (at most one HTTP
 * request); retries, backoff, ordering and pausing belong to the dispatcher.
 *
 * - `deliver` may be called concurrently for different events, never twice at once for
 *   the same event. It must resolve (never reject) for anything the remote side or the
 *   network does; it throws only on programmer error. It must honour `signal`
 *   (abort = the attempt is abandoned and will be retried; classify it as `retry`).
 * - `preview` builds the request `deliver` would send with a pinned clock and nonce,
 *   without any I/O.
 * - No call is made after `close`.
 */
export interface Sink {
  /** Instance name from config, e.g. "antchain". */
  readonly name: string;
  /** Connector kind, e.g. "antchain" or "zhima". */
  readonly kind: string;
  /** Whether this sink takes events of this code at all (decides fan-out at ingest). */
  handles(event: BusinessEvent): boolean;
  /**
   * One attempt. The sink bounds it by its own timeout; `signal` is the dispatcher's
   * shutdown signal (long-lived: listen to it only for the length of the attempt).
   */
  deliver(event: BusinessEvent, signal: AbortSignal): Promise<DeliveryOutcome>;
  preview(event: BusinessEvent, options: PreviewOptions): PreviewResult;
  close(): Promise<void>;
}

/** What every sink factory receives besides its config. */
export interface SinkDeps {
  logger: Logger;
  /** Where `{ env: … }` secret references are looked up; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Request clock (timestamps in the signed parameters). */
  now?: () => Date;
  /** Per-attempt request id (32 lowercase hex). */
  nonce?: () => string;
  /** Shared HTTP dispatcher; when absent the sink owns a keep-alive undici Agent and closes it. */
  dispatcher?: Dispatcher;
  /** Instance name from config (defaults to the sink's kind). */
  name?: string;
}
