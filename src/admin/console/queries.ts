import type pg from 'pg';
import type { BusinessEvent } from '../../core/events.js';
import * as q from '../../ledger/queries-sql.js';
import { HELD } from '../../ledger/replay.js';
import type { ParkedInput } from '../../observe/queries.js';

/**
 * The console's questions of the ledger that `src/observe/queries.ts` does not ask: parked
 * deliveries and inputs by filter, and one delivery with its attempt history and event
 * (statements in `src/ledger/queries-sql.ts`). Every list is bounded; the parked filters read
 * open exceptions only (the FIFO index).
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
  const params = [f.sink ?? null, f.code ?? null, f.orderNo ?? null];
  const [list, count] = await Promise.all([
    db.query<{ id: string; sink: string; event_id: string; code: string; order_no: string | null; last_code: string | null; last_message: string | null; attempts: number; updated_at: Date }>(
      q.parkedExceptions(schema),
      [...params, limit],
    ),
    db.query<{ n: number }>(q.parkedExceptionCount(schema), params),
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
  /** The event's seq (an exception row's id). */
  deliveryId: string;
  sink: string;
  eventId: string;
  /** pending | delivered | not_applicable | rejected | skipped; `unrecorded` when the cursor passed it and no record is kept. */
  status: string;
  /**
   * Where the state comes from: an exception row (`deliveries`, with its attempt history), the
   * outcome the sink's cursor wrote as it passed the event, or the log (still past the cursor).
   */
  record: 'exception' | 'outcome' | 'log';
  lastCode: string | null;
  lastMessage: string | null;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  event: { code: string; kind: string; orderNo: string | null; refundId: string | null; occurredAt: string; committedAt: string; source: string; position: string; payload: BusinessEvent };
  history: Attempt[];
}

const EVENT_ID = /^[0-9a-f]{32}$/;

/**
 * One (event, sink) delivery: its exception row when it has one, else the outcome the
 * sink's cursor wrote, else pending while the event is past the cursor. Undefined when the
 * ledger knows no such event, or the sink does not take it.
 */
export async function deliveryDetail(db: Queryable, schema: string, sink: string, eventId: string): Promise<DeliveryDetail | undefined> {
  if (!EVENT_ID.test(eventId)) return undefined;
  const [ev, ex] = await Promise.all([
    db.query<{
      seq: string; seq_in_log: string | null; code: string | null; payload: BusinessEvent | null; committed_at: Date | null; created_at: Date | null;
      source: string | null; position: string | null; takes: boolean | null; past_cursor: boolean | null;
      outcome: string | null; outcome_attempts: number | null; outcome_at: Date | null; request_id: string | null; http_status: number | null; remote_code: string | null;
    }>(q.eventForSink(schema), [sink, eventId]),
    db.query<{
      id: string; status: string; last_code: string | null; last_message: string | null; attempts: number; created_at: Date; updated_at: Date;
      code: string | null; order_no: string | null; committed_at: Date | null; payload: BusinessEvent | null;
    }>(q.exceptionRow(schema), [sink, eventId]),
  ]);
  const l = ev.rows[0];
  const d = ex.rows[0];
  const payload = d?.payload ?? l?.payload;
  if (!payload) return undefined;
  const event: DeliveryDetail['event'] = {
    code: l?.code ?? d?.code ?? payload.code,
    kind: payload.kind,
    orderNo: payload.orderNo ?? d?.order_no ?? null,
    refundId: payload.refundId ?? null,
    occurredAt: new Date(payload.occurredAt).toISOString(),
    committedAt: (l?.committed_at ?? d?.committed_at ?? new Date(payload.occurredAt)).toISOString(),
    // Gone with its log partition: an exception row keeps its own payload, not where it came from.
    source: l?.source ?? '-',
    position: l?.position ?? '-',
    payload,
  };
  if (d) {
    const history = await db.query<{
      attempt: number; at: Date; outcome: string; request_id: string | null; http_status: number | null; remote_code: string | null;
      remote_sub_code: string | null; remote_message: string | null; duration_ms: number | null;
    }>(q.attemptHistory(schema), [sink, d.id]);
    return {
      deliveryId: d.id, sink, eventId, status: d.status, record: 'exception', lastCode: d.last_code, lastMessage: d.last_message, attempts: d.attempts,
      createdAt: (l?.created_at ?? d.created_at).toISOString(), updatedAt: d.updated_at.toISOString(), event,
      history: history.rows.map((a) => ({
        attempt: a.attempt, at: a.at.toISOString(), outcome: a.outcome, requestId: a.request_id, httpStatus: a.http_status,
        remoteCode: a.remote_code, remoteSubCode: a.remote_sub_code, remoteMessage: a.remote_message, durationMs: a.duration_ms,
      })),
    };
  }
  if (!l?.takes) return undefined;
  const createdAt = l.created_at!.toISOString();
  if (l.outcome) {
    // The outcome keeps the last attempt only (earlier ones were retried in memory).
    const at = l.outcome_at!.toISOString();
    return {
      deliveryId: l.seq, sink, eventId, status: l.outcome, record: 'outcome',
      lastCode: l.remote_code ?? (l.outcome === 'not_applicable' ? 'NOT_APPLICABLE' : null), lastMessage: null, attempts: l.outcome_attempts ?? 0,
      createdAt, updatedAt: at, event,
      history: (l.outcome_attempts ?? 0) > 0
        ? [{ attempt: l.outcome_attempts!, at, outcome: l.outcome, requestId: l.request_id, httpStatus: l.http_status, remoteCode: l.remote_code, remoteSubCode: null, remoteMessage: null, durationMs: null }]
        : [],
    };
  }
  return {
    deliveryId: l.seq, sink, eventId, status: l.past_cursor ? 'pending' : 'unrecorded', record: 'log', lastCode: null, lastMessage: null, attempts: 0,
    createdAt, updatedAt: createdAt, event, history: [],
  };
}

/** A parked input as `status` shows it. */
export type ParkedInputRow = ParkedInput;

/** Unresolved parked inputs; `text` matches the reason or the stream (an order number appears in the reason). */
export async function parkedInputList(db: Queryable, schema: string, f: { text?: string }, limit = LIST_LIMIT): Promise<{ rows: ParkedInputRow[]; total: number }> {
  const text = f.text || null;
  const [list, count] = await Promise.all([
    db.query<{ id: string; source: string; stream: string; position: string; reason: string; created_at: Date }>(q.parkedInputMatches(schema), [text, limit]),
    db.query<{ n: number }>(q.parkedInputMatchCount(schema), [text]),
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
