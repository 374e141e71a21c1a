import type pg from 'pg';

/**
 * The state of every (event, sink) delivery in a version-3 ledger, as one row each: the
 * outcome the sink's cursor wrote as it passed the event, else the event's delivery row (an
 * exception), else pending (past the cursor, or held in a running dispatcher's memory).
 */
export interface DeliveryState {
  eventId: string;
  sink: string;
  seq: number;
  code: string;
  orderKey: string;
  status: string;
  attempts: number;
  lastCode: string | null;
  result: Record<string, unknown> | null;
}

export async function deliveryStates(db: Pick<pg.Pool, 'query'>, schema: string): Promise<DeliveryState[]> {
  const { rows } = await db.query<{ event_id: string; sink: string; seq: string; code: string; order_key: string; status: string; attempts: number; last_code: string | null; result: Record<string, unknown> | null }>(
    `SELECT encode(l.id, 'hex') AS event_id, k.name AS sink, l.seq::text AS seq, l.code, l.order_key,
            coalesce(o.status, d.status, 'pending') AS status, coalesce(o.attempts, d.attempts, 0) AS attempts,
            d.last_code, coalesce(o.result, d.result) AS result
       FROM ${schema}.log l
       JOIN ${schema}.sinks k ON (l.sinks & (1 << k.bit)) <> 0
       LEFT JOIN ${schema}.deliveries d ON d.event_id = encode(l.id, 'hex') AND d.sink = k.name
       LEFT JOIN LATERAL (SELECT status, attempts, result FROM ${schema}.outcomes o
                           WHERE o.seq = l.seq AND o.sink = k.name ORDER BY o.at DESC LIMIT 1) o ON d.event_id IS NULL
      ORDER BY l.seq, k.name`,
  );
  return rows.map((r) => ({
    eventId: r.event_id, sink: r.sink, seq: Number(r.seq), code: r.code, orderKey: r.order_key, status: r.status,
    attempts: r.attempts, lastCode: r.last_code, result: r.result,
  }));
}

/** How many deliveries are in each status (optionally of one sink). */
export async function statusCounts(db: Pick<pg.Pool, 'query'>, schema: string, sink?: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of await deliveryStates(db, schema)) if (!sink || s.sink === sink) out[s.status] = (out[s.status] ?? 0) + 1;
  return out;
}

/** Delivered (event id → times) per sink, counting outcomes and delivered rows: a second outcome of one event shows as 2. */
export async function deliveredTimes(db: Pick<pg.Pool, 'query'>, schema: string, sink: string): Promise<Map<string, number>> {
  const { rows } = await db.query<{ event_id: string; n: number }>(
    `SELECT event_id, count(*)::int AS n FROM (
       SELECT encode(l.id, 'hex') AS event_id FROM ${schema}.outcomes o JOIN ${schema}.log l ON l.seq = o.seq
        WHERE o.sink = $1 AND o.status = 'delivered'
       UNION ALL
       SELECT event_id FROM ${schema}.deliveries WHERE sink = $1 AND status = 'delivered') x
     GROUP BY event_id`,
    [sink],
  );
  return new Map(rows.map((r) => [r.event_id, r.n]));
}
