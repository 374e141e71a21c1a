import { isVisitCode, type JsonValue, type Row, type UserRef, type VisitRecord } from '../../../src/core/events.js';
import type { BadInput, SourceChange } from '../../../src/core/source.js';
import type { KafkaTopicConfig, VisitTopicConfig } from './config.js';

/** One Kafka record, as much of it as decoding needs. */
export interface KafkaRecord {
  topic: string;
  partition: number;
  offset: string;
  /** Record timestamp, epoch milliseconds as text (kafkajs' `message.timestamp`). */
  timestamp: string;
  value: Buffer | null;
}

export type Decoded =
  | { kind: 'change'; change: SourceChange }
  /** Nothing to do: a tombstone, a Debezium truncate or logical message. */
  | { kind: 'skip'; why: string }
  | { kind: 'bad'; bad: BadInput };

/** Debezium's default stand-in for an unchanged TOASTed column (REPLICA IDENTITY DEFAULT). */
export const DEBEZIUM_UNAVAILABLE = '__debezium_unavailable_value';

/** Parked raw values are cut here: enough to see the problem, not a copy of a 10 MB record. */
const RAW_LIMIT = 64 * 1024;

export function streamOf(topic: string, partition: number): string {
  return `${topic}/${partition}`;
}

/** Position of one record for events and logs: "orders/2@1041". */
export function positionOf(record: Pick<KafkaRecord, 'topic' | 'partition' | 'offset'>): string {
  return `${record.topic}/${record.partition}@${record.offset}`;
}

/**
 * Turns one record into a change for the classifier, or into bad input with the reason.
 * Pure: the same record always decodes the same way.
 */
export function decodeRecord(topic: KafkaTopicConfig, record: KafkaRecord): Decoded {
  if (record.value === null || record.value.length === 0) return { kind: 'skip', why: 'tombstone' };
  const text = record.value.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return bad(record, `not JSON: ${err instanceof Error ? err.message : String(err)}`, text);
  }
  const result = topic.format === 'debezium' ? debezium(value, topic.table, record) : topic.format === 'json' ? jsonRow(value, topic, record) : visit(value, topic, record);
  if (typeof result === 'string') return bad(record, result, text);
  return result;
}

function bad(record: KafkaRecord, reason: string, raw: string): Decoded {
  return {
    kind: 'bad',
    bad: {
      stream: streamOf(record.topic, record.partition),
      position: record.offset,
      reason,
      raw: raw.length > RAW_LIMIT ? `${raw.slice(0, RAW_LIMIT)}… [${raw.length} chars, cut]` : raw,
    },
  };
}

// ---------------------------------------------------------------------------------------
// Debezium change events

const DEBEZIUM_OPS: Record<string, SourceChange['op'] | null> = { c: 'insert', r: 'insert', u: 'update', d: 'delete', t: null, m: null };

function debezium(value: unknown, table: string, record: KafkaRecord): Decoded | string {
  let envelope = value;
  let schema: unknown;
  // JsonConverter with schemas.enable=true wraps every value as {schema, payload}.
  if (isObject(envelope) && 'payload' in envelope && 'schema' in envelope) {
    schema = envelope.schema;
    envelope = envelope.payload;
    if (envelope === null) return { kind: 'skip', why: 'tombstone' };
  }
  if (!isObject(envelope)) return `Debezium record: expected an object with "op", "before", "after", got ${describe(envelope)}`;
  if (typeof envelope.op !== 'string') {
    return 'after' in envelope || 'before' in envelope
      ? 'Debezium record: "op" is missing'
      : `Debezium record: not a change event (no "op", "before" or "after"; keys: ${Object.keys(envelope).slice(0, 8).join(', ') || 'none'})`;
  }
  const op = DEBEZIUM_OPS[envelope.op];
  if (op === undefined) return `Debezium record: unknown op "${envelope.op}" (expected c, r, u or d)`;
  if (op === null) return { kind: 'skip', why: `Debezium op "${envelope.op}"` };
  const before = envelope.before ?? null;
  const after = envelope.after ?? null;
  if (before !== null && !isObject(before)) return `Debezium record: "before" must be an object or null, got ${describe(before)}`;
  if (after !== null && !isObject(after)) return `Debezium record: "after" must be an object or null, got ${describe(after)}`;
  if (op !== 'delete' && after === null) return `Debezium record: op "${envelope.op}" without an "after" row`;

  const types = fieldTypes(schema);
  const afterRow = after ? convertRow(after, types.after) : null;
  const beforeRow = before ? convertRow(before, types.before) : null;
  const source = isObject(envelope.source) ? envelope.source : {};
  const committedAt = epochMs(source.ts_ms) ?? epochMs(envelope.ts_ms) ?? recordTime(record);
  const change: SourceChange = {
    table,
    op,
    after: afterRow?.row ?? null,
    before: beforeRow?.row ?? null,
    position: positionOf(record),
    parkAs: { stream: streamOf(record.topic, record.partition), position: record.offset },
    committedAt,
  };
  if (afterRow?.unknown.length) change.unknownColumns = afterRow.unknown;
  return { kind: 'change', change };
}

