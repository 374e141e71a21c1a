import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { decodeTuple, ensurePublicationAndSlot } from '../../connectors/sources/postgres/index.js';
import { createApp, configuredTables } from '../../src/app.js';
import { createClassifier } from '../../src/classify/classifier.js';
import type { Config } from '../../src/config/schema.js';
import type { BusinessEvent, Row, VisitRecord } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import type { Sink } from '../../src/core/sink.js';
import type { SourceChange } from '../../src/core/source.js';
import { createLedger } from '../../src/ledger/ledger.js';
import { DEFAULT_SHARDS, MIGRATIONS, migrate } from '../../src/ledger/migrations.js';
import { HELD } from '../../src/ledger/replay.js';
import { silentLogger } from '../../src/log.js';
import { createSink } from '../../src/registry.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, startSimulators, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * An upgrade from a ledger of schema version 1 (and one of version 2) to the current one.
 * The old ledger is made with the old migrations' own SQL and filled as the old connector
 * left it: events of several orders, deliveries to both sinks in every status (the delivered
 * ones really reached the simulators, so a resend shows as a duplicate there), attempts,
 * order rows, parked input and checkpoints. `migrate` must carry all of it over, and the
 * connector started on the upgraded ledger must finish exactly what was unfinished.
 */

const PROJECT = 'demo-cinema';
const SINKS = ['antchain', 'zhima'] as const;
type SinkName = (typeof SINKS)[number];

const ts = (order: string) => eventId([PROJECT, order, 'TRADE_SUCCESS']);
const tc = (order: string) => eventId([PROJECT, order, 'TRADE_CONFIRM']);
const rs = (order: string, refund: string) => eventId([PROJECT, order, 'REFUND_SUCCESS', refund]);
const visit = (visitId: string, page: string) => eventId([PROJECT, 'VISIT', visitId, page]);
const hex32 = () => randomBytes(16).toString('hex');

/** What had become of one (event, sink) delivery when the old connector stopped. */
type Fate =
  /** Sent for real before the upgrade: delivered (or not applicable), as the sink answered. */
  | { f: 'sent' }
  /** Pending, never tried (new, or waiting behind an open delivery of its order). */
  | { f: 'new' }
  /** Pending after failed attempts, due again at `dueInMs` from when the old ledger is made. */
  | { f: 'retrying'; tries: Array<{ http: number; code: string | null; message: string }>; dueInMs: number }
  /** Pending, attempt 1 claimed (leased) when the old process died before sending it. */
  | { f: 'crashed' }
  /** Parked with the API's reason. */
  | { f: 'parked'; code: string; message: string }
  /** Parked, then skipped by an operator. */
  | { f: 'skipped'; code: string; message: string }
  /** Parked behind a skipped delivery of its order (`HELD`). */
  | { f: 'held'; behind: string };

const fates: Record<string, Partial<Record<SinkName, Fate>>> = {
  [ts('U1001')]: { antchain: { f: 'sent' }, zhima: { f: 'sent' } },
  // No Alipay user id: Zhima answers not applicable.
  [ts('U1002')]: { antchain: { f: 'sent' }, zhima: { f: 'sent' } },
  [ts('U1003')]: {
    antchain: { f: 'retrying', dueInMs: 6_000, tries: [{ http: 503, code: null, message: 'HTTP 503' }, { http: 200, code: 'FAILED_NEED_RETRY', message: 'failed, report again' }] },
    zhima: { f: 'retrying', dueInMs: -60_000, tries: [{ http: 502, code: null, message: 'HTTP 502' }] },
  },
  [ts('U1004')]: { antchain: { f: 'sent' }, zhima: { f: 'sent' } },
  [rs('U1004', 'R41')]: { antchain: { f: 'parked', code: 'INVALID_PARAMETER', message: 'refund amount exceeds the order amount' }, zhima: { f: 'sent' } },
  [tc('U1002')]: { antchain: { f: 'new' }, zhima: { f: 'new' } },
  // Behind the parked R41 at AntChain: it must wait.
  [rs('U1004', 'R42')]: { antchain: { f: 'new' }, zhima: { f: 'new' } },
  // Behind the retrying TRADE_SUCCESS of U1003 at both sinks.
  [rs('U1003', 'R31')]: { antchain: { f: 'new' }, zhima: { f: 'new' } },
  [ts('U1005')]: { antchain: { f: 'sent' }, zhima: { f: 'sent' } },
  [rs('U1005', 'R51')]: { antchain: { f: 'skipped', code: 'FAILED_NO_RETRY', message: 'failed, do not retry' }, zhima: { f: 'sent' } },
  [rs('U1005', 'R52')]: { antchain: { f: 'held', behind: rs('U1005', 'R51') }, zhima: { f: 'sent' } },
  [ts('U1007')]: { antchain: { f: 'crashed' }, zhima: { f: 'sent' } },
  [visit('V1', 'CONTRACT_DETAIL_PAGE')]: { antchain: { f: 'sent' } },
  [visit('V2', 'SHARE_LANDING_PAGE')]: { antchain: { f: 'new' } },
  // Stored when no sink took visits yet: an event without deliveries.
  [visit('V0', 'CONTRACT_DETAIL_PAGE')]: {},
};

