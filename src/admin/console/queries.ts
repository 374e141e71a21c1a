import type pg from 'pg';
import type { BusinessEvent } from '../../core/events.js';
import { HELD } from '../../ledger/replay.js';
import type { ParkedInput } from '../../observe/queries.js';

/**
 * The console's questions of the ledger that `src/observe/queries.ts` does not ask: parked
 * deliveries and inputs by filter, and one delivery with its attempt history and event.
 * Every list is bounded; the filters use the FIFO index (open deliveries only).
 */
type Queryable = Pick<pg.Pool, 'query'>;

export interface ParkedFilter {
  sink?: string;
  /** Event code (TRADE_SUCCESS …) or the parking code (INVALID_PARAMETER, HELD …). */
  code?: string;
  orderNo?: string;
}

export interface ParkedRow {
  deliveryId: string;
  sink: string;
  eventId: string;
  eventCode: string;
  orderNo: string | null;
  lastCode: string | null;
  lastMessage: string | null;
  attempts: number;
  held: boolean;
  since: string;
}

export const LIST_LIMIT = 200;

export async function parkedList(db: Queryable, schema: string, f: ParkedFilter, limit = LIST_LIMIT): Promise<{ rows: ParkedRow[]; total: number }> {
  const where = [`d.status = 'rejected'`];
  const params: unknown[] = [];
  if (f.sink) where.push(`d.sink = $${params.push(f.sink)}`);
  if (f.code) where.push(`(e.code = $${params.push(f.code)} OR d.last_code = $${params.length})`);
  if (f.orderNo) where.push(`e.order_no = $${params.push(f.orderNo)}`);
  const from = `FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.id = d.event_id WHERE ${where.join(' AND ')}`;
  const [list, count] = await Promise.all([
    db.query<{ id: string; sink: string; event_id: string; code: string; order_no: string | null; last_code: string | null; last_message: string | null; attempts: number; updated_at: Date }>(
      `SELECT d.id::text, d.sink, d.event_id, e.code, e.order_no, d.last_code, d.last_message, d.attempts, d.updated_at ${from} ORDER BY d.id LIMIT $${params.length + 1}`,
      [...params, limit],
    ),
    db.query<{ n: number }>(`SELECT count(*)::int AS n ${from}`, params),
  ]);
  return {
    total: count.rows[0]?.n ?? 0,
    rows: list.rows.map((r) => ({
      deliveryId: r.id, sink: r.sink, eventId: r.event_id, eventCode: r.code, orderNo: r.order_no, lastCode: r.last_code,
      lastMessage: r.last_message, attempts: r.attempts, held: r.last_code === HELD, since: r.updated_at.toISOString(),
    })),
  };
}

export interface Attempt {
  attempt: number;
  at: string;
  outcome: string;
  requestId: string | null;
  httpStatus: number | null;
  remoteCode: string | null;
  remoteSubCode: string | null;
  remoteMessage: string | null;
  durationMs: number | null;
}

export interface DeliveryDetail {
  deliveryId: string;
  sink: string;
  eventId: string;
  status: string;
  lastCode: string | null;
  lastMessage: string | null;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  event: { code: string; kind: string; orderNo: string | null; refundId: string | null; occurredAt: string; committedAt: string; source: string; position: string; payload: BusinessEvent };
  history: Attempt[];
}

export async function deliveryDetail(db: Queryable, schema: string, sink: string, eventId: string): Promise<DeliveryDetail | undefined> {
  const { rows } = await db.query<{
    id: string; status: string; last_code: string | null; last_message: string | null; attempts: number; created_at: Date; updated_at: Date;
    code: string; kind: string; order_no: string | null; refund_id: string | null; occurred_at: Date; committed_at: Date; source: string; position: string; payload: BusinessEvent;
  }>(
    `SELECT d.id::text, d.status, d.last_code, d.last_message, d.attempts, d.created_at, d.updated_at,
            e.code, e.kind, e.order_no, e.refund_id, e.occurred_at, e.committed_at, e.source, e.position, e.payload
       FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.id = d.event_id
      WHERE d.sink = $1 AND d.event_id = $2`,
    [sink, eventId],
  );
  const r = rows[0];
  if (!r) return undefined;
  const history = await db.query<{
    attempt: number; at: Date; outcome: string; request_id: string | null; http_status: number | null; remote_code: string | null;
    remote_sub_code: string | null; remote_message: string | null; duration_ms: number | null;
  }>(`SELECT attempt, at, outcome, request_id, http_status, remote_code, remote_sub_code, remote_message, duration_ms
        FROM ${schema}.attempts WHERE delivery_id = $1 ORDER BY attempt DESC`, [r.id]);
  return {
    deliveryId: r.id, sink, eventId, status: r.status, lastCode: r.last_code, lastMessage: r.last_message, attempts: r.attempts,
    createdAt: r.created_at.toISOString(), updatedAt: r.updated_at.toISOString(),
    event: {
      code: r.code, kind: r.kind, orderNo: r.order_no, refundId: r.refund_id, occurredAt: r.occurred_at.toISOString(),
      committedAt: r.committed_at.toISOString(), source: r.source, position: r.position, payload: r.payload,
    },
    history: history.rows.map((a) => ({
      attempt: a.attempt, at: a.at.toISOString(), outcome: a.outcome, requestId: a.request_id, httpStatus: a.http_status,
      remoteCode: a.remote_code, remoteSubCode: a.remote_sub_code, remoteMessage: a.remote_message, durationMs: a.duration_ms,
    })),
  };
}

/** A parked input as `status` shows it. */
export type ParkedInputRow = ParkedInput;

/** Unresolved parked inputs; `text` matches the reason or the stream (an order number appears in the reason). */
export async function parkedInputList(db: Queryable, schema: string, f: { text?: string }, limit = LIST_LIMIT): Promise<{ rows: ParkedInputRow[]; total: number }> {
  const where = ['resolved_at IS NULL'];
  const params: unknown[] = [];
  if (f.text) where.push(`(strpos(reason, $${params.push(f.text)}) > 0 OR strpos(stream, $${params.length}) > 0 OR strpos(raw, $${params.length}) > 0)`);
  const from = `FROM ${schema}.parked_inputs WHERE ${where.join(' AND ')}`;
  const [list, count] = await Promise.all([
    db.query<{ id: string; source: string; stream: string; position: string; reason: string; created_at: Date }>(
      `SELECT id::text, source, stream, position, reason, created_at ${from} ORDER BY id LIMIT $${params.length + 1}`,
      [...params, limit],
    ),
    db.query<{ n: number }>(`SELECT count(*)::int AS n ${from}`, params),
  ]);
  return {
    total: count.rows[0]?.n ?? 0,
    rows: list.rows.map((r) => ({ id: r.id, source: r.source, stream: r.stream, position: r.position, reason: r.reason, at: r.created_at.toISOString() })),
  };
}

/** Event ids of the parked deliveries a filter matches, held ones left out (they follow the delivery they wait behind). */
export async function parkedEventIds(db: Queryable, schema: string, f: ParkedFilter): Promise<string[]> {
  const { rows } = await parkedList(db, schema, f, 10_000);
  return [...new Set(rows.filter((r) => !r.held).map((r) => r.eventId))];
}
