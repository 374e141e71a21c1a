import pg from 'pg';
import { PgoutputPlugin, type LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import type { JsonValue, Row } from '../../../src/core/events.js';
import type { SourceChange } from '../../../src/core/source.js';
import { keepText, toJson } from './decode.js';

/**
 * What the stream hands the session: a row change ready for the pipeline, a transaction
 * boundary, or one of the library's messages the session reads as they are (relation, type,
 * origin, truncate, message).
 */
export type StreamMessage =
  | SourceChange
  | { tag: 'begin'; commitLsn: bigint | null }
  | { tag: 'commit'; commitEndLsn: bigint | null }
  | Exclude<Pgoutput.Message, { tag: 'begin' | 'commit' | 'insert' | 'update' | 'delete' }>;

type ReplicationPlugin = Parameters<LogicalReplicationService['subscribe']>[0];

/** Microseconds between the Unix epoch and 2000-01-01, the protocol's epoch. */
const PG_EPOCH_MICROS = 946_684_800_000_000n;

// The parsers node-pg has when this module loads (the project registers only 1114, in
// decode.ts). A column whose parser is one of them is converted here without the parser's
// intermediate value; a parser replaced later (setTypeParser) is simply not recognised, and
// its columns take the generic path.
const TEXT = pg.types.getTypeParser(25);
const INT8 = pg.types.getTypeParser(20);
const INTEGER = pg.types.getTypeParser(23);
const DATE = pg.types.getTypeParser(1184);

/** How a column's text becomes its JSON value: each one yields exactly `toJson(parser(text))`. */
const enum Convert {
  /** text, varchar, numeric, int8, timestamp…: the text itself. */
  Text,
  /** int2, int4, oid: parseInt. */
  Integer,
  /** timestamptz: postgres-date's Date, as ISO-8601. */
  Timestamptz,
  Generic,
}

interface Relation {
  table: string;
  names: string[];
  convert: Convert[];
  parsers: Array<(text: string) => unknown>;
  key: boolean[];
  /**
   * A row of every column from their values in order: an object literal of the column
   * names, so each row is allocated whole with its final shape. Adding the properties one by
   * one through a computed name (as decodeTuple did) goes to the runtime for every map
   * transition: measured at ten times the cost, and twice the garbage.
   */
  build: ((values: ReadonlyArray<JsonValue | undefined>) => Row) | null;
}

/** Raw values of an old tuple by column: its text, a binary value, null, or undefined (unchanged TOAST). */
type RawTuple = Array<string | Buffer | null | undefined>;

const textDecoder = new TextDecoder();

/**
 * From this length V8 makes a slice of a string a view that keeps the whole string alive:
 * the message text would then live as long as the row (about 300 bytes more per change
 * held in a batch and in the ledger's pending rows).
 */
const SLICED = 13;

/** The values of the tuple being read, by column (decoding is synchronous: one tuple at a time). */
const values: Array<JsonValue | undefined> = [];

/**
 * pgoutput (protocol 1) straight to the pipeline's row changes. The library's parser builds
 * a tuple of parsed values per change (a TextDecoder call and a buffer view per column, Date
 * objects for timestamps) that `decodeTuple` then walks again into JSON values; this decodes
 * begin, commit, insert, update and delete in one pass into the same rows, in the same column
 * order, with the same unchanged-TOAST handling, and leaves every other message, and the
 * relation cache, to the library's parser.
 */
export class PgoutputStream implements ReplicationPlugin {
  readonly name = 'pgoutput';
  private readonly reference: PgoutputPlugin;
  private readonly relations = new Map<number, Relation>();
  /** The open transaction's position and commit time, shared by its changes. */
  private position = '';
  private committedAt = '';

  constructor(readonly options: Pgoutput.Options) {
    this.reference = new PgoutputPlugin(options);
  }

  start(client: pg.Client, slotName: string, lastLsn: string): Promise<unknown> {
    return this.reference.start(client, slotName, lastLsn);
  }

  parse(buf: Buffer): StreamMessage {
    switch (buf[0]) {
      case 0x42 /* B */:
        return this.begin(buf);
      case 0x43 /* C */:
        need(buf, 26);
        return { tag: 'commit', commitEndLsn: lsnAt(buf, 10) };
      case 0x49 /* I */:
      case 0x55 /* U */:
      case 0x44 /* D */:
        return new TupleReader(buf).change(this.relation(buf), this.position, this.committedAt);
      case 0x52 /* R */: {
        const msg = this.reference.parse(buf) as Pgoutput.MessageRelation;
        this.relations.set(msg.relationOid, plan(msg));
        return msg;
      }
      default:
        return this.reference.parse(buf) as StreamMessage;
    }
  }

  private begin(buf: Buffer): StreamMessage {
    need(buf, 21);
    const commitLsn = lsnAt(buf, 1);
    this.position = commitLsn === null ? '' : `${buf.readUInt32BE(1).toString(16).toUpperCase()}/${buf.readUInt32BE(5).toString(16).toUpperCase()}`;
    const micros = ((BigInt(buf.readUInt32BE(9)) << 32n) | BigInt(buf.readUInt32BE(13))) + PG_EPOCH_MICROS;
    this.committedAt = new Date(Number(micros / 1000n)).toISOString();
    return { tag: 'begin', commitLsn };
  }

  private relation(buf: Buffer): Relation {
    need(buf, 5);
    const relation = this.relations.get(buf.readInt32BE(1));
    if (!relation) throw Error('missing relation');
    return relation;
  }
}

function plan(msg: Pgoutput.MessageRelation): Relation {
  const names: string[] = [];
  const convert: Convert[] = [];
  const parsers: Array<(text: string) => unknown> = [];
  const key: boolean[] = [];
  for (const column of msg.columns) {
    const parser = column.parser as (text: string) => unknown;
    names.push(column.name);
    parsers.push(parser);
    key.push((column.flags & 1) === 1);
    convert.push(
      parser === TEXT || parser === INT8 || parser === keepText
        ? Convert.Text
        : parser === INTEGER
          ? Convert.Integer
          : parser === DATE && column.typeOid === 1184
            ? Convert.Timestamptz
            : Convert.Generic,
    );
  }
  return { table: `${msg.schema}.${msg.name}`, names, convert, parsers, key, build: literal(names) };
}

/**
 * The names are quoted by JSON.stringify and the values indexed, so nothing of the relation
 * becomes code. An object literal treats a `__proto__` key as assignment does. Where code
 * generation is disallowed (--disallow-code-generation-from-strings), rows are assigned.
 */
function literal(names: readonly string[]): Relation['build'] | null {
  try {
    return new Function('v', `return {${names.map((name, i) => `${JSON.stringify(name)}: v[${i}]`).join(', ')}};`) as Relation['build'];
  } catch {
    return null;
  }
}

function need(buf: Buffer, n: number): void {
  if (buf.length < n) throw Error('unexpected end of message');
}

/** An LSN at `at`, or null for 0/0 (as the library reports it). */
function lsnAt(buf: Buffer, at: number): bigint | null {
  const hi = buf.readUInt32BE(at);
  const lo = buf.readUInt32BE(at + 4);
  return hi === 0 && lo === 0 ? null : (BigInt(hi) << 32n) | BigInt(lo);
}

/** One insert, update or delete message. */
class TupleReader {
  /** After the tag and the relation id: the submessage byte. */
  private p = 5;

  constructor(private readonly buf: Buffer) {}

  change(rel: Relation, position: string, committedAt: string): SourceChange {
    const buf = this.buf;
    const table = rel.table;
    const sub = this.byte();
    if (buf[0] === 0x49 /* I */) {
      const unknown: string[] = [];
      const after = this.tuple(rel, unknown, null, null);
      return { table, position, committedAt, op: 'insert', after, before: null, unknownColumns: unknown };
    }
    if (buf[0] === 0x55 /* U */) {
      let before: Row | null = null;
      let old: RawTuple | null = null;
      if (sub === 0x4b /* K */) {
        this.keyTuple(rel);
        this.byte();
      } else if (sub === 0x4f /* O */) {
        old = [];
        before = this.tuple(rel, null, null, old);
        this.byte();
      } else if (sub !== 0x4e /* N */) {
        throw Error(`unknown submessage key ${String.fromCharCode(sub)}`);
      }
      const unknown: string[] = [];
      const after = this.tuple(rel, unknown, old, null);
      return { table, position, committedAt, op: 'update', after, before, unknownColumns: unknown };
    }
    let before: Row;
    if (sub === 0x4b /* K */) before = this.keyTuple(rel);
    else if (sub === 0x4f /* O */) before = this.tuple(rel, null, null, null);
    else throw Error(`unknown submessage key ${String.fromCharCode(sub)}`);
    return { table, position, committedAt, op: 'delete', after: null, before };
  }

  /**
   * A tuple as a row, as `decodeTuple` makes it of the library's tuple: columns in order, an
   * unchanged TOAST value (`u`) taken from the old tuple when there is one, else listed in
   * `unknown` and left out of the row. `keep` receives the raw values for the new tuple.
   */
  private tuple(rel: Relation, unknown: string[] | null, old: RawTuple | null, keep: RawTuple | null): Row {
    const buf = this.buf;
    const { names, convert } = rel;
    const n = this.int16();
    let complete = n === names.length && rel.build !== null;
    for (let i = 0; i < n; i++) {
      if (i >= names.length) throw new TypeError(`tuple has more columns than relation ${rel.table}`);
      const kind = this.byte();
      let value: JsonValue | undefined;
      if (kind === 0x74 /* t */) {
        const len = this.int32();
        const start = this.p;
        const end = start + len;
        if (len < 0 || end > buf.length) throw Error('unexpected end of message');
        this.p = end;
        let ascii = true;
        for (let j = start; j < end; j++) {
          if (buf[j]! > 0x7f) {
            ascii = false;
            break;
          }
        }
        const s = !ascii ? utf8(buf, start, end) : len < SLICED ? shortAscii(buf, start, len) : buf.toString('latin1', start, end);
        if (keep) keep.push(s);
        value = convert[i] === Convert.Text ? s : this.convert(rel, i, s);
      } else if (kind === 0x6e /* n */) {
        if (keep) keep.push(null);
        value = null;
      } else if (kind === 0x75 /* u */) {
        if (keep) keep.push(undefined);
        value = old ? fromRaw(rel, i, old[i]) : undefined;
      } else if (kind === 0x62 /* b */) {
        const len = this.int32();
        const start = this.p;
        if (len < 0 || start + len > buf.length) throw Error('unexpected end of message');
        this.p = start + len;
        const bytes = buf.subarray(start, start + len);
        if (keep) keep.push(bytes);
        value = `\\x${bytes.toString('hex')}`;
      } else {
        throw Error(`unknown attribute kind ${String.fromCharCode(kind)}`);
      }
      values[i] = value;
      if (value === undefined) complete = false;
    }
    if (complete) return rel.build!(values);
    const row: Row = {};
    for (let i = 0; i < n; i++) {
      const value = values[i];
      if (value === undefined) unknown?.push(names[i]!);
      else row[names[i]!] = value;
    }
    // decodeTuple lists unknown columns in the tuple object's key order, which puts
    // integer-like names first; an object of the same names has that order.
    if (unknown && unknown.length > 1) {
      const ordered = Object.keys(Object.fromEntries(unknown.map((c) => [c, 0])));
      unknown.splice(0, unknown.length, ...ordered);
    }
    return row;
  }

  /** A key-only tuple: the replica identity columns that are not null, as the library keeps them. */
  private keyTuple(rel: Relation): Row {
    const raw: RawTuple = [];
    this.tuple(rel, null, null, raw);
    const row: Row = {};
    for (let i = 0; i < raw.length; i++) {
      if (!rel.key[i]) continue;
      const value = fromRaw(rel, i, raw[i]);
      if (value !== null && value !== undefined) row[rel.names[i]!] = value;
    }
    return row;
  }

  private convert(rel: Relation, i: number, s: string): JsonValue | undefined {
    const how = rel.convert[i];
    if (how === Convert.Integer) {
      const n = parseInt(s, 10);
      return Number.isFinite(n) ? n : String(n);
    }
    if (how === Convert.Timestamptz) {
      const iso = timestamptz(s);
      if (iso !== undefined) return iso;
    }
    return toJson(rel.parsers[i]!(s));
  }

  private byte(): number {
    if (this.p >= this.buf.length) throw Error('unexpected end of message');
    return this.buf[this.p++]!;
  }

  private int16(): number {
    if (this.p + 2 > this.buf.length) throw Error('unexpected end of message');
    const v = (this.buf[this.p]! << 8) | this.buf[this.p + 1]!;
    this.p += 2;
    return v;
  }

  private int32(): number {
    if (this.p + 4 > this.buf.length) throw Error('unexpected end of message');
    const v = this.buf.readInt32BE(this.p);
    this.p += 4;
    return v;
  }
}

/** A raw value of the old tuple as the new tuple's value for that column. */
function fromRaw(rel: Relation, i: number, raw: string | Buffer | null | undefined): JsonValue | undefined {
  if (raw === undefined || raw === null) return raw;
  if (typeof raw !== 'string') return `\\x${raw.toString('hex')}`;
  if (rel.convert[i] === Convert.Text) return raw;
  return toJson(rel.parsers[i]!(raw));
}

/**
 * A short ASCII value (under SLICED bytes) as a string made in one builtin call, with no call
 * into the runtime. (A copy out of the whole message read as latin1, as before, cost that
 * message's text, about 300 bytes of garbage per change, for values of a few bytes.)
 */
function shortAscii(b: Buffer, i: number, len: number): string {
  const f = String.fromCharCode;
  switch (len) {
    case 0: return '';
    case 1: return f(b[i]!);
    case 2: return f(b[i]!, b[i + 1]!);
    case 3: return f(b[i]!, b[i + 1]!, b[i + 2]!);
    case 4: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!);
    case 5: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!);
    case 6: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!);
    case 7: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!);
    case 8: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!);
    case 9: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!);
    case 10: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!, b[i + 9]!);
    case 11: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!, b[i + 9]!, b[i + 10]!);
    case 12: return f(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!, b[i + 9]!, b[i + 10]!, b[i + 11]!);
    default: return b.toString('latin1', i, i + len);
  }
}