/** Effects each simulator must hold after the upgrade and the run, each exactly once. */
const sentBefore: Record<SinkName, string[]> = {
  antchain: [ts('U1001'), ts('U1002'), ts('U1004'), ts('U1005'), visit('V1', 'CONTRACT_DETAIL_PAGE')],
  zhima: [ts('U1001'), ts('U1004'), rs('U1004', 'R41'), ts('U1005'), rs('U1005', 'R51'), rs('U1005', 'R52'), ts('U1007')],
};
/** Carried-over pending deliveries the connector must deliver (not_applicable ones apart). */
const carriedDue: Record<SinkName, string[]> = {
  antchain: [ts('U1003'), rs('U1003', 'R31'), tc('U1002'), ts('U1007'), visit('V2', 'SHARE_LANDING_PAGE')],
  zhima: [ts('U1003'), rs('U1003', 'R31'), rs('U1004', 'R42')],
};
/** Events the source emits after the upgrade that must be delivered. */
const newDue: Record<SinkName, string[]> = {
  antchain: [ts('U1008'), tc('U1001')],
  zhima: [ts('U1008'), tc('U1001'), rs('U1004', 'R43')],
};
/** Never sent to AntChain: parked, skipped, held, and what waits behind the parked R41. */
const neverAntchain = [rs('U1004', 'R41'), rs('U1004', 'R42'), rs('U1004', 'R43'), rs('U1005', 'R51'), rs('U1005', 'R52'), visit('V0', 'CONTRACT_DETAIL_PAGE')];

const orderSql = (no: string, status: string, alipay: string | null) =>
  `INSERT INTO public.orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount, paid_at)
   VALUES ('${no}', '${status}', '138001380${no.slice(-2)}', ${alipay ? `'${alipay}'` : 'NULL'}, '1303902', 7, 'Cinema ${no}', 'S${no.slice(-1)}', '5-6', '2026-12-01 19:30:00', 2, 90.00, 80.00, now())`;
const refundSql = (id: string, no: string) => `INSERT INTO public.refunds VALUES ('${id}', '${no}', 'SUCCESS', 40.00, 1)`;

/** One append of the old connector: source statements (one transaction) or visit records. */
interface Step {
  sql?: string[];
  visits?: VisitRecord[];
}

const history: Step[] = [
  {
    sql: [orderSql('U1001', 'PAID', '2088000000000001'), orderSql('U1002', 'PAID', null)],
    visits: [{ visitId: 'V0', page: 'CONTRACT_DETAIL_PAGE', visitor: { type: 'PHONE', id: '13800138000' }, visitedAt: '2026-11-20T08:00:00.000Z' }],
  },
  { sql: [orderSql('U1003', 'PAID', '2088000000000003')] },
  { sql: [orderSql('U1004', 'PAID', '2088000000000004')] },
  { sql: [refundSql('R41', 'U1004')] },
  { sql: [`UPDATE public.orders SET status = 'USED' WHERE order_no = 'U1002'`] },
  { sql: [refundSql('R42', 'U1004'), refundSql('R31', 'U1003')] },
  { sql: [orderSql('U1005', 'PAID', '2088000000000005'), refundSql('R51', 'U1005')] },
  { sql: [refundSql('R52', 'U1005')] },
  { sql: [orderSql('U1007', 'PAID', '2088000000000007')] },
  {
    visits: [
      { visitId: 'V1', page: 'CONTRACT_DETAIL_PAGE', visitor: { type: 'PHONE', id: '13800138001' }, sharer: { type: 'PHONE', id: '13800138002' }, visitedAt: '2026-11-21T09:00:00.000Z' },
      { visitId: 'V2', page: 'SHARE_LANDING_PAGE', visitor: { type: 'PHONE', id: '13800138003' }, visitedAt: '2026-11-21T09:01:00.000Z' },
    ],
  },
];

type Json = Record<string, unknown>;

/** Rows as JSON (timestamps as Postgres prints them), in `order` (columns of the rows). */
async function rowsOf(pool: pg.Pool, sql: string, order: string): Promise<Json[]> {
  const { rows } = await pool.query<{ r: Json }>(`SELECT row_to_json(t) AS r FROM (${sql}) t ORDER BY ${order}`);
  return rows.map((x) => x.r);
}

interface OldLedger {
  events: Json[];
  /** Old delivery rows, with their old id. */
  deliveries: Json[];
  attempts: Json[];
  orders: Json[];
  parked: Json[];
  checkpoints: Json[];
  /** When the retrying AntChain delivery of U1003 is due. */
  dueAntchain: Date;
}