interface FieldType {
  type?: string;
  name?: string;
  parameters?: Record<string, unknown>;
}

/** Column types of `before` and `after`, when the record carries its Connect schema. */
function fieldTypes(schema: unknown): { before: Map<string, FieldType>; after: Map<string, FieldType> } {
  const out = { before: new Map<string, FieldType>(), after: new Map<string, FieldType>() };
  if (!isObject(schema) || !Array.isArray(schema.fields)) return out;
  for (const f of schema.fields) {
    if (!isObject(f) || (f.field !== 'before' && f.field !== 'after') || !Array.isArray(f.fields)) continue;
    const map = out[f.field];
    for (const c of f.fields) {
      if (!isObject(c) || typeof c.field !== 'string') continue;
      map.set(c.field, {
        ...(typeof c.type === 'string' ? { type: c.type } : {}),
        ...(typeof c.name === 'string' ? { name: c.name } : {}),
        ...(isObject(c.parameters) ? { parameters: c.parameters } : {}),
      });
    }
  }
  return out;
}

/**
 * A Debezium row in the shape the Postgres source produces, so both sources put the same
 * row into events: decimals as exact text, int64 as text, `timestamp` as Postgres' own text,
 * `timestamptz` as ISO-8601 UTC. Unchanged TOAST placeholders become unknown columns.
 */
function convertRow(row: Record<string, unknown>, types: Map<string, FieldType>): { row: Row; unknown: string[] } {
  const out: Row = {};
  const unknown: string[] = [];
  for (const [column, value] of Object.entries(row)) {
    if (value === DEBEZIUM_UNAVAILABLE) {
      unknown.push(column);
      continue;
    }
    const type = types.get(column);
    out[column] = type ? convertValue(value as JsonValue, type) : (value as JsonValue);
  }
  return { row: out, unknown };
}

function convertValue(value: JsonValue, type: FieldType): JsonValue {
  if (value === null) return null;
  try {
    switch (type.name) {
      case 'org.apache.kafka.connect.data.Decimal':
        return typeof value === 'string' ? decimalText(value, Number(type.parameters?.scale ?? 0)) : value;
      case 'io.debezium.data.VariableScaleDecimal':
        return isObject(value) && typeof value.value === 'string' ? decimalText(value.value, Number(value.scale ?? 0)) : value;
      case 'io.debezium.time.Date':
      case 'org.apache.kafka.connect.data.Date':
        return typeof value === 'number' ? new Date(value * 86_400_000).toISOString().slice(0, 10) : value;
      case 'io.debezium.time.Timestamp':
      case 'org.apache.kafka.connect.data.Timestamp':
        return typeof value === 'number' ? localTimestamp(BigInt(value) * 1000n) : value;
      case 'io.debezium.time.MicroTimestamp':
        return typeof value === 'number' ? localTimestamp(BigInt(value)) : value;
      case 'io.debezium.time.NanoTimestamp':
        return typeof value === 'number' ? localTimestamp(BigInt(value) / 1000n) : value;
      case 'io.debezium.time.ZonedTimestamp': {
        const ms = typeof value === 'string' ? Date.parse(value) : NaN;
        return Number.isNaN(ms) ? value : new Date(ms).toISOString();
      }
      default:
        // node-pg reads int8 as text; keep the two sources alike.
        // An int64 beyond 2^53 stays a number: its digits are already lost, and whoever reads it refuses it.
        return type.type === 'int64' && typeof value === 'number' && Number.isSafeInteger(value) && type.name === undefined ? String(value) : value;
    }
  } catch {
    return value;
  }
}

/** Connect's Decimal: base64 of the unscaled value, big-endian two's complement. */
export function decimalText(base64: string, scale: number): string {
  const bytes = Buffer.from(base64, 'base64');
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  if (bytes.length > 0 && bytes[0]! & 0x80) n -= 1n << BigInt(bytes.length * 8);
  const negative = n < 0n;
  let digits = (negative ? -n : n).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return negative ? `-${digits}` : digits;
}

