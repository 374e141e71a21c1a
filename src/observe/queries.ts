import type pg from 'pg';
import * as q from '../ledger/queries-sql.js';

/**
 * Read-only questions operators ask of the ledger and of the source database. Shared by
 * `order-relay status`, the `/metrics` gauges, the console and the demo's report, so they
 * never disagree about what "backlog" or "parked" means. The statements about the ledger
 * are in `src/ledger/queries-sql.ts`. Per sink, an event it takes is:
 *
 * - pending while it is past the sink's cursor for its shard (in the log: waiting, in flight,
 *   retried in memory, or settled but not yet written), or while its exception row is
 *   `pending` (retrying, or waiting behind an earlier exception of its order);
 * - settled once the cursor has passed it: an outcome (delivered, not applicable), or an
 *   exception row that is parked (`rejected`), skipped, or became delivered / not applicable.
 *
 * The figures:
 * - backlog: pending, in flight included; due: of those, the ones not waiting for a retry
 *   backoff (everything in the log past the cursor, and exceptions whose next attempt is due);
 * - retrying: pending exceptions whose last recorded attempt failed (a first attempt in flight
 *   is no retry; a retry in flight still is; retries kept in memory are not counted);
 * - parked: exceptions `rejected` by the API (or unfit to send), waiting for `replay`/`--skip`;
 *   held: the parked ones held behind a skipped delivery of their order (last_code HELD);
 * - blocked: pending events that wait behind a parked one of the same order (FIFO): pending
 *   exceptions, and events past the cursor whose order has a parked exception;
 * - delivered, not applicable: outcomes plus exceptions that ended so; skipped: exceptions.
 *   These count what the ledger keeps (ledger.retention drops older history).
 */

type Queryable = Pick<pg.Pool, 'query'>;

type OpenRow = { sink: string; backlog: number; due: number; retrying: number; parked: number; held: number; blocked: number; age: number | null };

/** Per registered sink, its part of the log past its cursors: one statement per sink, each a range of the seq index. */
async function logTails(db: Queryable, schema: string): Promise<Map<string, { n: number; blocked: number; age: number | null }>> {
  const { rows } = await db.query<{ sink: string; bit: number; floor: string | null }>(q.cursorFloors(schema));
  const out = new Map<string, { n: number; blocked: number; age: number | null }>();
  await Promise.all(
    rows.map(async (k) => {
      const { rows: r } = await db.query<{ n: number; blocked: number; age: number | null }>(q.logTail(schema), [k.sink, 1 << k.bit, k.floor ?? '0']);
      out.set(k.sink, r[0]!);
    }),
  );
  return out;
}

export interface SinkFigures {
  sink: string;
  /** Pending: past the sink's cursor in the log, or a pending exception row (in flight included). */
  backlog: number;
  /** Pending and not waiting for a retry backoff. */
  due: number;
  retrying: number;
  parked: number;
  /** Of `parked`, those held behind a skipped delivery of the same order (`replay --skip`). */
  held: number;
  /** Pending events that wait behind a parked delivery of the same order. */
  blocked: number;
  /** Age of the oldest pending event (since it was stored), seconds; null when nothing is pending. */
  oldestPendingSeconds: number | null;
  delivered: number;
  deliveredLastMinute: number;
  notApplicable: number;
  skipped: number;
}

/** Figures per sink. `names` lists sinks to report even when they have no rows yet. */
export async function sinkFigures(db: Queryable, schema: string, names: readonly string[] = [], options: { totals?: boolean } = {}): Promise<SinkFigures[]> {
  // The open part reads the log past the cursors (one seq range per sink) and the open
  // exceptions (the partial FIFO index); the totals read outcomes in full, so /metrics
  // leaves them out.
  const [tails, open] = await Promise.all([logTails(db, schema), db.query<OpenRow>(q.openExceptions(schema))]);
  const totals = new Map<string, { delivered: number; last: number; na: number; skipped: number }>();
  if (options.totals !== false) {
    const { rows } = await db.query<{ sink: string; delivered: number; last: number; na: number; skipped: number }>(q.settledTotals(schema));
    for (const r of rows) totals.set(r.sink, { delivered: r.delivered, last: r.last, na: r.na, skipped: r.skipped });
  }
  const byName = new Map(open.rows.map((r) => [r.sink, r]));
  const all = [...new Set([...names, ...tails.keys(), ...byName.keys(), ...totals.keys()])].sort();
  return all.map((sink) => {
    const l = tails.get(sink);
    const o = byName.get(sink);
    const t = totals.get(sink);
    const ages = [l?.age, o?.age].filter((x): x is number => x != null);
    return {
      sink,
      backlog: (l?.n ?? 0) + (o?.backlog ?? 0),
      due: (l?.n ?? 0) + (o?.due ?? 0),
      retrying: o?.retrying ?? 0,
      parked: o?.parked ?? 0,
      held: o?.held ?? 0,
      blocked: (l?.blocked ?? 0) + (o?.blocked ?? 0),
      oldestPendingSeconds: ages.length ? Math.round(Math.max(0, ...ages) * 1000) / 1000 : null,
      delivered: t?.delivered ?? 0,
      deliveredLastMinute: t?.last ?? 0,
      notApplicable: t?.na ?? 0,
      skipped: t?.skipped ?? 0,
    };
  });
}

