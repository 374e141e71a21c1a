/** The two timestamp shapes on the AntChain wire (spec sections 2.1 and 3.8). */

const CHINA_OFFSET_MS = 8 * 3_600_000;

/** `req_time`: UTC, `yyyy-MM-dd'T'HH:mm:ss'Z'`, no fraction. */
export function formatReqTime(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * `confirm_time`: China time with milliseconds, `yyyy-MM-dd'T'HH:mm:ss.SSS+08:00`, what Java's
 * `new Date(1609065254000L)` becomes in the vectors and what the API's validation pattern accepts.
 */
export function formatConfirmTime(at: Date): string {
  return new Date(at.getTime() + CHINA_OFFSET_MS).toISOString().replace(/Z$/, '+08:00');
}

/** The API metadata's pattern for `confirm_time` ([TEA] `ent/main.tea`). */
export const CONFIRM_TIME_PATTERN = /^\d{4}-\d{1,2}-\d{1,2}T\d{2}:\d{2}:\d{2}(Z|(\.\d{1,9})?\+\d{2}:?\d{2})$/;

/** `req_time` as the client sends it. */
export const REQ_TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
