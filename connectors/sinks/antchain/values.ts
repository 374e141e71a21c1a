import type { JsonValue, UserIdType } from '../../../src/core/events.js';

/**
 * Row values → wire values. Each function returns the wire text or an error string that
 * says what is wrong with the value (never the value itself: it may be personal data).
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = (problem: string): Parsed<never> => ({ ok: false, problem });

/** Java Long's upper bound: amounts and counts travel as Long. */
const LONG_MAX = 9_223_372_036_854_775_807n;

/**
 * A whole JS number beyond 2^53 cannot be told apart from a rounded one: whoever parsed it
 * into a double (a JSON column, a Kafka record) may already have lost digits. Such a value
 * is never passed on as if it were exact, not as an amount and not as an id.
 */
export function isUnsafeNumber(value: JsonValue | undefined): boolean {
  return typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value);
}

/** A row value as text, or undefined when it is absent, null, blank or not exactly known. */
export function textOf(value: JsonValue | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value.trim() === '' ? undefined : value;
  if (typeof value === 'number' && Number.isFinite(value) && !isUnsafeNumber(value)) return String(value);
  return undefined;
}

/** Why textOf found nothing usable. */
export function absent(value: JsonValue | undefined): string {
  if (value === null || value === undefined || typeof value === 'string') return 'is missing or null';
  if (isUnsafeNumber(value)) {
    return 'holds a JSON number beyond 2^53, which may already have been rounded; deliver the column as text (numeric or int8)';
  }
  return 'is neither text nor a number';
}

/** The 11-digit mainland mobile number in a value written with +86/0086/86, spaces or dashes. */
function mainlandMobile(value: string): string | undefined {
  return /^(?:\+86|0086|86)?(1\d{10})$/.exec(value.replace(/[\s-]/g, ''))?.[1];
}

/**
 * Mainland mobile numbers in the `+86-` + 11 digits form the seed's examples use.
 * Accepts `13800138000`, `+8613800138000`, `86-138…`, `0086…`, `+86-138…`, with spaces or dashes.
 */
export function normalisePhone(value: string): Parsed<string> {
  const mobile = mainlandMobile(value);
  if (!mobile) return bad('is not a mainland China mobile number (expected 11 digits, optionally prefixed with +86)');
  return ok(`+86-${mobile}`);
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** Digits with phone punctuation only: this is a phone number, whatever else it claims to be. */
const PHONE_SHAPED = /^[+\d\s\-.()]*\d[+\d\s\-.()]*$/;

/**
 * An Alipay logon id is an e-mail address, sent as issued (trimmed), or a mobile number,
 * which the API model writes as the bare 11 digits ([TEA] `User.userIdNo`: "支付宝登录账号：
 * 手机号/邮箱", example `13000000000`; unlike PHONE's `+86-` form). A phone-shaped value is
 * normalised to those digits, or refused when it is not a mainland mobile number.
 */
export function normaliseLogonId(value: string): Parsed<string> {
  const trimmed = value.trim();
  if (EMAIL.test(trimmed)) return ok(trimmed);
  if (PHONE_SHAPED.test(trimmed)) {
    const mobile = mainlandMobile(trimmed);
    if (!mobile) return bad('is phone-shaped but not a mainland China mobile number (expected 11 digits starting with 1, optionally prefixed with +86)');
    return ok(mobile);
  }
  return bad('is not an Alipay logon id (expected an e-mail address or a mainland China mobile number)');
}

export function normaliseUserId(type: UserIdType, value: string): Parsed<string> {
  return type === 'PHONE' ? normalisePhone(value) : normaliseLogonId(value);
}

/**
 * A non-negative integer as plain digits (no sign, no leading zeros). Accepts JSON numbers,
 * int8/numeric strings, and a zero fraction ("100.00") as numeric(…,2) columns render it.
 */
export function parseCount(value: JsonValue | undefined): Parsed<string> {
  const text = textOf(value);
  if (text === undefined) return bad(absent(value));
  const match = /^(\d+)(?:\.0*)?$/.exec(text.trim());
  if (!match) return bad('is not a non-negative integer');
  return bounded(BigInt(match[1]!));
}

/**
 * An amount in fen (CNY cents). In yuan mode "12.50" / "12.5" / 12.5 become 1250 by
 * string arithmetic, never float math; more than two significant decimals are refused
 * rather than rounded, since rounding money silently is worse than parking the event.
 */
export function parseAmount(value: JsonValue | undefined, unit: 'fen' | 'yuan'): Parsed<string> {
  if (unit === 'fen') return parseCount(value);
  const text = textOf(value);
  if (text === undefined) return bad(absent(value));
  const match = /^(\d+)(?:\.(\d*))?$/.exec(text.trim());
  if (!match) return bad('is not a non-negative decimal amount in yuan');
  const fraction = (match[2] ?? '').replace(/0+$/, '');
  if (fraction.length > 2) return bad('has more than two decimals (sub-fen amount)');
  return bounded(BigInt(match[1]!) * 100n + BigInt(fraction.padEnd(2, '0')));
}

function bounded(n: bigint): Parsed<string> {
  return n > LONG_MAX ? bad('is too large for the API (Java Long)') : ok(n.toString());
}

/**
 * A point in time from a row: an ISO-8601 string, or epoch milliseconds as 13 digits (number
 * or string, Java `new Date(ms)` style; 10-digit epoch seconds are refused as ambiguous). An ISO string without a zone is read as China time
 * (+08:00), the API's own zone, because a `timestamp without time zone` column carries no zone.
 */
export function parseInstant(value: JsonValue | undefined): Parsed<Date> {
  const text = textOf(value);
  if (text === undefined) return bad(absent(value));
  const trimmed = text.trim();
  if (/^\d{13}$/.test(trimmed)) return validDate(new Date(Number(trimmed)));
  const iso = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}(?::?\d{2})?)?$/i.exec(trimmed);
  if (!iso) return bad('is not an ISO-8601 timestamp or epoch milliseconds');
  const zone = iso[3] === undefined ? '+08:00' : normaliseZone(iso[3]);
  return validDate(new Date(`${iso[1]}T${iso[2]}${zone}`));
}

function normaliseZone(zone: string): string {
  if (zone.toUpperCase() === 'Z') return 'Z';
  const digits = zone.slice(1).replace(':', '').padEnd(4, '0');
  return `${zone[0]}${digits.slice(0, 2)}:${digits.slice(2)}`;
}

function validDate(date: Date): Parsed<Date> {
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1970 || year > 9999) return bad('is not a valid timestamp');
  return ok(date);
}