describe.each([1, 2])('a ledger at schema version %i', (fromVersion) => {
  const schema = `ledger_v${fromVersion}`;
  let db: TestDatabase;
  let sims: Simulators;
  let config: Config;
  let env: NodeJS.ProcessEnv;
  let sinks: Record<SinkName, Sink>;
  let old: OldLedger;
  let simBefore: { antchain: number; zhima: number };

  beforeAll(async () => {
    db = await createTestDatabase(`upg${fromVersion}`);
    await createOrderTables(db.pool);
    sims = await startSimulators();
    config = writeConfig(testConfig(db.url, sims, { ledger: { schema } }), sims.env).config;
    env = { ...process.env, ...sims.env };
    sinks = {
      antchain: createSink('antchain', config.sinks.antchain!, { logger: silentLogger(), env }),
      zhima: createSink('zhima', config.sinks.zhima!, { logger: silentLogger(), env }),
    };
    old = await buildOldLedger();
    simBefore = { antchain: sims.antchain.stats().effects, zhima: sims.zhima.stats().effects };
  });

  afterAll(async () => {
    await Promise.all(Object.values(sinks ?? {}).map((s) => s.close()));
    await sims?.close();
    await db?.drop();
  });

  /** The old schema, exactly as `migrate` of that release made it, then the old connector's rows. */
  async function buildOldLedger(): Promise<OldLedger> {
    const c = await db.pool.connect();
    try {
      await c.query('BEGIN');
      await c.query(`CREATE SCHEMA ${schema}`);
      await c.query(`CREATE TABLE ${schema}.schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const [i, m] of MIGRATIONS.slice(0, fromVersion).entries()) {
        expect(m.version).toBe(i + 1);
        await c.query(m.sql(schema));
        await c.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      }
      await c.query('COMMIT');
    } finally {
      c.release();
    }

    const classifier = createClassifier(config);
    const known = new Map<string, Row>();
    const stored = new Set<string>();
    let lsn = 0x16b3748;
    const at0 = Date.now() - 3_600_000;
    let dueAntchain = new Date(0);

    const sourceRow = async (table: 'orders' | 'refunds', key: string): Promise<Row> => {
      const col = table === 'orders' ? 'order_no' : 'refund_id';
      const { rows } = await db.pool.query(`SELECT * FROM public.${table} WHERE ${col} = $1`, [key]);
      return decodeTuple(rows[0])!.row;
    };

    for (const [n, step] of history.entries()) {
      const committedAt = new Date(at0 + n * 60_000).toISOString();
      const changes: SourceChange[] = [];
      if (step.sql) {
        await db.pool.query(`BEGIN; ${step.sql.join('; ')}; COMMIT`);
        for (const s of step.sql) {
          const refund = /INSERT INTO public\.refunds VALUES \('(\w+)'/.exec(s)?.[1];
          const order = /'(U\d+)'/.exec(s)![1]!;
          const row = refund ? await sourceRow('refunds', refund) : await sourceRow('orders', order);
          changes.push({ table: refund ? 'public.refunds' : 'public.orders', op: s.startsWith('UPDATE') ? 'update' : 'insert', after: row, before: null, position: `0/${(lsn += 0x1a0).toString(16).toUpperCase()}`, committedAt });
        }
      }
      for (const v of step.visits ?? []) {
        changes.push({ table: 'visits', op: 'insert', after: null, before: null, visit: v, position: `visits/0@${40 + changes.length}`, committedAt, parkAs: { stream: 'visits/0', position: String(40 + changes.length) } });
      }
      // The old append: events new by id, then their deliveries in event order, sink order.
      const events: Array<{ event: BusinessEvent; position: string; source: string }> = [];
      for (const change of changes) {
        const r = classifier.classify(change, (no) => known.get(no));
        expect(r.kind, JSON.stringify(r)).toBe('events');
        if (r.kind !== 'events') continue;
        if (r.orderNo && r.orderRow) known.set(r.orderNo, r.orderRow);
        for (const event of r.events) {
          if (stored.has(event.id)) continue;
          stored.add(event.id);
          events.push({ event, position: change.position, source: change.visit ? 'kafka' : 'postgres' });
        }
      }
      const createdAt = new Date(at0 + n * 60_000 + 500).toISOString();
      for (const { event, position, source } of events) {
        expect(fates[event.id], `a fate for ${event.code} ${event.orderKey}`).toBeDefined();
        await db.pool.query(
          `INSERT INTO ${schema}.events (id, code, kind, order_key, order_no, refund_id, occurred_at, committed_at, source, position, payload, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
          [event.id, event.code, event.kind, event.orderKey, event.orderNo ?? null, event.refundId ?? null, event.occurredAt, committedAt, source, position, JSON.stringify(event), createdAt],
        );
      }
      const ids = new Map<string, string>();
      for (const { event } of events) {
        for (const sink of SINKS) {
          if (!fates[event.id]![sink]) continue;
          expect(sinks[sink].handles(event), `${sink} handles ${event.code}`).toBe(true);
          const { rows } = await db.pool.query<{ id: string }>(
            `INSERT INTO ${schema}.deliveries (event_id, sink, order_key, created_at, updated_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4, $4) RETURNING id::text`,
            [event.id, sink, event.orderKey, createdAt],
          );
          ids.set(`${event.id} ${sink}`, rows[0]!.id);
        }
      }
      // What the old dispatcher made of them.
      for (const { event } of events) {
        for (const sink of SINKS) {
          const fate = fates[event.id]![sink];
          if (!fate) continue;
          const id = ids.get(`${event.id} ${sink}`)!;
          const attempt = (a: number, outcome: string, x: { request_id?: string | null; http?: number | null; code?: string | null; sub?: string | null; message?: string | null; ms?: number | null }) =>
            db.pool.query(
              `INSERT INTO ${schema}.attempts (delivery_id, attempt, at, outcome, request_id, http_status, remote_code, remote_sub_code, remote_message, duration_ms)
               VALUES ($1, $2::int, now() - interval '10 minutes' + $2::int * interval '1 second', $3, $4, $5, $6, $7, $8, $9)`,
              [id, a, outcome, x.request_id ?? null, x.http ?? null, x.code ?? null, x.sub ?? null, x.message ?? null, x.ms ?? null],
            );
          const update = (set: string, values: unknown[]) =>
            db.pool.query(`UPDATE ${schema}.deliveries SET ${set}, updated_at = now() - interval '5 minutes' WHERE id = $1`, [id, ...values]);
          switch (fate.f) {
            case 'sent': {
              const o = await sinks[sink].deliver(event, new AbortController().signal);
              if (o.status === 'delivered') {
                await attempt(1, 'delivered', { request_id: o.info.requestId, http: o.info.httpStatus, code: o.info.remoteCode, ms: Math.round(o.info.durationMs) });
                await update(`status = 'delivered', attempts = 1, last_code = $2, result = $3, delivered_at = now() - interval '5 minutes'`, [o.info.remoteCode ?? null, JSON.stringify(o.result ?? null)]);
              } else if (o.status === 'not_applicable') {
                await attempt(1, 'not_applicable', {});
                await update(`status = 'not_applicable', attempts = 1, last_code = 'NOT_APPLICABLE', last_message = $2`, [o.reason]);
              } else throw new Error(`${sink} did not take ${event.code} ${event.orderKey} before the upgrade: ${JSON.stringify(o)}`);
              break;
            }
            case 'new':
              break;
            case 'retrying': {
              for (const [i, t] of fate.tries.entries()) await attempt(i + 1, 'retry', { request_id: hex32(), http: t.http, code: t.code, message: t.message, ms: 40 + i });
              const last = fate.tries.at(-1)!;
              const due = new Date(Date.now() + fate.dueInMs);
              if (sink === 'antchain') dueAntchain = due;
              await update(`attempts = $2, next_attempt_at = $3, last_code = $4, last_message = $5`, [fate.tries.length, due, last.code ?? `HTTP_${last.http}`, last.message]);
              break;
            }
            case 'crashed':
              await update(`attempts = 1, lease_until = now() - interval '1 minute'`, []);
              break;
            case 'parked':
            case 'skipped':
              await attempt(1, 'rejected', { request_id: hex32(), http: 200, code: fate.code, message: fate.message, ms: 35 });
              await update(`status = $2, attempts = 1, last_code = $3, last_message = $4`, [fate.f === 'parked' ? 'rejected' : 'skipped', fate.code, fate.message]);
              break;
            case 'held':
              await update(`status = 'rejected', last_code = '${HELD}', last_message = $2`, [`held behind the skipped delivery ${ids.get(`${fate.behind} ${sink}`) ?? '?'} of its order`]);
              break;
          }
        }
      }
      await db.pool.query(`INSERT INTO ${schema}.orders (order_no, row, updated_at) SELECT o.order_no, o.row, $2 FROM json_to_recordset($1::json) AS o(order_no text, row json)
                           ON CONFLICT (order_no) DO UPDATE SET row = EXCLUDED.row, updated_at = EXCLUDED.updated_at`,
        [JSON.stringify([...known].map(([order_no, row]) => ({ order_no, row }))), createdAt]);
    }

    // Input the old connector could not turn into events.
    await db.pool.query(
      `INSERT INTO ${schema}.parked_inputs (source, stream, position, reason, raw, created_at, resolved_at) VALUES
         ('postgres', 'public.orders', '0/16B9000', 'public.orders order U1099: status column "status" is missing or empty', '{"order_no":"U1099","status":null}', now() - interval '40 minutes', NULL),
         ('kafka', 'visits/0', '17', 'visits/0@17: not JSON', '{"visitId":', now() - interval '30 minutes', now() - interval '20 minutes')`,
    );
    if (fromVersion >= 2) {
      await db.pool.query(
        `INSERT INTO ${schema}.parked_inputs (source, stream, position, reason, raw, row_key, last_seen_at) VALUES
           ('postgres', 'public.refunds', '0/16BA000', 'public.refunds refund R77: order U1077 is unknown (not in the ledger nor in public.orders)', '{"refund_id":"R77","order_no":"U1077"}', 'public.refunds refund_id=R77', now() - interval '1 minute')`,
      );
    }

    // The slot the old connector streamed from, acknowledged up to the ledger's checkpoint.
    const admin = await db.pool.connect();
    try {
      await ensurePublicationAndSlot(admin, { slot: config.source!.slot, publication: config.source!.publication, tables: configuredTables(config), create: true }, silentLogger());
    } finally {
      admin.release();
    }
    const { rows: slot } = await db.pool.query<{ lsn: string }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [config.source!.slot]);
    await db.pool.query(
      `INSERT INTO ${schema}.checkpoints (source, stream, position) VALUES
         ('postgres', 'slot', $1), ('kafka', 'visits/0', '42'), ('backfill', 'public.orders', '{"after":"U1007","rows":6,"done":true}')`,
      [slot[0]!.lsn],
    );

    // The ledger as the old connector left it: every event, delivery and attempt accounted for.
    const deliveries = await rowsOf(db.pool, `SELECT * FROM ${schema}.deliveries`, 'id');
    expect(deliveries.length).toBe(Object.values(fates).reduce((n, f) => n + Object.keys(f).length, 0));
    const statuses = new Set(deliveries.map((d) => `${d.status}${d.last_code === HELD ? ' HELD' : ''}`));
    expect([...statuses].sort()).toEqual(['delivered', 'not_applicable', 'pending', 'rejected', 'rejected HELD', 'skipped']);
    // Delivered ones carry the API's answer.
    for (const d of deliveries.filter((x) => x.status === 'delivered')) expect(d.result, `${d.event_id} ${d.sink}`).toEqual(expect.any(Object));
    return {
      events: await rowsOf(db.pool, `SELECT id, code, kind, order_key, order_no, refund_id, occurred_at, committed_at, source, position, payload, payload::text AS payload_text, created_at FROM ${schema}.events`, 'id'),
      deliveries,
      attempts: await rowsOf(db.pool, `SELECT * FROM ${schema}.attempts`, 'delivery_id, attempt'),
      orders: await rowsOf(db.pool, `SELECT * FROM ${schema}.orders`, 'order_no'),
      parked: await rowsOf(db.pool, `SELECT * FROM ${schema}.parked_inputs`, 'id'),
      checkpoints: await rowsOf(db.pool, `SELECT * FROM ${schema}.checkpoints`, 'source, stream'),
      dueAntchain,
    };
  }

  /** seq per event id, from event_ids. */
  async function seqs(): Promise<Map<string, number>> {
    const { rows } = await db.pool.query<{ id: string; seq: string }>(`SELECT encode(id, 'hex') AS id, seq::text FROM ${schema}.event_ids`);
    return new Map(rows.map((r) => [r.id, Number(r.seq)]));
  }

  it('migrate carries every event, delivery, attempt, order row, parked input and checkpoint over', async () => {
    const c = await db.pool.connect();
    let applied: number[];
    try {
      applied = await migrate(c, schema);
    } finally {
      c.release();
    }
    expect(applied).toEqual(MIGRATIONS.filter((m) => m.version > fromVersion).map((m) => m.version));
    expect(await rowsOf(db.pool, `SELECT version, name FROM ${schema}.schema_migrations`, 'version')).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));

    // Every event, as the events view shows it: same ids, codes, payloads (the same JSON text), times, positions.
    const events = await rowsOf(db.pool, `SELECT id, code, kind, order_key, order_no, refund_id, occurred_at, committed_at, source, position, payload, payload::text AS payload_text, created_at FROM ${schema}.events`, 'id');
    expect(events).toEqual(old.events);
    expect(events.length).toBe(Object.keys(fates).length);
    const seq = await seqs();
    expect([...seq.keys()].sort()).toEqual(old.events.map((e) => e.id));
    const { rows: log } = await db.pool.query<{ id: string; seq: string; sinks: number; order_key: string }>(
      `SELECT encode(id, 'hex') AS id, seq::text, sinks, order_key FROM ${schema}.log l ORDER BY l.seq`,
    );
    expect(log.map((l) => [l.id, Number(l.seq)])).toEqual([...seq].sort((a, b) => a[1] - b[1]));
    expect(new Set(log.map((l) => l.seq)).size).toBe(log.length);
    // Each event's sink mask names the sinks it had deliveries for.
    const { rows: bits } = await db.pool.query<{ name: string; bit: number }>(`SELECT name, bit FROM ${schema}.sinks`);
    const bit = new Map(bits.map((b) => [b.name, b.bit]));
    expect([...bit.keys()].sort()).toEqual([...SINKS]);
    for (const l of log) expect(l.sinks, l.id).toBe(Object.keys(fates[l.id]!).reduce((m, s) => m | (1 << bit.get(s)!), 0));

    // Every delivery is still there with its status, attempts, times, codes and result; its id is its event's seq.
    const deliveries = await rowsOf(db.pool, `SELECT * FROM ${schema}.deliveries`, 'event_id, sink');
    const byKey = new Map(deliveries.map((d) => [`${d.event_id} ${d.sink}`, d]));
    expect(deliveries.length).toBe(old.deliveries.length);
    const eventOf = new Map(old.events.map((e) => [e.id as string, e]));
    for (const o of old.deliveries) {
      const d = byKey.get(`${o.event_id} ${o.sink}`);
      expect(d, `delivery ${o.event_id} ${o.sink}`).toBeDefined();
      const e = eventOf.get(o.event_id as string)!;
      expect(d).toEqual({
        ...o,
        id: seq.get(o.event_id as string),
        code: e.code,
        order_no: e.order_no,
        committed_at: e.committed_at,
        payload: e.payload,
      });
    }
    // Pending ones are due as before (the retrying AntChain one only in the future), parked ones keep their reason.
    const d = (id: string, sink: SinkName) => byKey.get(`${id} ${sink}`)!;
    expect(d(ts('U1003'), 'antchain')).toMatchObject({ status: 'pending', attempts: 2, last_code: 'FAILED_NEED_RETRY' });
    expect(new Date(d(ts('U1003'), 'antchain').next_attempt_at as string).getTime()).toBe(old.dueAntchain.getTime());
    expect(d(rs('U1004', 'R41'), 'antchain')).toMatchObject({ status: 'rejected', last_code: 'INVALID_PARAMETER' });
    expect(d(rs('U1005', 'R52'), 'antchain')).toMatchObject({ status: 'rejected', last_code: HELD });
    expect(d(rs('U1005', 'R51'), 'antchain')).toMatchObject({ status: 'skipped', last_code: 'FAILED_NO_RETRY' });
    expect(d(ts('U1002'), 'zhima')).toMatchObject({ status: 'not_applicable', last_code: 'NOT_APPLICABLE' });
    expect(d(ts('U1001'), 'antchain')).toMatchObject({ status: 'delivered' });

    // FIFO per (sink, order): the new ids follow the old delivery order, strictly.
    const groups = new Map<string, Json[]>();
    for (const o of old.deliveries) {
      const k = `${o.sink} ${o.order_key}`;
      groups.set(k, [...(groups.get(k) ?? []), o]);
    }
    for (const [k, rows] of groups) {
      const oldOrder = [...rows].sort((a, b) => Number(a.id) - Number(b.id)).map((r) => r.event_id);
      const newIds = oldOrder.map((id) => Number(byKey.get(`${id} ${k.split(' ')[0]}`)!.id));
      expect(newIds, k).toEqual([...newIds].sort((a, b) => a - b));
      expect(new Set(newIds).size, k).toBe(newIds.length);
    }

    // Every attempt is kept, now keyed by sink and the event's seq.
    const oldDelivery = new Map(old.deliveries.map((o) => [String(o.id), o]));
    const key = (a: Json) => `${String(a.sink)} ${String(a.delivery_id).padStart(12, '0')} ${String(a.attempt).padStart(4, '0')}`;
    const expectedAttempts = old.attempts
      .map((a): Json => {
        const o = oldDelivery.get(String(a.delivery_id))!;
        return { ...a, delivery_id: seq.get(o.event_id as string), sink: o.sink };
      })
      .sort((a, b) => key(a).localeCompare(key(b)));
    expect(await rowsOf(db.pool, `SELECT * FROM ${schema}.attempts`, 'sink, delivery_id, attempt')).toEqual(expectedAttempts);
    expect(expectedAttempts.filter((a) => a.delivery_id === seq.get(ts('U1003')) && a.sink === 'antchain').map((a) => a.outcome)).toEqual(['retry', 'retry']);

    // Order rows, parked input and checkpoints are untouched.
    expect(await rowsOf(db.pool, `SELECT * FROM ${schema}.orders`, 'order_no')).toEqual(old.orders);
    expect(await rowsOf(db.pool, `SELECT * FROM ${schema}.parked_inputs`, 'id')).toEqual(
      old.parked.map((p) => (fromVersion === 1 ? { ...p, row_key: null, last_seen_at: null } : p)),
    );
    expect(await rowsOf(db.pool, `SELECT * FROM ${schema}.checkpoints`, 'source, stream')).toEqual(old.checkpoints);

    // Cursors start past every carried-over event: reading the log from them finds nothing, and new seqs come after.
    const ledger = createLedger(db.pool, schema);
    const maxSeq = Math.max(...seq.values());
    for (const sink of SINKS) {
      const cursors = await ledger.cursors(sink);
      expect(cursors).toEqual(Array.from({ length: DEFAULT_SHARDS }, () => maxSeq));
      expect((await ledger.readLog(sink, Math.min(...cursors), 1_000)).entries).toEqual([]);
    }
    const { rows: nextSeq } = await db.pool.query<{ v: string }>(`SELECT last_value::text AS v FROM ${schema}.log_seq`);
    expect(Number(nextSeq[0]!.v)).toBe(maxSeq);
  });

  // Runs on the ledger the test above upgraded.
  it('the connector on the upgraded ledger finishes exactly what was unfinished, in order, and sends nothing twice', async () => {
    const seqBefore = await seqs();
    const stop = new AbortController();
    const app = createApp(config, { logger: silentLogger(), env });
    const startedAt = Date.now();
    const running = app.run(stop.signal);
    let exited = false;
    void running.finally(() => (exited = true)).catch(() => {});
    try {
      // Streaming from the old connector's slot (a stop that lands while the source is still
      // starting is not what this test is about).
      await waitFor(async () => {
        const { rows } = await db.pool.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot]);
        return rows[0]?.active;
      }, 'the connector streaming from the slot');
      // Changes after the upgrade: a refund of the order whose R41 is parked at AntChain (its
      // TRADE_SUCCESS comes again and is known), a new order, and an old order used (idem).
      await db.pool.query(refundSql('R43', 'U1004'));
      await db.pool.query(orderSql('U1008', 'PAID', '2088000000000008'));
      await db.pool.query(`UPDATE public.orders SET status = 'USED' WHERE order_no = 'U1001'`);

      const want = (sink: SinkName) => [...sentBefore[sink], ...carriedDue[sink], ...newDue[sink]].sort();
      await waitFor(async () => {
        if (exited) throw new Error('the connector stopped');
        const a = sims.antchain.stats();
        const z = sims.zhima.stats();
        // Something sent that must not be, or sent twice: stop now, the assertions below say what.
        if (a.duplicates + z.duplicates > 0 || neverAntchain.some((id) => a.effectKeys.includes(id))) return 'wrongly sent';
        if (!want('antchain').every((k) => a.effectKeys.includes(k)) || !want('zhima').every((k) => z.effectKeys.includes(k))) return false;
        const { rows } = await db.pool.query<{ k: string }>(
          `SELECT event_id || ' ' || sink || ' ' || status AS k FROM ${schema}.deliveries WHERE status = 'pending' OR (event_id = $1 AND sink = 'zhima')`,
          [tc('U1002')],
        );
        // Left pending: only what waits behind the parked R41 at AntChain; U1002's confirm is not applicable at Zhima.
        return JSON.stringify(rows.map((r) => r.k).sort()) === JSON.stringify([
          `${rs('U1004', 'R42')} antchain pending`, `${rs('U1004', 'R43')} antchain pending`, `${tc('U1002')} zhima not_applicable`,
        ].sort());
      }, 'every unfinished delivery finished, the ones behind the parked refund waiting', 45_000);
    } finally {
      stop.abort();
      await running;
    }

    // Each simulator has every effect exactly once: what was delivered before was not sent again,
    // parked, skipped and held deliveries were not sent, nor what waits behind the parked one.
    const a = sims.antchain.stats();
    const z = sims.zhima.stats();
    expect(simBefore).toEqual({ antchain: sentBefore.antchain.length, zhima: sentBefore.zhima.length });
    expect([...a.effectKeys].sort()).toEqual([...sentBefore.antchain, ...carriedDue.antchain, ...newDue.antchain].sort());
    expect([...z.effectKeys].sort()).toEqual([...sentBefore.zhima, ...carriedDue.zhima, ...newDue.zhima].sort());
    expect(a.duplicates).toBe(0);
    expect(z.duplicates).toBe(0);
    expect(a.violations).toEqual([]);
    for (const id of neverAntchain) expect(a.effectKeys, id).not.toContain(id);

    // FIFO: a refund after its order's retried TRADE_SUCCESS, at both sinks.
    const at = (keys: string[], id: string) => keys.indexOf(id);
    expect(at(a.effectKeys, rs('U1003', 'R31'))).toBeGreaterThan(at(a.effectKeys, ts('U1003')));
    expect(at(z.effectKeys, rs('U1003', 'R31'))).toBeGreaterThan(at(z.effectKeys, ts('U1003')));
    expect(at(z.effectKeys, rs('U1004', 'R43'))).toBeGreaterThan(at(z.effectKeys, rs('U1004', 'R42')));

    const rows = await rowsOf(db.pool, `SELECT event_id, sink, id, status, attempts, last_code, delivered_at, next_attempt_at FROM ${schema}.deliveries`, 'id, sink');
    const row = (id: string, sink: SinkName) => rows.find((r) => r.event_id === id && r.sink === sink)!;
    // The retrying delivery went when it was due, not before, as its third attempt; the one that crashed mid-claim as its second.
    expect(startedAt).toBeLessThan(old.dueAntchain.getTime());
    expect(row(ts('U1003'), 'antchain')).toMatchObject({ status: 'delivered', attempts: 3 });
    expect(new Date(row(ts('U1003'), 'antchain').delivered_at as string).getTime()).toBeGreaterThanOrEqual(old.dueAntchain.getTime());
    expect(row(ts('U1003'), 'zhima')).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(row(ts('U1007'), 'antchain')).toMatchObject({ status: 'delivered', attempts: 2 });
    const { rows: hist } = await db.pool.query<{ attempt: number; outcome: string }>(
      `SELECT attempt, outcome FROM ${schema}.attempts WHERE sink = 'antchain' AND delivery_id = $1 ORDER BY attempt`,
      [seqBefore.get(ts('U1003'))],
    );
    expect(hist).toEqual([{ attempt: 1, outcome: 'retry' }, { attempt: 2, outcome: 'retry' }, { attempt: 3, outcome: 'delivered' }]);
    // Parked, held and skipped stay as they were; the refunds behind the parked one wait, untried, in order.
    expect(row(rs('U1004', 'R41'), 'antchain')).toMatchObject({ status: 'rejected', attempts: 1, last_code: 'INVALID_PARAMETER' });
    expect(row(rs('U1005', 'R52'), 'antchain')).toMatchObject({ status: 'rejected', attempts: 0, last_code: HELD });
    expect(row(rs('U1005', 'R51'), 'antchain')).toMatchObject({ status: 'skipped', attempts: 1 });
    expect(row(rs('U1004', 'R42'), 'antchain')).toMatchObject({ status: 'pending', attempts: 0 });
    expect(row(rs('U1004', 'R43'), 'antchain')).toMatchObject({ status: 'pending', attempts: 0 });
    expect(Number(row(rs('U1004', 'R43'), 'antchain').id)).toBeGreaterThan(Number(row(rs('U1004', 'R42'), 'antchain').id));
    expect(row(tc('U1002'), 'antchain')).toMatchObject({ status: 'delivered', attempts: 1 });
    // Delivered before the upgrade: untouched.
    for (const o of old.deliveries.filter((x) => x.status !== 'pending')) {
      expect(row(o.event_id as string, o.sink as SinkName), `${o.event_id} ${o.sink}`).toMatchObject({ status: o.status, attempts: o.attempts, last_code: o.last_code });
    }

    // The TRADE_SUCCESS ids the source produced again were known: three new events, no second copy of an old one.
    const after = await seqs();
    expect([...after.keys()].filter((k) => !seqBefore.has(k)).sort()).toEqual([rs('U1004', 'R43'), ts('U1008'), tc('U1001')].sort());
    for (const [k, s] of seqBefore) expect(after.get(k), k).toBe(s);
    const { rows: n } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.log`);
    expect(n[0]!.n).toBe(seqBefore.size + 3);
  });
  it('an empty ledger of that version upgrades too, and its first event is read from the cursors', async () => {
    const empty = `${schema}_empty`;
    const c = await db.pool.connect();
    try {
      await c.query(`CREATE SCHEMA ${empty}`);
      await c.query(`CREATE TABLE ${empty}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const m of MIGRATIONS.slice(0, fromVersion)) {
        await c.query(m.sql(empty));
        await c.query(`INSERT INTO ${empty}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      }
      expect(await migrate(c, empty)).toEqual(MIGRATIONS.filter((m) => m.version > fromVersion).map((m) => m.version));
    } finally {
      c.release();
    }
    const ledger = createLedger(db.pool, empty);
    const cursors = await ledger.cursors('antchain');
    expect(cursors).toEqual(Array.from({ length: DEFAULT_SHARDS }, () => 0));
    const event: BusinessEvent = { id: ts('E1'), code: 'TRADE_SUCCESS', kind: 'TRADE', orderKey: 'E1', orderNo: 'E1', occurredAt: '2026-12-01T10:00:00.000Z', order: { order_no: 'E1' } };
    const r = await ledger.append({ source: 'postgres', events: [{ event, sinks: ['antchain'], position: '0/1', committedAt: '2026-12-01T10:00:00.000Z' }], orders: [], bad: [], checkpoints: [] });
    expect(r.inserted).toBe(1);
    const read = await ledger.readLog('antchain', Math.min(...cursors), 10);
    expect(read.entries.map((e) => e.eventId)).toEqual([event.id]);
    expect(read.entries[0]!.seq).toBeGreaterThan(cursors[read.entries[0]!.shard]!);
  });
});
