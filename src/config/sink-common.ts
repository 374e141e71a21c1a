import { z } from 'zod';
import { EVENT_CODES } from '../core/events.js';
import { UNTRUSTED_ANSWERS_BEFORE_PAUSE } from '../core/trust.js';
import { duration, size } from './units.js';

/** The gateways' answers are a few hundred bytes: 256KB leaves room for any real one. */
export const DEFAULT_MAX_RESPONSE_BYTES = 256_000;

/**
 * Fields every sink's config has: the dispatcher reads the pacing and retry ones, the sink
 * its timeout and what it accepts of the answers.
 * Each sink spreads this shape into its own `z.strictObject({ kind: z.literal(…), …sinkCommonShape, … })`.
 */
export const sinkCommonShape = {
  /** Maximum attempts in flight for this sink. */
  concurrency: z.number().int().min(1).max(512).default(16),
  /** Requests per second (token bucket); unset = unlimited. */
  rateLimit: z.number().positive().optional(),
  /** Whole-attempt deadline; an attempt past it is abandoned and retried with the same key. */
  timeout: duration().default(20_000),
  retry: backoffShape(1_000, 300_000),
  /**
   * Largest answer body read. A larger one is abandoned as soon as the cap is passed (never
   * buffered whole) and retried with the same key as `RESPONSE_TOO_LARGE`.
   */
  maxResponseBytes: size()
    .pipe(z.number().min(1_000, 'expected at least 1kB: no gateway answer fits in less'))
    .default(DEFAULT_MAX_RESPONSE_BYTES),
  /**
   * Answers in a row that fail verification or cannot be read (HTML, not JSON, over
   * maxResponseBytes) before the sink counts as failing as a whole: paused, probed, resumed
   * by the first trusted answer. Each one before that is retried with the same key.
   */
  pauseAfterUntrustedAnswers: z.number().int().min(1).max(1_000).default(UNTRUSTED_ANSWERS_BEFORE_PAUSE),
  /** Restrict the sink to these event codes; default: every code the sink can send. */
  events: z.array(z.enum(EVENT_CODES)).optional(),
};

/**
 * `{ initialBackoff, maxBackoff }` with both defaults; an initial backoff above the maximum is
 * an error (it would be silently capped, and is almost always two values swapped).
 */
export function backoffShape(initialMs: number, maxMs: number) {
  return z
    .strictObject({
      initialBackoff: duration().default(initialMs),
      maxBackoff: duration().default(maxMs),
    })
    .prefault({})
    .check((ctx) => {
      const { initialBackoff, maxBackoff } = ctx.value;
      if (initialBackoff > maxBackoff) {
        ctx.issues.push({
          code: 'custom',
          input: ctx.value,
          path: ['initialBackoff'],
          message: `${initialBackoff} ms is more than maxBackoff (${maxBackoff} ms): the first wait may not exceed the longest; swap or fix the two values`,
        });
      }
    });
}
