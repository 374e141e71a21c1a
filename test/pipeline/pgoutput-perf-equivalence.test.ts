/**
 * The stream decoder (connectors/sources/postgres/pgoutput.ts) replaces pg-logical-replication's
 * parser plus `decodeTuple` on the hot path for speed; these tests hold it to exactly what
 * that pair produced: the same changes, key for key and in the same order, and an error
 * wherever the library threw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { decodeTuple, toJson } from '../../connectors/sources/postgres/decode.js';
import { formatLsn, parseLsn } from '../../connectors/sources/postgres/lsn.js';
import { PgoutputStream, timestamptz, type StreamMessage } from '../../connectors/sources/postgres/pgoutput.js';
import type { SourceChange } from '../../src/core/source.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

/** What the session made of each message before the stream decoder (its former toChange). */
function referenceDecoder() {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['p'] });
  let position = '';
  let committedAt = '';
  return (buf: Buffer): unknown => {
    const msg = plugin.parse(buf);
    switch (msg.tag) {
      case 'begin':
        position = msg.commitLsn ? formatLsn(parseLsn(msg.commitLsn)) : '';
        committedAt = new Date(Number(BigInt(msg.commitTime as bigint) / 1000n)).toISOString();
        return { tag: 'begin', commitLsn: msg.commitLsn === null ? null : parseLsn(msg.commitLsn) };
      case 'commit':
        return { tag: 'commit', commitEndLsn: msg.commitEndLsn ? parseLsn(msg.commitEndLsn) : null };
      case 'insert':
      case 'update':
      case 'delete':
        return toChange(msg, position, committedAt);
      default:
        return msg;
    }
  };
}

function toChange(msg: Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete, position: string, committedAt: string): SourceChange {
  const table = `${msg.relation.schema}.${msg.relation.name}`;
  const base = { table, position, committedAt };
  if (msg.tag === 'insert') {
    const after = decodeTuple(msg.new);
    return { ...base, op: 'insert', after: after?.row ?? null, before: null, unknownColumns: after?.unknown };
  }
  if (msg.tag === 'update') {
    const after = decodeTuple(msg.new);
    return { ...base, op: 'update', after: after?.row ?? null, before: decodeTuple(msg.old)?.row ?? null, unknownColumns: after?.unknown };
  }
  return { ...base, op: 'delete', after: null, before: decodeTuple(msg.old ?? msg.key)?.row ?? null };
}

/** Values, own keys in order and prototypes, recursively: what JSON.stringify and the ledger see, and more. */
function shape(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return typeof v === 'bigint' ? `${v}n` : v;
  if (Array.isArray(v)) return v.map(shape);
  const proto = Object.getPrototypeOf(v);
  return { proto: proto === Object.prototype ? 'Object' : proto === null ? 'null' : shape(proto), keys: Reflect.ownKeys(v).map(String), values: Object.values(v).map(shape) };
}

