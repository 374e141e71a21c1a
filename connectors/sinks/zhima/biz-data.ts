import type { JsonValue, Row } from '../../../src/core/events.js';
import type { BizDataField, ZhimaSinkConfig } from './config.js';

/**
 * biz_data: the state payload, a JSON *string* (double-encoded inside biz_content). Its field
 * model is agreed with Zhima per product, so it is pure config: output name → column, with a
 * type. Values arrive JSON-safe (timestamps as ISO text, int8/numeric as strings).
 *
 * The JSON text is written here token by token rather than by JSON.stringify of an object,
 * so a number column's decimal text goes out with exactly its digits: '12345678901234567993'
 * stays that, never the nearest double ('…7000'), and '12.30' keeps its trailing zero. For
 * strings and JS numbers of ordinary size the output is byte for byte JSON.stringify's, which
 * is what the golden vectors compare.
 */

export const BIZ_DATA_MAX = 4096;

export type Built<T> = { ok: true; value: T } | { ok: false; message: string };

/** A decimal in the text a numeric/int8 column renders: optional sign, digits, fraction, exponent. */
const DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?(?:([eE])([+-]?\d+))?$/;
/** An integer; a zero fraction ("12.00", numeric(…,2) of a whole number) is the same integer. */
const INTEGER = /^([+-]?)(\d+)(?:\.0+)?$/;

interface FieldSpec {
  column: string;
  type: 'string' | 'number' | 'integer';
  optional: boolean;
}

function spec(field: BizDataField): FieldSpec {
  return typeof field === 'string' ? { column: field, type: 'string', optional: false } : field;
}

/**
 * A JS number beyond 2^53 that is a whole number cannot be told apart from a rounded one:
 * whoever parsed it into a double (a JSON column, a Kafka record) may already have lost
 * digits. Such a value is refused wherever it sits, instead of being passed on as if exact.
 */
function holdsUnsafeNumber(value: JsonValue): boolean {
  if (typeof value === 'number') return Number.isInteger(value) && !Number.isSafeInteger(value);
  if (Array.isArray(value)) return value.some(holdsUnsafeNumber);
  if (value !== null && typeof value === 'object') return Object.values(value).some(holdsUnsafeNumber);
  return false;
}

/** The number as a JSON token with the digits of its text: no sign for positives, no leading zeros. */
function numberToken(text: string, integer: boolean): string | undefined {
  const trimmed = text.trim();
  if (integer) {
    const m = INTEGER.exec(trimmed);
    return m ? `${m[1] === '-' ? '-' : ''}${stripZeros(m[2]!)}` : undefined;
  }
  const m = DECIMAL.exec(trimmed);
  if (!m) return undefined;
  const [, sign, whole, fraction, e, exponent] = m;
  return `${sign === '-' ? '-' : ''}${stripZeros(whole!)}${fraction === undefined ? '' : `.${fraction}`}${e === undefined ? '' : `${e}${exponent}`}`;
}

/** JSON forbids leading zeros ("007"); dropping them keeps the value and every significant digit. */
function stripZeros(digits: string): string {
  return digits.replace(/^0+(?=\d)/, '');
}

const NUMBER_BEYOND_2_53 = 'holds a JSON number beyond 2^53, which may already have been rounded; deliver the column as text (numeric or int8)';

/** One field's value as a JSON token, or why it cannot be one. */
function token(value: JsonValue, field: FieldSpec): Built<string> {
  const fail = (problem: string): Built<string> => ({ ok: false, message: `column ${field.column} ${problem}` });
  if (holdsUnsafeNumber(value)) return fail(NUMBER_BEYOND_2_53);
  if (field.type === 'string') {
    const text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
    return { ok: true, value: JSON.stringify(text) };
  }
  const integer = field.type === 'integer';
  const expected = integer ? 'an integer' : 'a number';
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) return fail(`is not ${expected}`);
    return { ok: true, value: JSON.stringify(value) };
  }
  const rendered = typeof value === 'string' ? numberToken(value, integer) : undefined;
  return rendered === undefined ? fail(`is not ${expected}`) : { ok: true, value: rendered };
}

/** Builds the biz_data JSON text in config order, or says which field/column is wrong. */
export function buildBizData(mapping: ZhimaSinkConfig['bizData'], row: Row): Built<string> {
  const members: string[] = [];
  for (const [name, raw] of Object.entries(mapping)) {
    const field = spec(raw);
    const value = row[field.column];
    if (value === undefined || value === null) {
      if (field.optional) continue;
      return { ok: false, message: `biz_data.${name}: column ${field.column} is missing or null` };
    }
    const rendered = token(value, field);
    if (!rendered.ok) return { ok: false, message: `biz_data.${name}: ${rendered.message}` };
    members.push(`${JSON.stringify(name)}:${rendered.value}`);
  }
  const text = `{${members.join(',')}}`;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (text.length > BIZ_DATA_MAX || bytes > BIZ_DATA_MAX) {
    return { ok: false, message: `biz_data is ${text.length} characters (${bytes} UTF-8 bytes); the limit is ${BIZ_DATA_MAX}` };
  }
  return { ok: true, value: text };
}
