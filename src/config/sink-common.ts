import { z } from 'zod';
import { EVENT_CODES } from '../core/events.js';
import { duration } from './units.js';

/**
 * Fields every sink's config has; the dispatcher reads them, the sink itself does not.
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
  /** Restrict the sink to these event codes; default: every code the sink can send. */
  events: z.array(z.enum(EVENT_CODES)).optional(),
};