export async function parkedInputCount(db: Queryable, schema: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(q.parkedInputCount(schema));
  return rows[0]?.n ?? 0;
}

export interface SlotFigures {
  slot: string;
  exists: boolean;
  active?: boolean;
  activePid?: number | null;
  plugin?: string;
  /** Up to where the server may discard changes: what order-relay has stored in its ledger. */
  confirmedLsn?: string | null;
  restartLsn?: string | null;
  currentLsn?: string;
  /** Bytes of WAL written since the confirmed position: how far behind the connector is. */
  lagBytes?: number | null;
  /** Bytes of WAL the slot keeps on the server's disk. */
  retainedBytes?: number | null;
  /** reserved | extended | unreserved | lost (lost: the slot is unusable; re-create and backfill). */
  walStatus?: string | null;
  /** The instance (host:pid) holding the slot's lock, the one that streams it; null: none. */
  owner?: string | null;
}

export async function slotFigures(db: Queryable, slot: string): Promise<SlotFigures> {
  const { rows } = await db.query<{
    active: boolean; active_pid: number | null; plugin: string; confirmed: string | null; restart: string | null;
    current: string; lag: string | null; retained: string | null; wal_status: string | null;
  }>(
    `SELECT s.active, s.active_pid, s.plugin, s.confirmed_flush_lsn::text AS confirmed, s.restart_lsn::text AS restart,
            pg_current_wal_lsn()::text AS current,
            (pg_current_wal_lsn() - s.confirmed_flush_lsn)::text AS lag,
            (pg_current_wal_lsn() - s.restart_lsn)::text AS retained,
            s.wal_status
       FROM pg_replication_slots s WHERE s.slot_name = $1`,
    [slot],
  );
  const r = rows[0];
  if (!r) return { slot, exists: false };
  return {
    slot,
    exists: true,
    active: r.active,
    activePid: r.active_pid,
    plugin: r.plugin,
    confirmedLsn: r.confirmed,
    restartLsn: r.restart,
    currentLsn: r.current,
    lagBytes: r.lag === null ? null : Math.max(0, Number(r.lag)),
    retainedBytes: r.retained === null ? null : Math.max(0, Number(r.retained)),
    walStatus: r.wal_status,
  };
}

export interface CheckpointRow {
  source: string;
  stream: string;
  position: string;
  updatedAt: string;
}

export async function checkpointRows(db: Queryable, schema: string): Promise<CheckpointRow[]> {
  const { rows } = await db.query<{ source: string; stream: string; position: string; updated_at: Date }>(q.checkpointRows(schema));
  return rows.map((r) => ({ source: r.source, stream: r.stream, position: r.position, updatedAt: r.updated_at.toISOString() }));
}

export interface RecentError {
  at: string;
  sink: string;
  eventId: string;
  eventCode: string;
  orderNo: string | null;
  outcome: string;
  /** The per-request id to quote to the API's support (AntChain req_msg_id, Alipay trace id). */
  requestId: string | null;
  httpStatus: number | null;
  remoteCode: string | null;
  message: string | null;
}

/**
 * The latest failure of each exception that is still open (retrying or parked), newest
 * first, with its last attempt's request id. Reads only open exceptions (the partial FIFO
 * index) and one attempt row each, so it stays cheap on a ledger of millions. Failures of an
 * event retried in memory (before it became an exception, or before it was delivered) are in
 * the log and the metrics, not here.
 */
