import type pg from 'pg';
import type { BusinessEvent } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import type { AttemptInfo } from '../../src/core/sink.js';
import { createLedger, type Ledger, type LogEntry, type LogFlush } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';

/**
 * Version-3 ledger states for the operator tests, written the way the dispatcher writes
 * them: the log is read forward from a sink's cursors (`ledger.readLog`), and what settled is
 * written with the cursors that pass it in one `ledger.flushLog`: outcomes (delivered, not
 * applicable) and exceptions (pending, parked) with their attempt history. An event left
 * alone stays past its shard's cursor (pending in the log), and so must every later event of
 * that shard: a cursor never passes an unsettled event.
 */

type Queryable = Pick<pg.Pool, 'query'>;

export interface HistoryEntry {
  attempt: number;
  outcome: string;
  info?: AttemptInfo;
  code?: string;
  message?: string;
}

export interface OutcomeDecision {
  as: 'delivered' | 'not_applicable';
  attempts?: number;
  info?: AttemptInfo;
  result?: Record<string, unknown>;
}

export interface ExceptionDecision {
  as: 'pending' | 'rejected';
  attempts?: number;
  delayMs?: number;
  code?: string;
  message?: string;
  history?: HistoryEntry[];
}

export type Decision = 'leave' | OutcomeDecision | ExceptionDecision;

/**
 * Settles the log past `sink`'s cursors as `decide` says, in one flush; returns what was
 * written. Throws when a settled event would sit behind a left one of its shard.
 */
/**
 * Everything of `sink` past its lowest cursor, read forward as the dispatcher reads it, with
 * the horizon of the last read and the cursors it started from.
 */
export async function readPastCursors(ledger: Ledger, sink: string, page = 1_000): Promise<{ cursors: number[]; entries: LogEntry[]; horizon: number }> {
  const cursors = await ledger.cursors(sink);
  const entries: LogEntry[] = [];
  let from = Math.min(...cursors);
  let horizon = from;
  for (;;) {
    const got = await ledger.readLog(sink, from, page);
    entries.push(...got.entries);
    horizon = Math.max(horizon, got.horizon);
    if (got.entries.length < page) break;
    from = got.entries.at(-1)!.seq;
  }
  return { cursors, entries: entries.filter((e) => e.seq > cursors[e.shard]!), horizon: Math.max(horizon, entries.at(-1)?.seq ?? 0) };
}

/** Each shard's cursor moves to just before its first unsettled event, else to the horizon: the moves, for `LogFlush.cursors`. */
export function cursorMoves(cursors: readonly number[], firstUnsettled: ReadonlyMap<number, number>, horizon: number): LogFlush['cursors'] {
  const moves: LogFlush['cursors'] = [];
  cursors.forEach((seq, shard) => {
    const u = firstUnsettled.get(shard);
    const target = u === undefined ? horizon : u - 1;
    if (target > seq) moves.push({ shard, seq: target });
  });
  return moves;
}

/**
 * One flush of `sink` as `decide` settles the events past its cursors ('leave': not settled,
 * its shard's cursor stops before it); returns what was flushed.
 */
export async function settleLog(ledger: Ledger, sink: string, decide: (entry: LogEntry) => Decision): Promise<LogFlush> {
  const { cursors, entries, horizon } = await readPastCursors(ledger, sink);
  const flush: LogFlush = { sink, outcomes: [], exceptions: [], attempts: [], cursors: [] };
  const firstLeft = new Map<number, number>();
  for (const e of entries) {
    const d = decide(e);
    if (d === 'leave') {
      if (!firstLeft.has(e.shard)) firstLeft.set(e.shard, e.seq);
      continue;
    }
    if (firstLeft.has(e.shard)) throw new Error(`event ${e.eventId} (seq ${e.seq}) is settled behind a pending one of shard ${e.shard}: the cursor cannot pass it`);
    if (d.as === 'pending' || d.as === 'rejected') {
      const x = d as ExceptionDecision;
      flush.exceptions.push({ entry: e, status: x.as, attempts: x.attempts ?? 0, delayMs: x.delayMs ?? 0, code: x.code, message: x.message });
      for (const h of x.history ?? []) flush.attempts.push({ seq: e.seq, ...h });
    } else {
      const x = d as OutcomeDecision;
      flush.outcomes.push({ seq: e.seq, shard: e.shard, status: x.as, attempts: x.attempts ?? 1, info: x.info, result: x.result });
    }
  }
  flush.cursors = cursorMoves(cursors, firstLeft, horizon);
  await ledger.flushLog(flush);
  return flush;
}

