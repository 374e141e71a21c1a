import type pg from 'pg';
import { HELD } from '../ledger/replay.js';

/**
 * Read-only questions operators ask of the ledger and of the source database. Shared by
 * `order-relay status`, the `/metrics` gauges and the demo's report, so the three never
 * disagree about what "backlog" or "parked" means:
 *
 * - backlog: deliveries still `pending` (due now or waiting for a retry), in flight included;
 * - retrying: pending deliveries whose last recorded attempt failed (a first attempt in
 *   flight is no retry; a retry in flight still is);
 * - parked: deliveries `rejected` by the API (or unfit to send), waiting for `replay`/`--skip`;
 *   held: the parked ones held behind a skipped delivery of their order (last_code HELD);
 * - blocked: pending deliveries that wait behind a parked one of the same order (FIFO).
 */

type Queryable = Pick<pg.Pool, 'query'>;

export interface SinkFigures {
  sink: string;
  backlog: number;
  /** Pending deliveries due now (not waiting for a retry backoff). */
  due: number;
  retrying: number;
  parked: number;
  /** Of `parked`, those held behind a skipped delivery of the same order (`replay --skip`). */
  held: number;
  /** Pending deliveries that wait behind a parked delivery of the same order. */
  blocked: number;
  /** Age of the oldest pending delivery, seconds; null when nothing is pending. */
  oldestPendingSeconds: number | null;
  delivered: number;
  deliveredLastMinute: number;
  notApplicable: number;
  skipped: number;
}

/** Figures per sink. `names` lists sinks to report even when they have no rows yet. */
export async function sinkFigures(db: Queryable, schema: string, names: readonly string[] = [], options: { totals?: boolean } = {}): Promise<SinkFigures[]> {
  // The open part (pending, rejected) is served by the partial FIFO index; the totals and
  // the last-minute count scan the table, so /metrics leaves them out.
  const open = await db.query<{ sink: string; backlog: number; due: number; retrying: number; parked: number; held: number; blocked: number; oldest: number | null }>(
    `SELECT d.sink,
            count(*) FILTER (WHERE d.status = 'pending')::int AS backlog,
            count(*) FILTER (WHERE d.status = 'pending' AND d.next_attempt_at <= now())::int AS due,
            count(*) FILTER (WHERE d.status = 'pending' AND d.last_code IS NOT NULL AND d.last_code <> '${HELD}')::int AS retrying,
            count(*) FILTER (WHERE d.status = 'rejected')::int AS parked,
            count(*) FILTER (WHERE d.status = 'rejected' AND d.last_code = '${HELD}')::int AS held,
            count(*) FILTER (WHERE d.status = 'pending' AND EXISTS (
                SELECT 1 FROM ${schema}.deliveries p
                 WHERE p.sink = d.sink AND p.order_key = d.order_key AND p.id < d.id AND p.status = 'rejected'))::int AS blocked,
            extract(epoch FROM now() - min(d.created_at) FILTER (WHERE d.status = 'pending'))::float8 AS oldest
       FROM ${schema}.deliveries d
      WHERE d.status IN ('pending', 'rejected')
      GROUP BY d.sink`,
  );
  const totals = new Map<string, { delivered: number; last: number; na: number; skipped: number }>();
  if (options.totals !== false) {
    const { rows } = await db.query<{ sink: string; delivered: number; last: number; na: number; skipped: number }>(
      `SELECT sink,
              count(*) FILTER (WHERE status = 'delivered')::int AS delivered,
              count(*) FILTER (WHERE status = 'delivered' AND delivered_at > now() - interval '1 minute')::int AS last,
              count(*) FILTER (WHERE status = 'not_applicable')::int AS na,
              count(*) FILTER (WHERE status = 'skipped')::int AS skipped
         FROM ${schema}.deliveries WHERE status IN ('delivered', 'not_applicable', 'skipped') GROUP BY sink`,
    );
    for (const r of rows) totals.set(r.sink, { delivered: r.delivered, last: r.last, na: r.na, skipped: r.skipped });
  }
  const byName = new Map(open.rows.map((r) => [r.sink, r]));
  const all = [...new Set([...names, ...byName.keys(), ...totals.keys()])].sort();
  return all.map((sink) => {
    const o = byName.get(sink);
    const t = totals.get(sink);
    return {
      sink,
      backlog: o?.backlog ?? 0,
      due: o?.due ?? 0,
      retrying: o?.retrying ?? 0,
      parked: o?.parked ?? 0,
      held: o?.held ?? 0,
      blocked: o?.blocked ?? 0,
      oldestPendingSeconds: o?.oldest == null ? null : Math.round(o.oldest * 1000) / 1000,
      delivered: t?.delivered ?? 0,
      deliveredLastMinute: t?.last ?? 0,
      notApplicable: t?.na ?? 0,
      skipped: t?.skipped ?? 0,
    };
  });
}

