import { z } from 'zod';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = { B: 1, kB: 1_000, KB: 1_000, KiB: 1_024, MB: 1e6, MiB: 1_048_576, GB: 1e9, GiB: 1_073_741_824 };

/** Units people write that mean one of ours: "30sec" is a typo of "30s", not a unit of its own. */
const DURATION_ALIASES: Record<string, string[]> = {
  msec: ['ms'], msecs: ['ms'], millis: ['ms'], millisecond: ['ms'], milliseconds: ['ms'],
  sec: ['s'], secs: ['s'], second: ['s'], seconds: ['s'],
  min: ['m'], mins: ['m'], minute: ['m'], minutes: ['m'],
  hr: ['h'], hrs: ['h'], hour: ['h'], hours: ['h'],
  day: ['d'], days: ['d'],
};
const SIZE_ALIASES: Record<string, string[]> = {
  b: ['B'], byte: ['B'], bytes: ['B'], k: ['kB', 'KiB'], kb: ['kB'], kib: ['KiB'], m: ['MB', 'MiB'], mb: ['MB'], mib: ['MiB'], g: ['GB', 'GiB'], gb: ['GB'], gib: ['GiB'],
};

interface UnitKind {
  expected: string;
  aliases: Record<string, string[]>;
  /** Ways to write a bare number with a unit. */
  bare(n: number): string[];
}

const DURATION: UnitKind = {
  expected: 'a duration with a unit, e.g. "30s" (units: ms, s, m, h, d)',
  aliases: DURATION_ALIASES,
  bare: (n) => [`${n}ms`, n % 1000 === 0 ? `${n / 1000}s` : `${n}s`],
};
const SIZE: UnitKind = {
  expected: 'a size with a unit, e.g. "64kB" (units: B, kB, KiB, MB, MiB, GB, GiB)',
  aliases: SIZE_ALIASES,
  bare: (n) => [`${n}B`, ...(n > 0 && n % 1024 === 0 ? [`${n / 1024}KiB`] : n > 0 && n % 1000 === 0 ? [`${n / 1000}kB`] : [])],
};

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

/**
 * What a refused duration or size should have been: a bare number has no unit (YAML reads
 * `timeout: 5000` as a number), and a near-miss unit ("30sec", "10M") names the one meant.
 */
function problem(kind: UnitKind, input: unknown, orOff = false): string {
  const expected = `expected ${orOff ? '"off" or ' : ''}${kind.expected}`;
  const quote = (xs: string[]) => xs.map((x) => `"${x}"`).join(' or ');
  if (typeof input === 'number') return `${expected}; got ${input}, a number without a unit (write ${quote(kind.bare(input))})`;
  if (typeof input !== 'string') return `${expected}; got ${input === null ? 'null' : Array.isArray(input) ? 'a list' : typeof input}`;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$/.exec(input);
  const meant = m ? (kind.aliases[m[2]!] ?? kind.aliases[m[2]!.toLowerCase()]) : undefined;
  return `${expected}; got "${input}"${meant ? ` (did you mean ${quote(meant.map((u) => `${m![1]}${u}`))}?)` : ''}`;
}

/** A string that must parse with `parse`; every refusal (a number, a typo) says what was expected. */
function withUnit<T>(kind: UnitKind, parse: (text: string) => T | undefined, orOff = false) {
  return z
    .string({ error: (issue) => (issue.input === undefined ? undefined : problem(kind, issue.input, orOff)) })
    .transform((text, ctx) => {
      const value = parse(text);
      if (value === undefined) {
        ctx.addIssue({ code: 'custom', message: problem(kind, text, orOff) });
        return z.NEVER;
      }
      return value;
    });
}

/** A duration with an explicit unit ("250ms", "5s", "2m", "1h", "1d"), parsed to milliseconds. */
export const duration = () => withUnit(DURATION, parseDuration);

/** "off", or a duration with an explicit unit (milliseconds). One schema, so a typo gets the duration's message. */
export const durationOrOff = () => withUnit<number | 'off'>(DURATION, (text) => (text.trim() === 'off' ? 'off' : parseDuration(text)), true);

/** A size with an explicit unit ("512B", "64kB", "10MiB"), parsed to bytes. */
export const size = () => withUnit(SIZE, parseSize);

/** A SQL identifier we may splice into statements (schema, table, slot, publication names). */
export const identifier = () =>
  z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 chars)');

/** A table name, optionally schema-qualified: "orders" or "public.orders". */
export const tableName = () =>
  z.string().regex(/^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$/, 'expected a table name like "orders" or "public.orders"');
