/**
 * The gateway reads `timestamp` as Beijing time (UTC+8, no DST) in `yyyy-MM-dd HH:mm:ss`.
 * We shift the epoch by 8 h and read it with UTC getters so the process time zone (a
 * container in UTC, a laptop anywhere) cannot leak in; the Node SDK's local-time
 * formatting is the classic "timestamp 8 hours off in Docker" bug.
 */

const BEIJING_OFFSET_MS = 8 * 3_600_000;

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

export function beijingTimestamp(at: Date): string {
  const t = new Date(at.getTime() + BEIJING_OFFSET_MS);
  const date = `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  return `${date} ${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}`;
}