/** Feeds the same messages to both decoders and expects the same outcome for each. */
function expectSame(messages: Buffer[]): number {
  const reference = referenceDecoder();
  const stream = new PgoutputStream({ protoVersion: 1, publicationNames: ['p'] });
  let changes = 0;
  for (const buf of messages) {
    let want: unknown;
    let got: StreamMessage | undefined;
    let wantError = false;
    let gotError = false;
    try {
      want = reference(buf);
    } catch {
      wantError = true;
    }
    try {
      got = stream.parse(buf);
    } catch {
      gotError = true;
    }
    expect({ error: gotError, buf: buf.toString('hex') }).toEqual({ error: wantError, buf: buf.toString('hex') });
    if (wantError) continue;
    if (got && !('tag' in got)) changes++;
    if (got && 'tag' in got && got.tag === 'relation') continue; // the library's own message, as it was
    expect(shape(got)).toEqual(shape(want));
    expect(JSON.stringify(got, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).toBe(JSON.stringify(want, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
  }
  return changes;
}

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('pgo');
});

afterAll(async () => {
  await db?.drop();
});

describe('pgoutput stream decoder', () => {
  it('decodes what Postgres sends exactly as the library and decodeTuple did, under several time zones and date styles', async () => {
    const big = Array.from({ length: 5000 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join('');
    await db.pool.query(`
      CREATE TABLE kinds (
        id bigserial PRIMARY KEY, t text, vc varchar(20), ch char(3), n numeric(12,2), i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
        b bool, ts timestamp, tstz timestamptz, d date, tm time, j json, jb jsonb, by bytea, ai int4[], at text[], u uuid, iv interval,
        notes text, "1" text, "__proto__" jsonb, "10" text);
      ALTER TABLE kinds ALTER COLUMN notes SET STORAGE EXTERNAL;
      ALTER TABLE kinds ALTER COLUMN "1" SET STORAGE EXTERNAL;
      ALTER TABLE kinds ALTER COLUMN "10" SET STORAGE EXTERNAL;
      CREATE TABLE fulls (id int PRIMARY KEY, s text, notes text, "2" text);
      ALTER TABLE fulls REPLICA IDENTITY FULL;
      ALTER TABLE fulls ALTER COLUMN notes SET STORAGE EXTERNAL;
      ALTER TABLE fulls ALTER COLUMN "2" SET STORAGE EXTERNAL;
      CREATE TABLE keyed (a text NOT NULL, b int NOT NULL, c text, at timestamptz);
      CREATE UNIQUE INDEX keyed_ab ON keyed (b, a);
      ALTER TABLE keyed REPLICA IDENTITY USING INDEX keyed_ab;
      CREATE PUBLICATION p FOR TABLE kinds, fulls, keyed;`);
    await db.pool.query(`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`);
    await db.pool.query(`SET TimeZone = 'Asia/Shanghai'`);
    const stamps = [
      '2026-12-01 19:30:00+08', '2026-12-01 19:30:00.5+08', '2026-12-01 19:30:00.123456+08', '2026-03-29 01:59:59.999999Z', '1999-12-31 23:59:59.0001-03:30',
      '0100-01-01 00:00:00+00', '0050-06-01 12:00:00+00', '9999-12-31 23:59:59.999999-12', '10000-01-01 00:00:00+00', '0044-03-15 12:00:00+00 BC',
      'infinity', '-infinity', '1970-01-01 00:00:00+00', '1900-01-01 00:00:00+00', '2026-06-30 23:59:59.07+05:45',
    ];
    const texts = ['plain', '万达影城 CBD 店', '\uFEFFwith a byte-order mark', '', ' padded ', 'emoji 🎬', 'a'.repeat(200), '\uFEFF'];
    for (let i = 0; i < stamps.length; i++) {
      await db.pool.query(
        `INSERT INTO kinds (t, vc, ch, n, i2, i4, i8, f4, f8, b, ts, tstz, d, tm, j, jb, by, ai, at, u, iv, notes, "1", "__proto__", "10")
         VALUES ($1, $2, 'ab', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '12:34:56.789', $13, $14, $15, $16, $17, gen_random_uuid(), '1 day 02:03:04', $18, $19, $20, $21)`,
        [
          texts[i % texts.length], texts[(i + 3) % texts.length]!.slice(0, 20), i % 3 ? `${i}.25` : null, i - 7, i * 1000 - 3, `${9007199254740993n + BigInt(i)}`,
          ['NaN', 'Infinity', '-Infinity', '1.5', '3.4e38'][i % 5], ['NaN', '-0', '1e308', '0.1', '-Infinity'][i % 5], i % 2 === 0,
          i % 4 ? '2026-12-01 19:30:00' : '0001-01-01 00:00:00 BC', stamps[i], ['2026-12-01', 'infinity', '0044-03-15 BC', '0050-01-01'][i % 4],
          i % 2 ? '{"n": 12345678901234567890, "x": [1, 2.5, "s"], "__proto__": {"p": 1}}' : '[1e400, -1e400]', '{"b": 1, "a": {"10": 2, "2": 3}}',
          Buffer.from([0, 255, i]), `{${i},${i + 1},NULL}`, `{"a b","${texts[i % texts.length]!.replace(/"/g, '')}"}`,
          i % 2 ? big : null, i % 3 ? big : 'short', i % 2 ? '{"proto": true}' : i % 3 ? 'null' : '"s"', big,
        ],
      );
    }
    await db.pool.query(`INSERT INTO kinds (t) VALUES (NULL)`);
    // Unchanged TOAST columns (notes, "1", "10"): listed unknown, in the order decodeTuple listed them.
    await db.pool.query(`UPDATE kinds SET t = 'changed', tstz = now() WHERE id % 2 = 0`);
    await db.pool.query(`UPDATE kinds SET id = id + 1000 WHERE id = 3`); // a new key: the old key comes along
    await db.pool.query(`DELETE FROM kinds WHERE id % 3 = 0`);
    await db.pool.query(`INSERT INTO fulls VALUES (1, 'a', $1, $1), (2, NULL, $1, NULL), (3, 'c', NULL, $1)`, [big]);
    await db.pool.query(`UPDATE fulls SET s = 'changed'`);
    await db.pool.query(`UPDATE fulls SET id = id + 10 WHERE id = 1`);
    await db.pool.query(`DELETE FROM fulls WHERE id > 1`);
    await db.pool.query(`INSERT INTO keyed VALUES ('x', 1, 'c', now()), ('y', 2, NULL, '2026-01-01 00:00:00+00')`);
    await db.pool.query(`UPDATE keyed SET c = 'd'`);
    await db.pool.query(`UPDATE keyed SET b = b + 10`);
    await db.pool.query(`DELETE FROM keyed`);
    await db.pool.query(`TRUNCATE keyed`);

    let total = 0;
    for (const settings of [
      `SET TimeZone = 'UTC'`, `SET TimeZone = 'Asia/Shanghai'`, `SET TimeZone = 'America/St_Johns'`, `SET TimeZone = 'Asia/Kathmandu'`, `SET TimeZone = 'Europe/Amsterdam'`,
      `SET TimeZone = 'Africa/Monrovia'`, `SET DateStyle = 'SQL, DMY'`, `SET DateStyle = 'German'`, `SET DateStyle = 'Postgres, MDY'`,
    ]) {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        await c.query(settings);
        const { rows } = await c.query<{ data: Buffer }>(`SELECT data FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'p')`);
        total += expectSame(rows.map((r) => r.data));
      } finally {
        await c.end();
      }
    }
    expect(total).toBeGreaterThan(9 * 40);
  });

  it('matches on generated messages: every attribute kind, common types, odd bytes, odd names and cut-off messages', () => {
    let seed = 0x5eed;
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const cstr = (s: string) => Buffer.concat([Buffer.from(s), Buffer.from([0])]);
    const i16 = (n: number) => Buffer.from([(n >> 8) & 255, n & 255]);
    const i32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(n);
      return b;
    };
    const types = [25, 1043, 1700, 20, 21, 23, 26, 16, 700, 701, 1114, 1184, 1082, 114, 3802, 17, 1007, 2950];
    const textFor = (oid: number): Buffer => {
      const r = rand();
      if (r < 0.08) return Buffer.from(Array.from({ length: Math.floor(rand() * 6) }, () => pick([0xef, 0xbb, 0xbf, 0x80, 0xc3, 0xa9, 0xe4, 0xb8, 0x87, 0xff, 0x41, 0xf0, 0x9f])));
      const y = String(Math.floor(rand() * 10500)).padStart(4, '0');
      const frac = rand() < 0.5 ? '' : `.${String(Math.floor(rand() * 1e6)).padStart(6, '0').slice(0, 1 + Math.floor(rand() * 6))}`;
      const zone = pick(['+00', '+08', '-03:30', '+05:45', '-12', '+14', 'Z', '', '+0530', '+05:30:15', ' BC', '+00 BC']);
      const samples: Record<number, () => string> = {
        1184: () => (rand() < 0.1 ? pick(['infinity', '-infinity', 'garbage', '2026-12-01', '2026-13-45 25:61:61+00']) : `${y}-${String(1 + Math.floor(rand() * 12)).padStart(2, '0')}-${String(1 + Math.floor(rand() * 28)).padStart(2, '0')} ${String(Math.floor(rand() * 24)).padStart(2, '0')}:${String(Math.floor(rand() * 60)).padStart(2, '0')}:${String(Math.floor(rand() * 60)).padStart(2, '0')}${frac}${zone}`),
        21: () => pick(['0', '-32768', '32767', '12', 'x', '']),
        23: () => pick(['0', '-2147483648', '2147483647', '12', '1e3', '']),
        20: () => pick(['9223372036854775807', '-1', '0', '12']),
        26: () => pick(['4294967295', '0']),
        16: () => pick(['t', 'f', 'true', 'x']),
        700: () => pick(['NaN', 'Infinity', '-Infinity', '1.5', '-0']),
        701: () => pick(['NaN', '1e308', '0.1', '-Infinity']),
        114: () => pick(['{"a":1,"b":[1,2]}', '123456789012345678901', '1e400', '"s"', 'null', '{"__proto__":{"x":1}}']),
        3802: () => pick(['{"a": 1}', '[]', 'true']),
        1082: () => pick(['2026-12-01', 'infinity', '0044-03-15 BC', '0050-01-01']),
        17: () => pick(['\\x00ff', '\\x', 'abc']),
        1007: () => pick(['{1,2,NULL}', '{}']),
        1114: () => '2026-12-01 19:30:00',
      };
      return Buffer.from((samples[oid] ?? (() => pick(['plain', '万达影城', '\uFEFFbom', '', ' x ', 'a'.repeat(300)])))());
    };
    const messages: Buffer[] = [];
    const relations: Array<{ oid: number; columns: Array<{ name: string; oid: number; key: boolean }> }> = [];
    for (let r = 0; r < 6; r++) {
      const oid = r === 5 ? 40_000 : 16_384 + r;
      const n = 1 + Math.floor(rand() * 20);
      const columns = Array.from({ length: n }, (_, i) => ({ name: pick(['c', 'col', '1', '10', '2', '__proto__', 'constructor', 'toString', 'état', '007']) + (rand() < 0.7 ? `_${i}` : ''), oid: pick(types), key: rand() < 0.3 }));
      const unique = columns.filter((c, i) => columns.findIndex((d) => d.name === c.name) === i);
      relations.push({ oid, columns: unique });
      messages.push(
        Buffer.concat([Buffer.from('R'), i32(oid), cstr('public'), cstr(`t${r}`), Buffer.from(pick(['d', 'f', 'i', 'n'])), i16(unique.length),
          ...unique.flatMap((c) => [Buffer.from([c.key ? 1 : 0]), cstr(c.name), i32(c.oid), i32(-1)])]),
      );
    }
    const tuple = (columns: Array<{ oid: number }>, kinds = 'tttnub'): Buffer => {
      const n = rand() < 0.03 ? columns.length + 1 : rand() < 0.03 ? Math.max(0, columns.length - 1) : columns.length;
      const parts: Buffer[] = [i16(n)];
      for (let i = 0; i < n; i++) {
        const kind = pick(kinds.split(''));
        parts.push(Buffer.from(kind));
        if (kind === 't' || kind === 'b') {
          const v = textFor(columns[i]?.oid ?? 25);
          parts.push(i32(v.length), v);
        }
      }
      return Buffer.concat(parts);
    };
    const lsn = () => Buffer.concat([i32(rand() < 0.1 ? 0 : Math.floor(rand() * 16)), i32(rand() < 0.1 ? 0 : Math.floor(rand() * 2 ** 31))]);
    for (let k = 0; k < 4000; k++) {
      const rel = pick(relations);
      const r = rand();
      let msg: Buffer;
      if (r < 0.05) msg = Buffer.concat([Buffer.from('B'), lsn(), i32(Math.floor(rand() * 2 ** 31)), i32(Math.floor(rand() * 2 ** 31)), i32(k)]);
      else if (r < 0.1) msg = Buffer.concat([Buffer.from('C'), Buffer.from([0]), lsn(), lsn(), i32(0), i32(k)]);
      else if (r < 0.45) msg = Buffer.concat([Buffer.from('I'), i32(rel.oid), Buffer.from('N'), tuple(rel.columns)]);
      else if (r < 0.8) {
        const sub = pick(['N', 'K', 'O', 'X']);
        msg = Buffer.concat([Buffer.from('U'), i32(rel.oid), Buffer.from(sub), ...(sub === 'K' || sub === 'O' ? [tuple(rel.columns, sub === 'K' ? 'ttnn' : 'ttnub'), Buffer.from('N')] : []), tuple(rel.columns)]);
      } else if (r < 0.97) {
        const sub = pick(['K', 'O', 'Z']);
        msg = Buffer.concat([Buffer.from('D'), i32(rel.oid), Buffer.from(sub), tuple(rel.columns, sub === 'K' ? 'ttnnu' : 'ttnub')]);
      } else msg = Buffer.concat([Buffer.from('I'), i32(99), Buffer.from('N'), tuple(rel.columns)]);
      if (rand() < 0.05) msg = msg.subarray(0, Math.floor(rand() * msg.length));
      messages.push(msg);
    }
    expect(expectSame(messages)).toBeGreaterThan(2000);
  });

  it('reads timestamptz text exactly as postgres-date and toJson do', () => {
    const reference = (s: string) => toJson(pg.types.getTypeParser(1184)(s));
    let seed = 7;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const pad = (n: number, w: number) => String(n).padStart(w, '0');
    let fast = 0;
    for (let k = 0; k < 100_000; k++) {
      const frac = rand() < 0.3 ? '' : `.${pad(Math.floor(rand() * 1e6), 6).slice(0, 1 + Math.floor(rand() * 7))}`;
      const zone = ['+00', '+08', '-03:30', '+05:45', '-12', '+14:00', '-00', '+05:30:15', 'Z', '', ' BC', '+0530', '+08:'][Math.floor(rand() * 13)]!;
      let s = `${pad(Math.floor(rand() * 10100), 4)}-${pad(1 + Math.floor(rand() * 13), 2)}-${pad(Math.floor(rand() * 32), 2)} ${pad(Math.floor(rand() * 25), 2)}:${pad(Math.floor(rand() * 61), 2)}:${pad(Math.floor(rand() * 61), 2)}${frac}${zone}`;
      if (rand() < 0.05) s = s.slice(0, Math.floor(rand() * s.length)) + 'x0: .-+'[Math.floor(rand() * 7)] + s.slice(Math.floor(rand() * s.length));
      const got = timestamptz(s);
      if (got === undefined) continue;
      fast++;
      if (got !== reference(s)) expect([s, got]).toEqual([s, reference(s)]);
    }
    expect(fast).toBeGreaterThan(25_000);
    // Where the civil date is easy to get wrong: leap days, negative times, the ends of four-digit years.
    for (const s of [
      '0100-01-01 00:00:00+14', '0100-02-29 12:00:00+00', '0400-02-29 12:00:00+00', '1600-03-01 00:00:00+00', '1969-12-31 23:59:59.999+00',
      '1970-01-01 00:00:00-00', '2000-02-29 23:59:59.999999-12', '2024-02-29 00:00:00+00', '2100-02-29 00:00:00+00', '2026-12-31 23:59:60+00',
      '9999-12-31 23:59:59.999+00', '9999-12-31 23:59:59.999-12', '9999-12-31 12:00:00-11:59:59', '0100-01-01 11:59:59+12',
    ]) {
      expect([s, timestamptz(s)]).toEqual([s, reference(s)]);
    }
    // The fraction as postgres-date reads it (1000 × parseFloat) is the quotient the decoder
    // takes: every 1 to 6 digit fraction.
    for (let digits = 1; digits <= 6; digits++) {
      const scale = 10 ** digits;
      for (let f = 0; f < scale; f++) {
        const text = `.${pad(f, digits)}`;
        if (1000 * parseFloat(text) !== 1000 * (f / scale)) expect(text).toBe('read as the decoder reads it');
      }
    }
  });
});