export async function recentErrors(db: Queryable, schema: string, limit = 10): Promise<RecentError[]> {
  const { rows } = await db.query<{
    at: Date; sink: string; event_id: string; code: string; order_no: string | null; outcome: string | null;
    request_id: string | null; http_status: number | null; remote_code: string | null; message: string | null;
  }>(q.recentErrors(schema), [limit]);
  return rows.map((r) => ({
    at: r.at.toISOString(),
    sink: r.sink,
    eventId: r.event_id,
    eventCode: r.code,
    orderNo: r.order_no,
    outcome: r.outcome ?? 'retry',
    requestId: r.request_id,
    httpStatus: r.http_status,
    remoteCode: r.remote_code,
    message: r.message,
  }));
}

export interface ParkedDelivery {
  sink: string;
  eventId: string;
  eventCode: string;
  orderNo: string | null;
  code: string | null;
  message: string | null;
  attempts: number;
  since: string;
}

export async function parkedDeliveries(db: Queryable, schema: string, limit = 50): Promise<ParkedDelivery[]> {
  const { rows } = await db.query<{
    sink: string; event_id: string; code: string; order_no: string | null; last_code: string | null; last_message: string | null; attempts: number; updated_at: Date;
  }>(q.parkedExceptions(schema), [null, null, null, limit]);
  return rows.map((r) => ({
    sink: r.sink, eventId: r.event_id, eventCode: r.code, orderNo: r.order_no, code: r.last_code, message: r.last_message, attempts: r.attempts, since: r.updated_at.toISOString(),
  }));
}

export interface ParkedInput {
  id: string;
  source: string;
  stream: string;
  position: string;
  reason: string;
  at: string;
}

export async function parkedInputs(db: Queryable, schema: string, limit = 50): Promise<ParkedInput[]> {
  const { rows } = await db.query<{ id: string; source: string; stream: string; position: string; reason: string; created_at: Date }>(q.parkedInputs(schema), [limit]);
  return rows.map((r) => ({ id: r.id, source: r.source, stream: r.stream, position: r.position, reason: r.reason, at: r.created_at.toISOString() }));
}

/**
 * Events per code (the log), and deliveries per (sink, status): outcomes, exception rows, and
 * the log past the cursors as `pending`.
 */
export async function ledgerCounts(db: Queryable, schema: string): Promise<{ events: Record<string, number>; deliveries: Record<string, Record<string, number>> }> {
  const ev = await db.query<{ code: string; n: number }>(q.eventCounts(schema));
  const dl = await db.query<{ sink: string; status: string; n: number }>(q.recordCounts(schema));
  const deliveries: Record<string, Record<string, number>> = {};
  for (const r of dl.rows) (deliveries[r.sink] ??= {})[r.status] = r.n;
  for (const [sink, tail] of await logTails(db, schema)) {
    if (tail.n === 0) continue;
    const d = (deliveries[sink] ??= {});
    d.pending = (d.pending ?? 0) + tail.n;
  }
  return { events: Object.fromEntries(ev.rows.map((r) => [r.code, r.n])), deliveries };
}

export interface DeliveryAudit {
  sink: string;
  /** (event, sink) pairs in the log. */
  pairs: number;
  /** Distinct events delivered (an outcome, or an exception row that ended delivered). */
  delivered: number;
  /** Passed by the cursor with neither an outcome nor an exception row. */
  unrecorded: number;
  /** With more than one record (two outcomes, or an outcome and a row). */
  repeated: number;
  /** Still past the cursor, yet recorded. */
  ahead: number;
}

/** Every (event, sink) pair of the log against its records, per sink. Reads everything: for the demo and tests. */
export async function deliveryAudit(db: Queryable, schema: string): Promise<DeliveryAudit[]> {
  const { rows } = await db.query<DeliveryAudit>(q.deliveryAudit(schema));
  return rows;
}

/** Source commit → recorded delivery per sink, in ms. */
export async function deliveryLatency(db: Queryable, schema: string): Promise<Record<string, { p50: number; p99: number; n: number }>> {
  const { rows } = await db.query<{ sink: string; p50: number; p99: number; n: number }>(q.deliveryLatency(schema));
  return Object.fromEntries(rows.map((r) => [r.sink, { p50: Math.round(r.p50), p99: Math.round(r.p99), n: r.n }]));
}

/** The event ids (hex) in the log. */
export async function loggedEventIds(db: Queryable, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(q.eventIds(schema));
  return rows.map((r) => r.id);
}

/** Whether the ledger schema exists (its migrations table does). */
export async function ledgerExists(db: Queryable, schema: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(q.ledgerExists(), [`${schema}.schema_migrations`]);
  return rows[0]?.ok === true;
}
