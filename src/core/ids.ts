import { createHash } from 'node:crypto';

/**
 * Deterministic event identity: a hash of the business identity, never of a WAL position
 * or a clock. Rendered as 32 lowercase hex chars, the shape AntChain's `request_id`
 * example has, and well within Zhima's 128-char `out_biz_no`.
 */
export function eventId(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const part of parts) {
    h.update(String(part.length));
    h.update(':');
    h.update(part);
  }
  return h.digest('hex').slice(0, 32);
}
