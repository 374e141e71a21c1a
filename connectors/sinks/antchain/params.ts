/**
 * Nested request object → flat wire parameters (spec section 3).
 * Objects become `parent.child` keys, lists `key.1`, `key.2` (1-based), integers plain
 * base-10 digits. null/undefined are omitted, and so are empty strings: SDKs disagree on
 * whether `""` is sent and signed, so an empty value is the one place two valid clients
 * would produce different signatures.
 */

export type ParamValue = string | number | bigint | boolean | null | undefined | ParamObject | ParamValue[];
export interface ParamObject {
  [key: string]: ParamValue;
}

export function flattenParams(input: ParamObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(input)) addValue(out, key, value);
  return out;
}

function addValue(out: Record<string, string>, key: string, value: ParamValue): void {
  if (value === null || value === undefined) return;
  if (Array.isArray(value)) {
    value.forEach((item, index) => addValue(out, `${key}.${index + 1}`, item));
    return;
  }
  if (typeof value === 'object') {
    for (const [child, childValue] of Object.entries(value)) addValue(out, `${key}.${child}`, childValue);
    return;
  }
  const text = scalarText(key, value);
  if (text === '') return;
  if (key in out) throw new Error(`duplicate wire parameter ${key}`);
  out[key] = text;
}

function scalarText(key: string, value: string | number | bigint | boolean): string {
  if (typeof value === 'number') {
    // Java Longs on the wire: digits only. A float or an unsafe integer is a programmer error.
    if (!Number.isSafeInteger(value)) throw new Error(`parameter ${key}: ${value} is not a safe integer`);
    return String(value);
  }
  return String(value);
}
