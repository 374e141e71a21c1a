import type pg from 'pg';
import type { BusinessEvent, Row } from '../core/events.js';
import type { BadInput, Checkpoint } from '../core/source.js';
import type { AttemptInfo } from '../core/sink.js';
import { storableText } from '../core/trust.js';

/** An event with the sinks that take it, ready to be stored. */
export interface EventToStore {
  event: BusinessEvent;
  sinks: string[];
  position: string;
  committedAt: string;
}

export interface AppendInput {
  source: string;
  events: EventToStore[];
  orders: Array<{ orderNo: string; row: Row }>;
  /** `rowKey`: the source row the input is (see `Classifier.rowKeyOf`); an unresolved row is parked once. */
  bad: Array<BadInput & { rowKey?: string | undefined }>;
  checkpoints: Checkpoint[];
  /**
   * Room per sink to claim new deliveries right away (workers that are idle enough): up to
   * `n` are stored leased for `leaseMs` as attempt 1 and returned in `leased`.
   */
  room?: Array<{ sink: string; n: number; leaseMs: number }>;
}

export interface AppendResult {
  /** Events new to the ledger (the rest were already there: same id). */
  inserted: number;
  /** Of those, how many per event code. */
  stored: Record<string, number>;
  /** New deliveries per sink. */
  deliveries: Record<string, number>;
  /** New deliveries stored already claimed (see `AppendInput.room`). */
  leased: Array<{ id: string; eventId: string; sink: string }>;
}

export interface ClaimedDelivery {
  id: string;
  eventId: string;
  sink: string;
  attempt: number;
  event: BusinessEvent;
  committedAt: Date;
}

/** How one attempt ended, as the ledger records it. */
export interface Settlement {
  eventId: string;
  sink: string;
  deliveryId: string;
  attempt: number;
  /** New status: pending (retry later), delivered, rejected (parked), not_applicable. */
  status: 'pending' | 'delivered' | 'rejected' | 'not_applicable';
  /** For `pending`: when to try again, in ms from now. */
  delayMs?: number;
  outcome: string;
  code?: string | undefined;
  message?: string | undefined;
  result?: Record<string, unknown> | undefined;
  info?: AttemptInfo | undefined;
}

/**
 * The durable record: events, deliveries, attempts, order rows, parked input and source
 * checkpoints, in one Postgres schema. Every state change is one SQL statement, so a
 * crash between any two calls leaves the ledger consistent.
 */
/** A pool, or one client inside a transaction the caller controls (backfill pages). */
export type Queryable = pg.Pool | pg.PoolClient;

export interface LedgerOptions {
  attemptHistory?: number;
  /**
   * Where the prepared append and settle run, when not on `pool`: connections that keep one
   * generic plan per statement (plan_cache_mode = force_generic_plan). Only those two, whose
   * plans cannot go wrong as tables grow, belong there: a generic claim (unknown sink and
   * limit) scanned and sorted every pending delivery, 115 ms a claim at 200k.
   */
  prepared?: Queryable;
}

