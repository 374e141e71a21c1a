import { hash } from 'node:crypto';

/**
 * Deterministic event identity: a hash of the business identity, never of a WAL position
 * or a clock. Rendered as 32 lowercase hex chars, the shape AntChain's `request_id`
 * example has, and well within Zhima's 128-char `out_biz_no`.
 */
export function eventId(parts: readonly string[]): string {
  // Length-prefixed parts, hashed in one call (the same UTF-8 bytes as one update per piece,
  // at a third of the cost: it runs for every event of every change).
  let text = '';
  for (const part of parts) text += `${part.length}:${part}`;
  return hash('sha256', text, 'hex').slice(0, 32);
}
