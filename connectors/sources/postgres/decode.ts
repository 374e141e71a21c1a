import pg from 'pg';
import type { JsonValue, Row } from '../../../src/core/events.js';

// `timestamp without time zone` has no zone: node-pg would read it in the process's local
// zone and shift it. Keep Postgres' text; sinks interpret zone-less times explicitly.
export const keepText = (v: string): string => v;
pg.types.setTypeParser(1114, keepText);

/**
 * A pgoutput tuple as JSON-safe values. Dates become ISO-8601, buffers hex. A column whose
 * value is `undefined` was sent as "unchanged TOAST": it is reported in `unknown` and left
 * out of the row, never turned into null.
 */
export function decodeTuple(tuple: Record<string, unknown> | null | undefined): { row: Row; unknown: string[] } | null {
  if (!tuple) return null;
  const row: Row = {};
  const unknown: string[] = [];
  for (const [name, value] of Object.entries(tuple)) {
    if (value === undefined) unknown.push(name);
    else row[name] = toJson(value);
  }
  return { row, unknown };
}

export function toJson(value: unknown): JsonValue {
  if (value === null) return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map(toJson);
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, toJson(v)]));
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value as JsonValue;
}