export function createLedger<Q extends Queryable = pg.Pool>(pool: Q, schema: string, options: LedgerOptions = {}) {
  const s = schema;
  const hot = options.prepared ?? pool;
  const lockClass = hash32(`order-relay:${schema}`);
  const history = options.attemptHistory ?? 20;
  // Fresh statistics keep claim and settle on their indexes while the tables grow fast, and
  // make Postgres re-plan the statements it keeps prepared. The ledger analyzes its tables
  // each time they have grown by as much again as they held at the last analyze (1,000 rows
  // at least): a cached plan is never made for a table less than half its real size, and
  // the number of ANALYZE runs grows with the logarithm of the ledger's size.
  let rowsSinceAnalyze = 0;
  let rowsAtAnalyze = 0;
  let analyzing = false;
  function noteGrowth(rows: number): void {
    rowsSinceAnalyze += rows;
    if (analyzing || rowsSinceAnalyze < Math.max(1_000, rowsAtAnalyze)) return;
    analyzing = true;
    rowsSinceAnalyze = 0;
    void (async () => {
      await pool.query(`ANALYZE ${s}.deliveries, ${s}.events`);
      const { rows: r } = await pool.query<{ n: number }>(
        `SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = $1::regclass`,
        [`${s}.deliveries`],
      );
      rowsAtAnalyze = r[0]?.n ?? rowsAtAnalyze;
    })()
      .catch(() => {}) // best effort: autovacuum analyzes too
      .finally(() => (analyzing = false));
  }

  const plainDeliveries = /* sql */ `dl AS (
      INSERT INTO ${s}.deliveries (event_id, sink, order_key)
      SELECT d.event_id, d.sink, d.order_key
        FROM ROWS FROM (json_to_recordset($3::json) AS (event_id text, sink text, order_key text))
             WITH ORDINALITY AS d(event_id, sink, order_key, ord)
       WHERE d.event_id IN (SELECT id FROM ev)
       ORDER BY d.ord
      RETURNING id, event_id, sink, attempts
    )`;
  // The same, but the deliveries that may go out at once are claimed as they are stored
  // (attempt 1, leased), for the caller to hand to its idle workers: no claim round trip
  // for a steady trickle of orders. May go out at once = the first delivery of its order
  // in this batch, with no unfinished (pending or rejected) delivery of that order before
  // it, up to the room each sink's worker has ($7). The FIFO rule is the claim's.
  const leasingDeliveries = /* sql */ `nd AS (
      SELECT d.event_id, d.sink, d.order_key, d.ord,
             row_number() OVER (PARTITION BY d.sink, d.order_key ORDER BY d.ord) = 1 AS first_of_order
        FROM ROWS FROM (json_to_recordset($3::json) AS (event_id text, sink text, order_key text))
             WITH ORDINALITY AS d(event_id, sink, order_key, ord)
       WHERE d.event_id IN (SELECT id FROM ev)
    ), room AS (
      SELECT * FROM json_to_recordset($7::json) AS r(sink text, n int, lease_ms int)
    ), free AS (
      SELECT f.event_id, f.sink, room.lease_ms
        FROM (SELECT n.event_id, n.sink, row_number() OVER (PARTITION BY n.sink ORDER BY n.ord) AS k
                FROM nd n
               WHERE n.first_of_order AND n.sink IN (SELECT sink FROM room)
                 -- OFFSET 0: a probe of deliveries_fifo per row, whatever the statistics say.
                 AND NOT EXISTS (
                       SELECT 1 FROM ${s}.deliveries e
                        WHERE e.sink = n.sink AND e.order_key = n.order_key AND e.status IN ('pending', 'rejected')
                       OFFSET 0)) f
        JOIN room ON room.sink = f.sink
       WHERE f.k <= room.n
    ), dl AS (
      INSERT INTO ${s}.deliveries (event_id, sink, order_key, attempts, lease_until)
      SELECT n.event_id, n.sink, n.order_key,
             CASE WHEN fr.event_id IS NULL THEN 0 ELSE 1 END,
             CASE WHEN fr.event_id IS NULL THEN NULL ELSE now() + fr.lease_ms * interval '1 millisecond' END
        FROM nd n LEFT JOIN free fr ON fr.event_id = n.event_id AND fr.sink = n.sink
       ORDER BY n.ord
      RETURNING id, event_id, sink, attempts
    )`;
  const appendStatement = (lease: boolean) => /* sql */ `
    WITH ev AS (
      INSERT INTO ${s}.events (id, code, kind, order_key, order_no, refund_id, occurred_at, committed_at, source, position, payload)
      SELECT x.id, x.code, x.kind, x.order_key, x.order_no, x.refund_id, x.occurred_at, x.committed_at, $1, x.position, x.payload
        FROM json_to_recordset($2::json) AS x(id text, code text, kind text, order_key text, order_no text,
             refund_id text, occurred_at timestamptz, committed_at timestamptz, position text, payload json)
      ON CONFLICT (id) DO NOTHING
      RETURNING id, code
    ), ${lease ? leasingDeliveries : plainDeliveries}, od AS (
      INSERT INTO ${s}.orders (order_no, row)
      SELECT o.order_no, o.row FROM json_to_recordset($4::json) AS o(order_no text, row json)
      ON CONFLICT (order_no) DO UPDATE SET row = EXCLUDED.row, updated_at = now()
      RETURNING 1
    ), pk AS (
      -- One unresolved row per source row (row_key): parked again, it gets the latest reason
      -- and input. A batch's repeats of a row are one (the last): ON CONFLICT may not meet a
      -- row twice in one statement. Input without a row_key is parked as it comes.
      INSERT INTO ${s}.parked_inputs (source, stream, position, reason, raw, row_key)
      SELECT $1, p.stream, p.position, p.reason, p.raw, p.row_key
        FROM (SELECT DISTINCT ON (p.row_key, CASE WHEN p.row_key IS NULL THEN p.ord END) p.*
                FROM ROWS FROM (json_to_recordset($5::json) AS (stream text, position text, reason text, raw text, "rowKey" text))
                     WITH ORDINALITY AS p(stream, position, reason, raw, row_key, ord)
               ORDER BY p.row_key, CASE WHEN p.row_key IS NULL THEN p.ord END, p.ord DESC) p
       ORDER BY p.ord
      ON CONFLICT (row_key) WHERE resolved_at IS NULL
      DO UPDATE SET reason = EXCLUDED.reason, raw = EXCLUDED.raw, last_seen_at = now()
      RETURNING 1
    ), cp AS (
      INSERT INTO ${s}.checkpoints (source, stream, position)
      SELECT $1, c.stream, c.position FROM json_to_recordset($6::json) AS c(stream text, position text)
      ON CONFLICT (source, stream) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
      -- Never backwards: a late write from an instance that lost its partition (or slot)
      -- must not rewind the position its successor has moved on from.
      WHERE CASE
              WHEN EXCLUDED.position ~ '^[0-9]+$' AND ${s}.checkpoints.position ~ '^[0-9]+$'
                THEN EXCLUDED.position::numeric >= ${s}.checkpoints.position::numeric
              WHEN EXCLUDED.position ~ '^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$' AND ${s}.checkpoints.position ~ '^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$'
                THEN EXCLUDED.position::pg_lsn >= ${s}.checkpoints.position::pg_lsn
              ELSE true
            END
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM ev)::int AS inserted,
           (SELECT coalesce(jsonb_object_agg(code, n), '{}'::jsonb) FROM (SELECT code, count(*)::int AS n FROM ev GROUP BY code) g) AS stored,
           (SELECT coalesce(jsonb_object_agg(sink, n), '{}'::jsonb) FROM (SELECT sink, count(*)::int AS n FROM dl GROUP BY sink) g) AS deliveries,
           (SELECT coalesce(json_agg(json_build_object('id', id::text, 'event_id', event_id, 'sink', sink)), '[]'::json) FROM dl WHERE attempts = 1) AS leased,
           (SELECT count(*) FROM od) + (SELECT count(*) FROM pk) + (SELECT count(*) FROM cp) AS other`;
  const appendSql = appendStatement(false);
  const appendLeasingSql = appendStatement(true);

  const claimSql = /* sql */ `
    WITH c AS (
      SELECT d.event_id, d.sink FROM ${s}.deliveries d
       WHERE d.sink = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
         AND (d.lease_until IS NULL OR d.lease_until < now())
         -- OFFSET 0 keeps this a probe of deliveries_fifo per candidate. Without it, a
         -- freshly grown table without statistics gets an anti join over every pending
         -- row (measured 1.3 s per claim at 100k pending, 1.5 ms with the probe).
         AND NOT EXISTS (
               SELECT 1 FROM ${s}.deliveries e
                WHERE e.sink = d.sink AND e.order_key = d.order_key AND e.id < d.id
                  AND e.status IN ('pending', 'rejected')
               OFFSET 0)
       ORDER BY d.next_attempt_at, d.id
       LIMIT $2
       FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE ${s}.deliveries u
       SET lease_until = now() + $3::int * interval '1 millisecond', attempts = u.attempts + 1, updated_at = now()
      FROM c, ${s}.events ev
     WHERE u.event_id = c.event_id AND u.sink = c.sink AND ev.id = u.event_id
    RETURNING u.id::text AS id, u.event_id, u.sink, u.attempts AS attempt, ev.payload, ev.committed_at`;

  // A settlement applies only to the claim it belongs to: if the lease ran out and another
  // worker claimed the delivery again (attempts moved on), the stale outcome is dropped.
  // The outcomes come as parallel arrays: unnest() of a bound array tells the planner the
  // real row count, so every join stays on the primary keys. (json_to_recordset counts as
  // 100 rows: on a grown table the planner then scanned deliveries and attempts in full,
  // 1.5 ms per settle at 20k deliveries, the largest Postgres cost of a steady stream.)
  const settleCtes = /* sql */ `
    WITH x AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::bigint[], $7::text[], $8::text[],
                           $9::text[], $10::text[], $11::text[], $12::int[], $13::text[], $14::text[], $15::text[], $16::int[])
             AS x(event_id, sink, id, attempt, status, delay_ms, outcome, code, message, result, request_id, http_status,
                  remote_code, remote_sub_code, remote_message, duration_ms)
    ), u AS (
      UPDATE ${s}.deliveries d
         SET status = x.status,
             lease_until = NULL,
             next_attempt_at = CASE WHEN x.status = 'pending' THEN now() + coalesce(x.delay_ms, 0) * interval '1 millisecond' ELSE d.next_attempt_at END,
             last_code = x.code, last_message = x.message,
             result = coalesce(x.result::jsonb, d.result),
             delivered_at = CASE WHEN x.status = 'delivered' THEN now() ELSE d.delivered_at END,
             updated_at = now()
        FROM x
       WHERE d.event_id = x.event_id AND d.sink = x.sink AND d.attempts = x.attempt AND d.status = 'pending'
      RETURNING d.id
    ), a AS (
      INSERT INTO ${s}.attempts (delivery_id, attempt, outcome, request_id, http_status, remote_code, remote_sub_code, remote_message, duration_ms)
      SELECT x.id, x.attempt, x.outcome, x.request_id, x.http_status, x.remote_code, x.remote_sub_code, x.remote_message, x.duration_ms
        FROM x WHERE x.id IN (SELECT id FROM u)
      ON CONFLICT (delivery_id, attempt) DO NOTHING
    )`;
  const settleSql = `${settleCtes} SELECT count(*)::int AS n FROM u`;
  // Only deliveries past `history` attempts have history to trim: a rare, separate variant.
  const settleAndPruneSql = /* sql */ `${settleCtes}, pr AS (
      DELETE FROM ${s}.attempts t USING unnest($17::bigint[], $18::int[]) AS p(id, upto)
       WHERE t.delivery_id = p.id AND t.attempt <= p.upto
    )
    SELECT count(*)::int AS n FROM u`;

  // Append and settle are prepared once per connection (parsed once and, when Postgres finds
  // its generic plan no worse, planned once): with a row or two per call at a steady trickle,
  // planning them cost more than running them. The growth-driven ANALYZE above re-plans them
  // as the tables grow. Claims (rare on the hot path: appends claim) and lookups are planned
  // per call.
  const named = (name: string, text: string, values: unknown[]): pg.QueryConfig => ({ name: `order_relay.${s}.${name}`, text, values });

  /**
   * Serialises an append now and returns the function that writes it: the caller can
   * prepare the next batch while the previous one is still being written.
   */
  function prepareAppend(input: AppendInput): () => Promise<AppendResult> {
    const events = input.events.map(({ event, position, committedAt }) => ({
      id: event.id,
      code: event.code,
      kind: event.kind,
      order_key: event.orderKey,
      order_no: event.orderNo ?? null,
      refund_id: event.refundId ?? null,
      occurred_at: event.occurredAt,
      committed_at: committedAt,
      position,
      payload: event,
    }));
    const deliveries = input.events.flatMap(({ event, sinks }) =>
      sinks.map((sink) => ({ event_id: event.id, sink, order_key: event.orderKey })),
    );
    const orders = input.orders.map((o) => ({ order_no: o.orderNo, row: o.row }));
    const room = (input.room ?? []).filter((r) => r.n > 0).map((r) => ({ sink: r.sink, n: r.n, lease_ms: Math.round(r.leaseMs) }));
    const params = [
      input.source,
      JSON.stringify(events),
      JSON.stringify(deliveries),
      JSON.stringify(orders),
      // A reason may quote a row's value: a NUL in it would make PostgreSQL refuse the whole append.
      JSON.stringify(input.bad.map((b) => ({ ...b, reason: storableText(b.reason) }))),
      JSON.stringify(input.checkpoints),
    ];
    const query = room.length ? named('append_leasing', appendLeasingSql, [...params, JSON.stringify(room)]) : named('append', appendSql, params);
    const lock = orderLocks(lockClass, input.events.map((e) => e.event.orderKey));
    return async () => {
      type Row = { inserted: number; stored: Record<string, number>; deliveries: Record<string, number>; leased: Array<{ id: string; event_id: string; sink: string }> };
      let rows: Row[];
      if (lock === null) {
        ({ rows } = await hot.query<Row>(query));
      } else if ('release' in hot) {
        // A client in the caller's transaction (a backfill page): the lock holds until its commit.
        await hot.query(lock);
        ({ rows } = await hot.query<Row>(query));
      } else {
        const client = await hot.connect();
        // pg-pool drops its error listener from a checked-out client: a connection terminated
        // between two of these statements (a Postgres restart) would be an uncaught 'error'
        // event and kill the process. The failed statement rejects; the client is discarded.
        let broken: Error | undefined;
        const onError = (err: Error) => (broken = err);
        client.on('error', onError);
        try {
          await client.query(`BEGIN; ${lock}`);
          ({ rows } = await client.query<Row>(query));
          await client.query('COMMIT');
        } catch (err) {
          broken ??= err instanceof Error ? err : new Error(String(err));
          await client.query('ROLLBACK').catch(() => {});
          throw err;
        } finally {
          client.removeListener('error', onError);
          client.release(broken);
        }
      }
      const r = rows[0]!;
      const result = { inserted: r.inserted, stored: r.stored, deliveries: r.deliveries, leased: r.leased.map((l) => ({ id: l.id, eventId: l.event_id, sink: l.sink })) };
      noteGrowth(result.inserted + Object.values(result.deliveries).reduce((a, b) => a + b, 0));
      return result;
    };
  }

  return {
    schema,
    pool,

    async loadCheckpoints(source: string): Promise<Checkpoint[]> {
      const { rows } = await pool.query<Checkpoint>(`SELECT stream, position FROM ${s}.checkpoints WHERE source = $1`, [source]);
      return rows;
    },

    async loadOrders(orderNos: string[]): Promise<Map<string, Row>> {
      const map = new Map<string, Row>();
      if (orderNos.length === 0) return map;
      const { rows } = await pool.query<{ order_no: string; row: Row }>(
        `SELECT order_no, row FROM ${s}.orders WHERE order_no = ANY($1::text[])`,
        [orderNos],
      );
      for (const r of rows) map.set(r.order_no, r.row);
      return map;
    },

    /** Events, their deliveries, order rows, parked input and checkpoints: one statement, one transaction. */
    append(input: AppendInput): Promise<AppendResult> {
      return prepareAppend(input)();
    },

    prepareAppend,

    async claim(sink: string, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
      const { rows } = await pool.query<{ id: string; event_id: string; sink: string; attempt: number; payload: BusinessEvent; committed_at: Date }>(
        claimSql,
        [sink, limit, leaseMs],
      );
      return rows
        .map((r) => ({ id: r.id, eventId: r.event_id, sink: r.sink, attempt: r.attempt, event: r.payload, committedAt: r.committed_at }))
        .sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
    },

    /** Records outcomes; returns how many were applied (stale ones are not). */
    async settle(settlements: Settlement[]): Promise<number> {
      if (settlements.length === 0) return 0;
      const col = <T>(f: (x: Settlement) => T): T[] => settlements.map(f);
      const params: unknown[] = [
        col((x) => x.eventId),
        col((x) => x.sink),
        col((x) => x.deliveryId),
        col((x) => x.attempt),
        col((x) => x.status),
        col((x) => x.delayMs ?? null),
        col((x) => x.outcome),
        col((x) => (x.code == null ? null : storableText(x.code))),
        col((x) => (x.message == null ? null : storableText(x.message))),
        col((x) => (x.result === undefined ? null : JSON.stringify(x.result))),
        col((x) => x.info?.requestId ?? null),
        col((x) => x.info?.httpStatus ?? null),
        col((x) => x.info?.remoteCode ?? null),
        col((x) => x.info?.remoteSubCode ?? null),
        col((x) => x.info?.remoteMessage ?? null),
        col((x) => (x.info ? Math.round(x.info.durationMs) : null)),
      ];
      const prune = settlements.filter((x) => x.attempt > history);
      const r = prune.length
        ? await pool.query<{ n: number }>(settleAndPruneSql, [...params, prune.map((x) => x.deliveryId), prune.map((x) => x.attempt - history)])
        : await hot.query<{ n: number }>(named('settle', settleSql, params));
      return r.rows[0]!.n;
    },

    /** Hands back claims whose attempt never started: no attempt is counted. */
    async release(claims: ReadonlyArray<Pick<ClaimedDelivery, 'eventId' | 'sink' | 'attempt'>>): Promise<void> {
      if (claims.length === 0) return;
      await pool.query(
        `UPDATE ${s}.deliveries d SET lease_until = NULL, attempts = d.attempts - 1, updated_at = now()
           FROM unnest($1::text[], $2::text[], $3::int[]) AS x(event_id, sink, attempt)
          WHERE d.event_id = x.event_id AND d.sink = x.sink AND d.attempts = x.attempt AND d.status = 'pending'`,
        [claims.map((c) => c.eventId), claims.map((c) => c.sink), claims.map((c) => c.attempt)],
      );
    },

    /**
     * Re-queues parked deliveries (same delivery, same event id, so the same idempotency key);
     * with `includeSkipped`, also those an operator skipped.
     */
    async replay(filter: { eventIds?: string[]; sink?: string; code?: string; all?: boolean }, options: { includeSkipped?: boolean } = {}): Promise<number> {
      const { rowCount } = await pool.query(
        `UPDATE ${s}.deliveries d SET status = 'pending', next_attempt_at = now(), lease_until = NULL, updated_at = now()
           FROM ${s}.events e
          WHERE e.id = d.event_id AND d.status = ANY($4::text[])
            AND ($1::text[] IS NULL OR d.event_id = ANY($1::text[]))
            AND ($2::text IS NULL OR d.sink = $2)
            AND ($3::text IS NULL OR e.code = $3)`,
        [filter.eventIds ?? null, filter.sink ?? null, filter.code ?? null, options.includeSkipped ? ['rejected', 'skipped'] : ['rejected']],
      );
      return rowCount ?? 0;
    },
  };
}