export async function parkedInputCount(db: Queryable, schema: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.parked_inputs WHERE resolved_at IS NULL`);
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
  const { rows } = await db.query<{ source: string; stream: string; position: string; updated_at: Date }>(
    `SELECT source, stream, position, updated_at FROM ${schema}.checkpoints ORDER BY source, stream`,
  );
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
 * The latest failure of each delivery that is still open (retrying or parked), newest
 * first, with its last attempt's request id. Reads only open deliveries (the partial FIFO
 * index) and one attempt row each, so it stays cheap on a ledger of millions.
 */
export async function recentErrors(db: Queryable, schema: string, limit = 10): Promise<RecentError[]> {
  const { rows } = await db.query<{
    at: Date; sink: string; event_id: string; code: string; order_no: string | null; outcome: string | null;
    request_id: string | null; http_status: number | null; remote_code: string | null; message: string | null;
  }>(
    `SELECT coalesce(a.at, d.updated_at) AS at, d.sink, d.event_id, e.code, e.order_no,
            CASE WHEN d.status = 'rejected' AND d.last_code = '${HELD}' THEN 'held'
                 ELSE coalesce(a.outcome, CASE WHEN d.status = 'rejected' THEN 'rejected' ELSE 'retry' END) END AS outcome,
            a.request_id, a.http_status, coalesce(d.last_code, a.remote_code) AS remote_code, coalesce(d.last_message, a.remote_message) AS message
       FROM ${schema}.deliveries d
       JOIN ${schema}.events e ON e.id = d.event_id
       LEFT JOIN LATERAL (
              SELECT t.at, t.outcome, t.request_id, t.http_status, t.remote_code, t.remote_message
                FROM ${schema}.attempts t WHERE t.delivery_id = d.id ORDER BY t.attempt DESC LIMIT 1) a ON true
      WHERE d.status IN ('pending', 'rejected') AND d.last_code IS NOT NULL
      ORDER BY d.updated_at DESC, d.id DESC
      LIMIT $1`,
    [limit],
  );
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
  }>(
    `SELECT d.sink, d.event_id, e.code, e.order_no, d.last_code, d.last_message, d.attempts, d.updated_at
       FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.id = d.event_id
      WHERE d.status = 'rejected' ORDER BY d.id LIMIT $1`,
    [limit],
  );
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
  const { rows } = await db.query<{ id: string; source: string; stream: string; position: string; reason: string; created_at: Date }>(
    `SELECT id::text, source, stream, position, reason, created_at FROM ${schema}.parked_inputs WHERE resolved_at IS NULL ORDER BY id LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({ id: r.id, source: r.source, stream: r.stream, position: r.position, reason: r.reason, at: r.created_at.toISOString() }));
}

/** Events per code, and deliveries per (sink, status). */
export async function ledgerCounts(db: Queryable, schema: string): Promise<{ events: Record<string, number>; deliveries: Record<string, Record<string, number>> }> {
  const ev = await db.query<{ code: string; n: number }>(`SELECT code, count(*)::int AS n FROM ${schema}.events GROUP BY code ORDER BY code`);
  const dl = await db.query<{ sink: string; status: string; n: number }>(
    `SELECT sink, status, count(*)::int AS n FROM ${schema}.deliveries GROUP BY sink, status ORDER BY sink, status`,
  );
  const deliveries: Record<string, Record<string, number>> = {};
  for (const r of dl.rows) (deliveries[r.sink] ??= {})[r.status] = r.n;
  return { events: Object.fromEntries(ev.rows.map((r) => [r.code, r.n])), deliveries };
}

/** Whether the ledger schema exists (its migrations table does). */
export async function ledgerExists(db: Queryable, schema: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [`${schema}.schema_migrations`]);
  return rows[0]?.ok === true;
}