/** Every event past `sink`'s cursors (of `only`, when given) becomes a pending exception row with no attempt yet, as if waiting behind an earlier one. */
export function stageAsExceptions(ledger: Ledger, sink: string, only?: readonly string[]): Promise<LogFlush> {
  return settleLog(ledger, sink, (e) => (!only || only.includes(e.eventId) ? { as: 'pending', attempts: 0 } : 'leave'));
}

/**
 * The state of one (event, sink) delivery: the outcome the cursor wrote, else the exception
 * row, else `pending` when the event is past the cursor; undefined when the ledger has none.
 */
export async function deliveryState(db: Queryable, schema: string, sink: string, id: string): Promise<{ status: string; last_code: string | null } | undefined> {
  const { rows } = await db.query<{ status: string | null; last_code: string | null }>(
    `SELECT coalesce(d.status, o.status, CASE WHEN l.seq > coalesce(c.seq, 0) THEN 'pending' END) AS status,
            coalesce(d.last_code, o.remote_code) AS last_code
       FROM ${schema}.event_ids i
       LEFT JOIN ${schema}.log l ON l.seq = i.seq AND (l.sinks & (1 << (SELECT bit FROM ${schema}.sinks WHERE name = $1))) <> 0
       LEFT JOIN ${schema}.cursors c ON c.sink = $1 AND c.shard = l.shard
       LEFT JOIN ${schema}.deliveries d ON d.sink = $1 AND d.event_id = $2
       LEFT JOIN LATERAL (SELECT status, remote_code FROM ${schema}.outcomes o WHERE o.sink = $1 AND o.seq = i.seq ORDER BY o.at DESC LIMIT 1) o ON true
      WHERE i.id = decode($2, 'hex')`,
    [sink, id],
  );
  const r = rows[0];
  return r?.status ? { status: r.status, last_code: r.last_code } : undefined;
}

/** The recorded attempts of an exception, newest first. */
export async function exceptionAttempts(db: Queryable, schema: string, sink: string, id: string): Promise<Array<{ attempt: number; request_id: string | null; http_status: number | null }>> {
  const { rows } = await db.query(
    `SELECT a.attempt, a.request_id, a.http_status FROM ${schema}.attempts a JOIN ${schema}.deliveries d ON d.sink = a.sink AND d.id = a.delivery_id
      WHERE d.sink = $1 AND d.event_id = $2 ORDER BY a.attempt DESC`,
    [sink, id],
  );
  return rows;
}

