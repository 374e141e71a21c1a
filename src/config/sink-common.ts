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
  retry: z
    .strictObject({
      initialBackoff: duration().default(1_000),
      maxBackoff: duration().default(300_000),
    })
    .prefault({}),
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
