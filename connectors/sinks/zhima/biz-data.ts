import type { JsonValue, Row } from '../../../src/core/events.js';
import type { BizDataField, ZhimaSinkConfig } from './config.js';

/**
 * biz_data: the state payload, a JSON *string* (double-encoded inside biz_content). Its field
 * model is agreed with Zhima per product, so it is pure config: output name → column, with a
 * type. Values arrive JSON-safe (timestamps as ISO text, int8/numeric as strings).
 */

export const BIZ_DATA_MAX = 4096;

export type Built<T> = { ok: true; value: T } | { ok: false; message: string };

const DECIMAL = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;
const INTEGER = /^-?\d+$/;

interface FieldSpec {
  column: string;
  type: 'string' | 'number' | 'integer';
  optional: boolean;
}

function spec(field: BizDataField): FieldSpec {
  return typeof field === 'string' ? { column: field, type: 'string', optional: false } : field;
}

function asString(value: JsonValue): string {
  return typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function asNumber(value: JsonValue, integer: boolean): number | undefined {
  const pattern = integer ? INTEGER : DECIMAL;
  const n = typeof value === 'number' ? value : typeof value === 'string' && pattern.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isFinite(n)) return undefined;
  // An integer beyond 2^53 would be silently rounded by JSON.stringify's number form.
  if (integer && !Number.isSafeInteger(n)) return undefined;
  return n;
}

function convert(value: JsonValue, field: FieldSpec): Built<string | number> {
  if (field.type === 'string') return { ok: true, value: asString(value) };
  const n = asNumber(value, field.type === 'integer');
  return n === undefined
    ? { ok: false, message: `column ${field.column} is not ${field.type === 'integer' ? 'an integer' : 'a number'}` }
    : { ok: true, value: n };
}

/** Builds the biz_data JSON text in config order, or says which field/column is wrong. */
export function buildBizData(mapping: ZhimaSinkConfig['bizData'], row: Row): Built<string> {
  const out: Record<string, string | number> = {};
  for (const [name, raw] of Object.entries(mapping)) {
    const field = spec(raw);
    const value = row[field.column];
    if (value === undefined || value === null) {
      if (field.optional) continue;
      return { ok: false, message: `biz_data.${name}: column ${field.column} is missing or null` };
    }
    const converted = convert(value, field);
    if (!converted.ok) return { ok: false, message: `biz_data.${name}: ${converted.message}` };
    out[name] = converted.value;
  }
  const text = JSON.stringify(out);
  const bytes = Buffer.byteLength(text, 'utf8');
  if (text.length > BIZ_DATA_MAX || bytes > BIZ_DATA_MAX) {
    return { ok: false, message: `biz_data is ${bytes} UTF-8 bytes (${text.length} chars); the limit is ${BIZ_DATA_MAX}` };
  }
  return { ok: true, value: text };
}
