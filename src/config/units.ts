import { z } from 'zod';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = { B: 1, kB: 1_000, KB: 1_000, KiB: 1_024, MB: 1e6, MiB: 1_048_576, GB: 1e9, GiB: 1_073_741_824 };

/** Parses "250ms", "5s", "1.5m", "2h", "1d" into milliseconds. A bare number is refused: units are explicit. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

/** Parses "64kB", "10MiB", "512B" into bytes. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(B|kB|KB|KiB|MB|MiB|GB|GiB)$/.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2]!]!);
}

/** A duration with an explicit unit ("250ms", "5s", "2m", "1h", "1d"), parsed to milliseconds. */
export const duration = () =>
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration with a unit such as "500ms", "5s", "2m", "1h"; got "${text}"` });
      return z.NEVER;
    }
    return ms;
  });

/** A size with an explicit unit ("512B", "64kB", "10MiB"), parsed to bytes. */
export const size = () =>
  z.string().transform((text, ctx) => {
    const bytes = parseSize(text);
    if (bytes === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a size with a unit such as "512B", "64kB", "10MiB"; got "${text}"` });
      return z.NEVER;
    }
    return bytes;
  });

/** A SQL identifier we may splice into statements (schema, table, slot, publication names). */
export const identifier = () =>
  z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 chars)');

/** A table name, optionally schema-qualified: "orders" or "public.orders". */
export const tableName = () =>
  z.string().regex(/^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$/, 'expected a table name like "orders" or "public.orders"');
