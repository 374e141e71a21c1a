import type { JsonValue } from '../../core/events.js';

/**
 * Personal data as the console shows it: enough to recognise a record when a customer
 * calls, not enough to copy it. A mainland mobile number keeps its first three and last
 * four digits (138****8000), an Alipay user id its 2088 prefix and last four
 * (2088…5135), an identity or card number its last four. Fields are recognised by name
 * and, whatever their name, values shaped like a phone or an Alipay user id are masked.
 */
const MOBILE = /^(\+?86[- ]?)?(1\d{2})\d{4}(\d{4})$/;
const ALIPAY_USER_ID = /^2088\d{12}$/;
const PHONE_KEY = /phone|mobile|tel(ephone)?$|logon/i;
const USER_ID_KEY = /user_?id$|open_?id$|buyer_?id$|uid$/i;
const DOCUMENT_KEY = /id_?no$|id_?card|cert_?no|passport|card_?no$|user_id_no/i;
const NAME_KEY = /^(buyer|user|real|customer|sharer|holder|contact)_?name$/i;
const EMAIL = /^([^@\s])[^@\s]*(@[^@\s]+)$/;

export function maskPhone(s: string): string {
  const m = MOBILE.exec(s.trim());
  if (m) return `${m[2]}****${m[3]}`;
  const digits = s.replace(/\D/g, '');
  return digits.length >= 7 ? `${digits.slice(0, 3)}****${digits.slice(-4)}` : '****';
}

export function shortenUserId(s: string): string {
  return s.length > 8 ? `${s.slice(0, 4)}…${s.slice(-4)}` : '****';
}

function maskDocument(s: string): string {
  return s.length > 4 ? `${'*'.repeat(Math.min(8, s.length - 4))}${s.slice(-4)}` : '****';
}

/** One value, by its field name and its shape. */
export function maskValue(key: string, value: string): string {
  if (DOCUMENT_KEY.test(key)) return maskDocument(value);
  if (PHONE_KEY.test(key)) return EMAIL.test(value) ? value.replace(EMAIL, '$1***$2') : maskPhone(value);
  if (USER_ID_KEY.test(key) || ALIPAY_USER_ID.test(value)) return shortenUserId(value);
  if (NAME_KEY.test(key)) return value ? `${[...value][0]}*` : value;
  if (MOBILE.test(value.trim())) return maskPhone(value);
  return value;
}

/** A JSON value with personal data masked, recursively. */
export function maskFields(value: JsonValue | undefined, key = ''): JsonValue | undefined {
  if (value === null || value === undefined || typeof value === 'boolean') return value;
  if (typeof value === 'string') return maskValue(key, value);
  if (typeof value === 'number') {
    const masked = maskValue(key, String(value));
    return masked === String(value) ? value : masked;
  }
  if (Array.isArray(value)) return value.map((v) => maskFields(v, key) ?? null);
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(value)) out[k] = maskFields(v, k) ?? null;
  return out;
}

/** Free text (a remote message) with mobile numbers and Alipay user ids masked where they stand. */
export function maskText(text: string): string {
  return text
    .replace(/(?<!\d)(1\d{2})\d{4}(\d{4})(?!\d)/g, '$1****$2')
    .replace(/(?<!\d)2088\d{8}(\d{4})(?!\d)/g, '2088…$1');
}