/** Deliveries still pending, every sink: the log past the cursors, and pending exception rows. */
export async function pendingCount(db: Queryable, schema: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT ((SELECT count(*) FROM ${schema}.log l JOIN ${schema}.sinks k ON (l.sinks & (1 << k.bit)) <> 0
                LEFT JOIN ${schema}.cursors c ON c.sink = k.name AND c.shard = l.shard
               WHERE l.seq > coalesce(c.seq, 0))
          + (SELECT count(*) FROM ${schema}.deliveries WHERE status = 'pending'))::int AS n`,
  );
  return rows[0]!.n;
}

export const PROJECT = 'demo-cinema';
export const id = (order: string, code: string, refund?: string) => eventId(refund ? [PROJECT, order, code, refund] : [PROJECT, order, code]);

export function tradeEvent(order: string, code: 'TRADE_SUCCESS' | 'TRADE_CONFIRM' | 'REFUND_SUCCESS', refund?: string): BusinessEvent {
  return {
    id: id(order, code, refund),
    code,
    kind: 'TRADE',
    orderKey: order,
    orderNo: order,
    ...(refund ? { refundId: refund } : {}),
    occurredAt: '2026-11-01T10:00:00.000Z',
    order: { order_no: order, status: 'PAID' },
  };
}

/**
 * A ledger with known figures:
 *
 *   antchain: A/TS delivered (now); A/TC pending in the log (stored 90 s ago, the last event
 *             of its shard, so the cursor stops before it); B/TS parked; B/TC a pending
 *             exception blocked behind it; C/TS a pending exception retrying (next attempt
 *             in 1 h); D/TS delivered 5 minutes ago
 *   zhima:    A/TS delivered, B/TS parked, C/TS not applicable
 *   parked inputs: 2 unresolved, 1 resolved; checkpoints: postgres slot 0/1234, kafka orders/0 41, orders/1 7
 */
export async function seedFigures(pool: pg.Pool, schema: string) {
  const client = await pool.connect();
  try {
    await migrate(client, schema);
  } finally {
    client.release();
  }
  const ledger = createLedger(pool, schema);
  const at = '2026-11-01T10:00:00.000Z';
  const ev = (e: BusinessEvent, sinks: string[]) => ({ event: e, sinks, position: '0/10', committedAt: at });
  await ledger.append({
    source: 'postgres',
    events: [
      ev(tradeEvent('A', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('B', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('B', 'TRADE_CONFIRM'), ['antchain']),
      ev(tradeEvent('C', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('D', 'TRADE_SUCCESS'), ['antchain']),
      ev(tradeEvent('A', 'TRADE_CONFIRM'), ['antchain']),
    ],
    orders: [],
    bad: [
      { stream: 'public.orders', position: '0/20', reason: 'public.orders order X1: status column "status" is missing or empty', raw: '{}' },
      { stream: 'public.orders', position: '0/21', reason: 'public.orders: order number column "order_no" is missing or empty', raw: '{}' },
      { stream: 'public.orders', position: '0/22', reason: 'resolved one', raw: '{}' },
    ],
    checkpoints: [{ stream: 'slot', position: '0/1234' }],
  });
  await ledger.append({ source: 'kafka', events: [], orders: [], bad: [], checkpoints: [{ stream: 'orders/0', position: '41' }, { stream: 'orders/1', position: '7' }] });
  await pool.query(`UPDATE ${schema}.parked_inputs SET resolved_at = now() WHERE reason = 'resolved one'`);

  const A = id('A', 'TRADE_SUCCESS'), B = id('B', 'TRADE_SUCCESS'), C = id('C', 'TRADE_SUCCESS'), D = id('D', 'TRADE_SUCCESS');
  const AC = id('A', 'TRADE_CONFIRM'), BC = id('B', 'TRADE_CONFIRM');
  const info = (sink: string, e: string, httpStatus: number): AttemptInfo => ({ requestId: `req-${sink}-${e.slice(0, 6)}`, httpStatus, durationMs: 3 });
  const parked = (sink: string, e: string): Decision => {
    const code = 'INVALID_EVENT';
    const message = 'event_child.user_id_no: column "buyer_phone" is not a mainland China mobile number';
    return { as: 'rejected', attempts: 1, code, message, history: [{ attempt: 1, outcome: 'rejected', info: info(sink, e, 200), code, message }] };
  };
  await settleLog(ledger, 'antchain', ({ eventId: e }) => {
    if (e === A || e === D) return { as: 'delivered', attempts: 1, info: info('antchain', e, 200) };
    if (e === B) return parked('antchain', e);
    if (e === BC) return { as: 'pending', attempts: 0 };
    if (e === C) {
      const code = 'HTTP_503', message = 'Service Unavailable';
      return { as: 'pending', attempts: 1, delayMs: 3_600_000, code, message, history: [{ attempt: 1, outcome: 'retry', info: info('antchain', e, 503), code, message }] };
    }
    return 'leave';
  });
  await settleLog(ledger, 'zhima', ({ eventId: e }) =>
    e === A ? { as: 'delivered', attempts: 1, info: info('zhima', e, 200) } : e === B ? parked('zhima', e) : e === C ? { as: 'not_applicable', attempts: 1 } : 'leave',
  );
  const seqOf = async (e: string) => (await pool.query<{ seq: string }>(`SELECT seq::text FROM ${schema}.event_ids WHERE id = decode($1, 'hex')`, [e])).rows[0]!.seq;
  await pool.query(`UPDATE ${schema}.outcomes SET at = now() - interval '5 minutes' WHERE sink = 'antchain' AND seq = $1`, [await seqOf(D)]);
  await pool.query(`UPDATE ${schema}.log SET created_at = now() - interval '90 seconds' WHERE seq = $1`, [await seqOf(AC)]);
  return { ledger, A, B, C, D, AC, BC };
}