/** Microseconds since the epoch as Postgres prints a `timestamp without time zone`. */
function localTimestamp(micros: bigint): string {
  const ms = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  const iso = new Date(Number(ms)).toISOString(); // 2024-05-01T12:00:00.123Z
  const frac = (((micros % 1_000_000n) + 1_000_000n) % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${frac ? `.${frac}` : ''}`;
}

// ---------------------------------------------------------------------------------------
// Plain JSON rows

function jsonRow(value: unknown, topic: Extract<KafkaTopicConfig, { format: 'json' }>, record: KafkaRecord): Decoded | string {
  if (!isObject(value)) return `JSON row: expected an object (one ${topic.table} row), got ${describe(value)}`;
  return {
    kind: 'change',
    change: {
      table: topic.table,
      op: topic.op === 'insert' ? 'insert' : 'update',
      after: value as Row,
      before: null,
      position: positionOf(record),
      parkAs: { stream: streamOf(record.topic, record.partition), position: record.offset },
      committedAt: recordTime(record),
    },
  };
}

// ---------------------------------------------------------------------------------------
// Page visits

function visit(value: unknown, topic: VisitTopicConfig, record: KafkaRecord): Decoded | string {
  if (!isObject(value)) return `visit: expected a JSON object, got ${describe(value)}`;
  const f = topic.fields;
  const read = (path: string): string | undefined | { error: string } => {
    const v = lookup(value, path);
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) return { error: `visit: field "${path}" is the number ${String(v)}, beyond 2^53, so its exact digits are lost; publish it as a string` };
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    if (typeof v !== 'string') return { error: `visit: field "${path}" must be text, got ${describe(v)}` };
    const s = v.trim();
    return s === '' ? undefined : s;
  };
  const fields = {
    visitId: read(f.visitId),
    page: read(f.page),
    visitorPhone: read(f.visitorPhone),
    visitorLogonId: read(f.visitorLogonId),
    sharerPhone: read(f.sharerPhone),
    sharerLogonId: read(f.sharerLogonId),
    projectId: read(f.projectId),
  };
  for (const v of Object.values(fields)) if (typeof v === 'object') return v.error;
  const s = fields as { [K in keyof typeof fields]: string | undefined };

  if (!s.page) return `visit: page is missing (field "${f.page}")`;
  const page = Object.hasOwn(topic.pages, s.page) ? topic.pages[s.page]! : s.page;
  if (!isVisitCode(page)) {
    const aliases = Object.keys(topic.pages);
    return `visit: unknown page "${s.page}" (expected CONTRACT_DETAIL_PAGE or SHARE_LANDING_PAGE${aliases.length ? ` or one of ${aliases.join(', ')}` : ''})`;
  }
  const visitor = user(s.visitorPhone, s.visitorLogonId);
  if (!visitor) return `visit: no visitor (neither "${f.visitorPhone}" nor "${f.visitorLogonId}" is set)`;
  const sharer = user(s.sharerPhone, s.sharerLogonId);

  let visitedAt: string | undefined;
  const rawTime = lookup(value, f.visitedAt);
  if (rawTime !== undefined && rawTime !== null && rawTime !== '') {
    const ms = typeof rawTime === 'number' ? rawTime : typeof rawTime === 'string' ? Date.parse(rawTime) : NaN;
    if (!Number.isFinite(ms)) return `visit: "${f.visitedAt}" is not a time (ISO-8601 or epoch milliseconds): ${JSON.stringify(rawTime)}`;
    visitedAt = new Date(ms).toISOString();
  }

  const visitRecord: VisitRecord = {
    // Without a visit id, the record's own coordinates are its identity: a replay of the
    // same record yields the same event, and two records never share one.
    visitId: s.visitId ?? positionOf(record),
    page,
    visitor,
    ...(sharer ? { sharer } : {}),
    ...(s.projectId ? { projectId: s.projectId } : {}),
    ...(visitedAt ? { visitedAt } : {}),
  };
  return {
    kind: 'change',
    change: { table: record.topic, op: 'insert', after: null, before: null, position: positionOf(record), parkAs: { stream: streamOf(record.topic, record.partition), position: record.offset }, committedAt: recordTime(record), visit: visitRecord },
  };
}

function user(phone: string | undefined, logonId: string | undefined): UserRef | undefined {
  if (phone) return { type: 'PHONE', id: phone };
  if (logonId) return { type: 'ALIPAY_LOGON_ID', id: logonId };
  return undefined;
}

/** `a.b.c` walks into nested objects; a key that itself contains dots is found first. */
function lookup(obj: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(obj, path)) return obj[path];
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (!isObject(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = cur[part];
  }
  return cur;
}

// ---------------------------------------------------------------------------------------

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `a ${typeof v}`;
}

function epochMs(v: unknown): string | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? new Date(v).toISOString() : undefined;
}

/** The record's timestamp (producer create time or broker append time). */
function recordTime(record: KafkaRecord): string {
  return epochMs(Number(record.timestamp)) ?? new Date().toISOString();
}