export type Ledger = ReturnType<typeof createLedger<pg.Pool>>;

/**
 * Per-order FIFO across concurrent writers of the ledger (the stream, a backfill page, the
 * Kafka source, a replay of parked input). Delivery ids come from a sequence, so two writers
 * of one order can commit out of id order: a refund stored by the stream while the backfill
 * page holding the order's purchase is still open would be the first *visible* delivery of
 * its order, and go out first. So every append first takes a transaction-level advisory
 * lock per order bucket it writes, in ascending order (no deadlock), in a statement of its
 * own before the append (whose snapshot then sees whatever the previous holder committed).
 * Writers of one order are serialised; each one's deliveries get higher ids than every
 * earlier writer's. Buckets (256 per ledger) bound the locks a batch takes; orders that share
 * a bucket merely wait for each other.
 */
export const ORDER_LOCK_BUCKETS = 256;

function orderLocks(lockClass: number, orderKeys: readonly string[]): string | null {
  if (orderKeys.length === 0) return null;
  const buckets = [...new Set(orderKeys.map((k) => hash32(k) % ORDER_LOCK_BUCKETS))].sort((a, b) => a - b);
  // Literal integers only (computed here): no parameters, so it can share a simple query with BEGIN.
  return `SELECT count(pg_advisory_xact_lock(${lockClass}, b)) FROM (SELECT b FROM unnest('{${buckets.join(',')}}'::int[]) AS b ORDER BY b OFFSET 0) l`;
}

/** FNV-1a over UTF-16 code units, as a non-negative int32. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & 0x7fffffff;
}