/**
 * UTF-8 as the library's TextDecoder reads it: the same replacement of invalid sequences as
 * Buffer's decoder, and a leading byte-order mark dropped.
 */
function utf8(buf: Buffer, start: number, end: number): string {
  if (end - start >= 3 && buf[start] === 0xef && buf[start + 1] === 0xbb && buf[start + 2] === 0xbf) return textDecoder.decode(buf.subarray(start, end));
  return buf.toString('utf8', start, end);
}

const digit = (s: string, i: number): number => {
  const d = s.charCodeAt(i) - 48;
  return d >= 0 && d <= 9 ? d : NaN;
};
const two = (s: string, i: number): number => digit(s, i) * 10 + digit(s, i + 1);

/**
 * Postgres' ISO output of a timestamptz ("2026-12-01 19:30:00.123456+08", "…-03:30") as
 * `toJson(parseDate(text))` renders it: the same fields and the same arithmetic as
 * postgres-date (fraction as 1000 × parseFloat, Date.UTC, minus the offset), without its
 * regular expressions. Anything else (BC, infinity, years outside 100–9999, other
 * DateStyles) returns undefined, for postgres-date itself.
 */
export function timestamptz(s: string): string | undefined {
  const len = s.length;
  if (len < 22 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 32 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return undefined;
  const year = two(s, 0) * 100 + two(s, 2);
  const month = two(s, 5);
  const day = two(s, 8);
  const hour = two(s, 11);
  const minute = two(s, 14);
  const second = two(s, 17);
  if (!(year >= 100)) return undefined; // NaN included; 0–99 would be 1900–1999 to Date.UTC
  let i = 19;
  let ms = 0;
  if (s.charCodeAt(i) === 46 /* . */) {
    let frac = 0;
    let scale = 1;
    for (i++; i < len && scale < 1e6; i++) {
      const d = digit(s, i);
      if (Number.isNaN(d)) break;
      frac = frac * 10 + d;
      scale *= 10;
    }
    if (scale === 1) return undefined;
    // A correctly rounded division of exact integers: the double parseFloat gives.
    ms = 1000 * (frac / scale);
  }
  const sign = s.charCodeAt(i);
  if (sign !== 43 /* + */ && sign !== 45 /* - */) return undefined;
  let offset = two(s, i + 1) * 3600;
  i += 3;
  if (i < len) {
    if (s.charCodeAt(i) !== 58) return undefined;
    offset += two(s, i + 1) * 60;
    i += 3;
    if (i < len) {
      if (s.charCodeAt(i) !== 58) return undefined;
      offset += two(s, i + 1);
      i += 3;
    }
  }
  if (i !== len || Number.isNaN(offset)) return undefined;
  const t = Date.UTC(year, month - 1, day, hour, minute, second, ms) - (sign === 45 ? -offset : offset) * 1000;
  return Number.isNaN(t) ? undefined : isoString(t);
}

const MS_PER_DAY = 86_400_000;
/** 0000-01-01 and 10000-01-01 UTC: the years toISOString writes with four digits. */
const ISO_MIN = -62_167_219_200_000;
const ISO_END = 253_402_300_800_000;

/** The character code of the last decimal digit of `n`'s integral part. */
const d = (n: number): number => 48 + (Math.floor(n) % 10);

/**
 * `new Date(t).toISOString()` for an integral time in years 0–9999, which costs a runtime
 * call and a formatted print in V8 (most of the decoding of a timestamptz); the civil date
 * is Howard Hinnant's days-to-civil. One fromCharCode makes a flat string: concatenation
 * would leave a tree of a dozen cons strings in every row until it is serialised.
 */
function isoString(t: number): string {
  if (!(t >= ISO_MIN && t < ISO_END) || !Number.isInteger(t)) return new Date(t).toISOString();
  const days = Math.floor(t / MS_PER_DAY);
  let rest = t - days * MS_PER_DAY;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(rest / 3_600_000);
  rest -= hour * 3_600_000;
  const minute = Math.floor(rest / 60_000);
  rest -= minute * 60_000;
  const second = Math.floor(rest / 1000);
  const ms = rest - second * 1000;
  return String.fromCharCode(
    d(year / 1000), d(year / 100), d(year / 10), d(year), 45, d(month / 10), d(month), 45, d(day / 10), d(day), 84,
    d(hour / 10), d(hour), 58, d(minute / 10), d(minute), 58, d(second / 10), d(second), 46, d(ms / 100), d(ms / 10), d(ms), 90,
  );
}
