/**
 * The ledger's statements, as pure builders of their text: one place that knows the tables.
 * The model (see ARCHITECTURE.md, "The ledger"):
 *
 * - `log`: every event once, in the order writers committed it (`seq`), partitioned by seq
 *   ranges; `event_ids` keeps the ids far longer than the payloads, so a repeat is dropped.
 * - `cursors`: per (sink, shard), the seq up to which every event of the shard is settled
 *   for the sink. The dispatcher reads the log forward from them.
 * - `outcomes`: what each sink settled as its cursor passed an event (append-only).
 * - `deliveries`: the exceptions only (retrying, parked, waiting behind those, skipped, and
 *   their later outcome), each with its own copy of the payload; `attempts`: their history.
 */

/** The advisory lock every append (and partition rotation) takes: one writer of the log at a time. */
export const APPEND_LOCK_KEY = -1;

/**
 * Delivery shards (see ARCHITECTURE.md, I16): the instance that delivers (sink, shard) holds
 * the session advisory lock (lockClass, SHARD_KEY + bit * MAX_SHARDS + shard) on its lease
 * connection, and every instance delivering a sink holds (lockClass, MEMBER_KEY + bit) in
 * shared mode there: their count is how many instances share the sink's shards.
 */
export const SHARD_KEY = 1_000_000;
export const MEMBER_KEY = 2_000;
export const MAX_SHARDS = 4096;
export const shardKeyBase = (bit: number) => SHARD_KEY + bit * MAX_SHARDS;
/** $1 lock class, $2 MEMBER_KEY + bit. */
export const joinMembers = `SELECT pg_advisory_lock_shared($1::int, $2::int)`;
const inThisDatabase = `l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
export const countMembers = `SELECT count(*)::int AS n FROM pg_locks l WHERE ${inThisDatabase} AND l.classid::int = $1 AND l.objid::int = $2`;
/** Tries the shards' locks in the order given and stops after $4 taken. $1 lock class, $2 shardKeyBase(bit), $3 shards. */
export const tryShards = `SELECT s AS shard FROM unnest($3::int[]) AS s WHERE pg_try_advisory_lock($1::int, $2::int + s) LIMIT $4`;
export const giveShards = `SELECT count(pg_advisory_unlock($1::int, $2::int + s))::int AS n FROM unnest($3::int[]) AS s`;
/** Who holds each shard's lock of a sink: the lease connection's application_name. */
export const shardHolders = `
  SELECT l.objid::int - $2::int AS shard, a.application_name AS app
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE ${inThisDatabase} AND l.classid::int = $1 AND l.objid::int >= $2::int AND l.objid::int < $2::int + ${MAX_SHARDS}`;
/** The shard of an order key, as the append assigns it (and so every delivery row of the order). */
export const shardOf = (orderKey: string, shards: string) => `((hashtext(${orderKey}) & 2147483647) % ${shards})`;
/** The fencing name of a (sink, shard) in `owners`. */
export const shardOwnerName = (sink: string, shard: number) => `shard:${sink}:${shard}`;
/** A new owner of shards takes their next epochs: $1 names, $2 holder. */
export const claimOwners = (s: string) => /* sql */ `
  INSERT INTO ${s}.owners (name, epoch, holder) SELECT n, 1, $2 FROM unnest($1::text[]) AS n
  ON CONFLICT (name) DO UPDATE SET epoch = ${s}.owners.epoch + 1, holder = EXCLUDED.holder, at = now()
  RETURNING name, epoch::text`;
/**
 * A statement's fence: true when every name still has the epoch given (and none is given),
 * each row held FOR SHARE until the commit, so a new owner's claim waits for the write and
 * every write after the claim is refused. Every write of the statement is conditioned on it.
 */
const fence = (s: string, names: string, epochs: string) => /* sql */ `fence AS MATERIALIZED (
    SELECT count(*) = coalesce(cardinality(${names}::text[]), 0) AS ok FROM (
      SELECT 1 FROM ${s}.owners w JOIN unnest(${names}::text[], ${epochs}::bigint[]) AS f(name, epoch)
          ON w.name = f.name AND w.epoch = f.epoch
       FOR SHARE OF w) held
  )`;

/** Open deliveries: what later deliveries of the same (sink, order) wait behind. */
export const OPEN = `('pending', 'rejected')`;
/**
 * Whether a new event of the order waits behind a row: an open delivery, or a skipped one
 * (a skip holds its order, see replay.ts). One probe of the partial index deliveries_holds.
 */
export const HOLDING = `('pending', 'rejected', 'skipped')`;
const holds = (s: string, sink: string, orderKey: string) =>
  `EXISTS (SELECT 1 FROM ${s}.deliveries d WHERE d.sink = ${sink} AND d.order_key = ${orderKey} AND d.status IN ${HOLDING} OFFSET 0)`;

/**
 * A new owner of a name takes the next epoch. The row lock waits for appends that read the
 * old epoch (FOR SHARE) to commit; every append after it reads the new one.
 */
export const claimOwner = (s: string) => /* sql */ `
  INSERT INTO ${s}.owners (name, epoch, holder) VALUES ($1, 1, $2)
  ON CONFLICT (name) DO UPDATE SET epoch = ${s}.owners.epoch + 1, holder = EXCLUDED.holder, at = now()
  RETURNING epoch::text`;

/** Inside an append's transaction: the name's epoch now, held until the commit. */
export const fenceCheck = (s: string) => `SELECT epoch::text FROM ${s}.owners WHERE name = $1 FOR SHARE`;

export const appendLock = (lockClass: number, schema: string) =>
  `SELECT pg_advisory_xact_lock(${lockClass}, ${APPEND_LOCK_KEY}); SELECT last_value::text AS prev, is_called FROM ${schema}.log_seq`;

/**
 * Events, order rows, parked input and checkpoints in one statement. Runs after
 * `appendLock` in the same transaction: sequence numbers are taken under the lock, so they
 * follow commit order, and a reader that sees seq n sees every event below it.
 *
 * The events come as one array per column and their payloads as one text, JSON documents
 * joined by U+001E (JSON text never holds a raw control character): PostgreSQL splits it
 * without parsing it, and parses each payload once, as it stores it. The i-th event (from 1)
 * takes seq $2 + i; a repeat (its id already in event_ids) leaves its seq unused.
 * $1 source, $2 the seq before the batch, $3 ids, $4 sinks masks, $5 codes, $6 order keys,
 * $7 commit times, $8 positions, $9 payloads; $10 order numbers, $11 their rows (joined the
 * same way); $12 parked input, $13 checkpoints (JSON); with `handOver`, $14 the sinks whose
 * open deliveries to look up per new event (`blocked`).
 */
export function append(s: string, handOver: boolean): string {
  return /* sql */ `
    WITH ids AS (
      INSERT INTO ${s}.event_ids (id, seq)
      SELECT i.id, $2::bigint + i.ord FROM unnest($3::bytea[]) WITH ORDINALITY AS i(id, ord)
      ON CONFLICT (id) DO NOTHING
      RETURNING seq
    ), n AS (
      SELECT value::int AS shards FROM ${s}.settings WHERE key = 'shards'
    ), ev AS (
      INSERT INTO ${s}.log (seq, id, shard, sinks, code, order_key, committed_at, source, position, payload)
      SELECT $2::bigint + x.ord, x.id, ${shardOf('x.order_key', 'n.shards')}::smallint, x.sinks, x.code,
             x.order_key, x.committed_at, $1, x.position, x.payload::json
        FROM ROWS FROM (unnest($3::bytea[], $4::int[], $5::text[], $6::text[], $7::timestamptz[], $8::text[]), string_to_table($9::text, E'\x1e'))
             WITH ORDINALITY AS x(id, sinks, code, order_key, committed_at, position, payload, ord), n
       WHERE $2::bigint + x.ord IN (SELECT seq FROM ids)
      RETURNING seq, shard, order_key
    ), sq AS (
      -- The sequence moves past the batch: the next append starts after it.
      SELECT setval('${s}.log_seq', $2::bigint + cardinality($3::bytea[]), true) WHERE cardinality($3::bytea[]) > 0
    ), od AS (
      INSERT INTO ${s}.orders (order_no, row)
      SELECT o.order_no, o.row::json FROM ROWS FROM (unnest($10::text[]), string_to_table($11::text, E'\x1e')) AS o(order_no, row)
      ON CONFLICT (order_no) DO UPDATE SET row = EXCLUDED.row, updated_at = now()
      RETURNING 1
    ), pk AS (
      -- One unresolved row per source row (row_key): parked again, it gets the latest reason
      -- and input. A batch's repeats of a row are one (the last): ON CONFLICT may not meet a
      -- row twice in one statement. Input without a row_key is parked as it comes.
      INSERT INTO ${s}.parked_inputs (source, stream, position, reason, raw, row_key)
      SELECT $1, p.stream, p.position, p.reason, p.raw, p.row_key
        FROM (SELECT DISTINCT ON (p.row_key, CASE WHEN p.row_key IS NULL THEN p.ord END) p.*
                FROM ROWS FROM (json_to_recordset($12::json) AS (stream text, position text, reason text, raw text, "rowKey" text))
                     WITH ORDINALITY AS p(stream, position, reason, raw, row_key, ord)
               ORDER BY p.row_key, CASE WHEN p.row_key IS NULL THEN p.ord END, p.ord DESC) p
       ORDER BY p.ord
      ON CONFLICT (row_key) WHERE resolved_at IS NULL
      DO UPDATE SET reason = EXCLUDED.reason, raw = EXCLUDED.raw, last_seen_at = now()
      RETURNING 1
    ), cp AS (
      INSERT INTO ${s}.checkpoints (source, stream, position)
      SELECT $1, c.stream, c.position FROM json_to_recordset($13::json) AS c(stream text, position text)
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
           (SELECT coalesce(array_agg(seq ORDER BY seq), '{}') FROM ev)::text AS seqs,
           (SELECT coalesce(array_agg(shard ORDER BY seq), '{}') FROM ev)::text AS shards,
           ${
             handOver
               ? `(SELECT coalesce(array_agg(ev.seq::text || ' ' || k.sink), '{}')
                     FROM ev, unnest($14::text[]) AS k(sink)
                    WHERE ${holds(s, 'k.sink', 'ev.order_key')})`
               : `'{}'::text[]`
           } AS blocked,
           (SELECT count(*) FROM od) + (SELECT count(*) FROM pk) + (SELECT count(*) FROM cp) + (SELECT count(*) FROM sq) AS other`;
}

/**
 * The log forward from a seq, for one sink: $1 after this seq, $2 the sink's bit, $3 at most
 * this many, $4 the sink. `horizon` is the highest seq visible to the same snapshot: with
 * fewer rows than asked, every event up to it has been seen. `blocked`: the order has an open
 * delivery (an exception) for the sink, which this event must wait behind. $5: only these
 * shards (null: all).
 */
export const readLog = (s: string) => /* sql */ `
  SELECT (SELECT max(seq)::text FROM ${s}.log) AS horizon,
         coalesce((SELECT json_agg(r ORDER BY r.seq) FROM (
           SELECT l.seq, l.shard, encode(l.id, 'hex') AS id, l.order_key, l.committed_at, l.payload,
                  ${holds(s, '$4', 'l.order_key')} AS blocked
             FROM ${s}.log l
            WHERE l.seq > $1 AND (l.sinks & $2) <> 0 AND ($5::smallint[] IS NULL OR l.shard = ANY($5::smallint[]))
            ORDER BY l.seq
            LIMIT $3) r), '[]') AS rows`;

/**
 * What a sink settled as its cursors passed: outcomes, new exceptions with their attempt
 * history, and the cursors, in one statement. $1 the sink; $34, $35 the fence (names and
 * epochs of the shards this instance holds): written only while they are still its.
 */
export const flushLog = (s: string) => /* sql */ `
  WITH ${fence(s, '$34', '$35')}, o AS (
    INSERT INTO ${s}.outcomes (seq, sink, status, attempts, request_id, http_status, remote_code, message, result)
    SELECT o.seq, $1, o.status, o.attempts, o.request_id, o.http_status, o.remote_code, o.message, o.result::jsonb
      FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[], $6::int[], $7::text[], $8::text[], $32::int[], $33::text[])
           AS o(seq, status, attempts, request_id, http_status, remote_code, result, shard, message)
     -- A flush sent again after it committed (its answer was lost) finds its cursor already
     -- past: written once. (All parts of the statement see the cursors as they were before it.)
     WHERE (SELECT ok FROM fence) AND NOT EXISTS (SELECT 1 FROM ${s}.cursors c WHERE c.sink = $1 AND c.shard = o.shard AND c.seq >= o.seq)
    RETURNING 1
  ), e AS (
    INSERT INTO ${s}.deliveries (event_id, sink, id, order_key, status, attempts, next_attempt_at, last_code, last_message,
                                 code, order_no, committed_at, payload)
    SELECT e.event_id, $1, e.seq, e.order_key, CASE WHEN h.event_id IS NULL THEN e.status ELSE 'rejected' END, e.attempts,
           now() + e.delay_ms * interval '1 millisecond',
           CASE WHEN h.event_id IS NULL THEN e.last_code ELSE 'HELD' END,
           CASE WHEN h.event_id IS NULL THEN e.last_message
                ELSE 'held behind ' || h.code || ' ' || h.event_id || ' of order ' || coalesce(h.order_no, h.order_key)
                     || ', skipped by replay --skip: re-queue that one with --include-skipped (this one follows), name this one with --event to send it anyway, or --skip-order' END,
           e.code, e.order_no, e.committed_at, e.payload::json
      FROM unnest($9::text[], $10::bigint[], $11::text[], $12::text[], $13::int[], $14::bigint[], $15::text[], $16::text[],
                  $17::text[], $18::text[], $19::timestamptz[], $20::text[])
           AS e(event_id, seq, order_key, status, attempts, delay_ms, last_code, last_message, code, order_no, committed_at, payload)
      -- Waiting only behind a skipped delivery of its order (no open one): held behind it, parked.
      LEFT JOIN LATERAL (
             SELECT k.event_id, k.code, k.order_no, k.order_key FROM ${s}.deliveries k
              WHERE e.status = 'pending' AND e.attempts = 0
                AND k.sink = $1 AND k.order_key = e.order_key AND k.status = 'skipped' AND k.id < e.seq
                AND NOT EXISTS (SELECT 1 FROM ${s}.deliveries o WHERE o.sink = $1 AND o.order_key = e.order_key AND o.status IN ${OPEN})
              ORDER BY k.id LIMIT 1) h ON true
     WHERE (SELECT ok FROM fence)
    ON CONFLICT (event_id, sink) DO NOTHING
    RETURNING 1
  ), a AS (
    INSERT INTO ${s}.attempts (sink, delivery_id, attempt, outcome, request_id, http_status, remote_code, remote_sub_code, remote_message, duration_ms)
    SELECT $1, a.seq, a.attempt, a.outcome, a.request_id, a.http_status, a.remote_code, a.remote_sub_code, a.remote_message, a.duration_ms
      FROM unnest($21::bigint[], $22::int[], $23::text[], $24::text[], $25::int[], $26::text[], $27::text[], $28::text[], $29::int[])
           AS a(seq, attempt, outcome, request_id, http_status, remote_code, remote_sub_code, remote_message, duration_ms)
     WHERE (SELECT ok FROM fence)
    ON CONFLICT DO NOTHING
    RETURNING 1
  ), c AS (
    UPDATE ${s}.cursors c SET seq = x.seq, updated_at = now()
      FROM unnest($30::int[], $31::bigint[]) AS x(shard, seq)
     WHERE (SELECT ok FROM fence) AND c.sink = $1 AND c.shard = x.shard AND c.seq < x.seq
    RETURNING 1
  )
  SELECT (SELECT ok FROM fence) AS fenced_ok, (SELECT count(*) FROM o)::int AS outcomes, (SELECT count(*) FROM e)::int AS exceptions,
         (SELECT count(*) FROM a)::int AS attempts, (SELECT count(*) FROM c)::int AS cursors`;

/** A sink's cursors, made at the ledger's cursor start when missing. $1 the sink. */
export const ensureCursors = (s: string) => /* sql */ `
  WITH n AS (SELECT value::int AS shards FROM ${s}.settings WHERE key = 'shards'),
       st AS (SELECT value::bigint AS seq FROM ${s}.settings WHERE key = 'cursor_start'),
       ins AS (
         INSERT INTO ${s}.cursors (sink, shard, seq)
         SELECT $1, g, coalesce((SELECT seq FROM st), 0) FROM n, generate_series(0, n.shards - 1) AS g
         ON CONFLICT (sink, shard) DO NOTHING)
  SELECT (SELECT shards FROM n) AS shards`;

export const loadCursors = (s: string) => `SELECT shard, seq::text AS seq FROM ${s}.cursors WHERE sink = $1 ORDER BY shard`;

/**
 * Due exceptions of a sink, FIFO per order: one whose order has an earlier open delivery
 * is not due. $1 sink, $2 limit, $3 lease in ms; $4 the ledger's shards, $5 only these of
 * them (null: all), $6 and $7 the fence (see flushLog). An order's deliveries are all in its
 * shard, so FIFO per order holds within the shards an instance holds.
 */
export const claimExceptions = (s: string) => /* sql */ `
  WITH ${fence(s, '$6', '$7')}, c AS (
    SELECT d.event_id, d.sink FROM ${s}.deliveries d
     WHERE (SELECT ok FROM fence) AND d.sink = $1 AND d.status = 'pending' AND d.next_attempt_at <= now()
       AND ($5::int[] IS NULL OR ${shardOf('d.order_key', '$4::int')} = ANY($5::int[]))
       AND (d.lease_until IS NULL OR d.lease_until < now())
       -- OFFSET 0 keeps this a probe of deliveries_fifo per candidate.
       AND NOT EXISTS (
             SELECT 1 FROM ${s}.deliveries e
              WHERE e.sink = d.sink AND e.order_key = d.order_key AND e.id < d.id AND e.status IN ${OPEN}
             OFFSET 0)
     ORDER BY d.next_attempt_at, d.id
     LIMIT $2
     FOR UPDATE OF d SKIP LOCKED
  )
  UPDATE ${s}.deliveries u
     SET lease_until = now() + $3::int * interval '1 millisecond', attempts = u.attempts + 1, updated_at = now()
    FROM c
   WHERE u.event_id = c.event_id AND u.sink = c.sink
  RETURNING u.id::text AS id, u.event_id, u.sink, u.attempts AS attempt, u.payload, u.committed_at, (SELECT ok FROM fence) AS fenced_ok`;

/**
 * Outcomes of exception attempts, as parallel arrays (unnest tells the planner the row
 * count). Applies only to the claim it belongs to: a stale outcome (the lease ran out and
 * the delivery was claimed again) is dropped. $17, $18 the fence (see flushLog).
 */
const settleCtes = (s: string) => /* sql */ `
  WITH ${fence(s, '$17', '$18')}, x AS (
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
     WHERE (SELECT ok FROM fence) AND d.event_id = x.event_id AND d.sink = x.sink AND d.attempts = x.attempt AND d.status = 'pending'
    RETURNING d.id, d.sink
  ), a AS (
    INSERT INTO ${s}.attempts (sink, delivery_id, attempt, outcome, request_id, http_status, remote_code, remote_sub_code, remote_message, duration_ms)
    SELECT x.sink, x.id, x.attempt, x.outcome, x.request_id, x.http_status, x.remote_code, x.remote_sub_code, x.remote_message, x.duration_ms
      FROM x WHERE (x.id, x.sink) IN (SELECT id, sink FROM u)
    ON CONFLICT (sink, delivery_id, attempt) DO NOTHING
  )`;

export const settleExceptions = (s: string) => `${settleCtes(s)} SELECT count(*)::int AS n, (SELECT ok FROM fence) AS fenced_ok FROM u`;

/** The same, trimming the history of deliveries past the kept number of attempts ($19 sinks, $20 ids, $21 up to). */
export const settleExceptionsAndPrune = (s: string) => /* sql */ `${settleCtes(s)}, pr AS (
    DELETE FROM ${s}.attempts t USING unnest($19::text[], $20::bigint[], $21::int[]) AS p(sink, id, upto)
     WHERE (SELECT ok FROM fence) AND t.sink = p.sink AND t.delivery_id = p.id AND t.attempt <= p.upto
  )
  SELECT count(*)::int AS n, (SELECT ok FROM fence) AS fenced_ok FROM u`;

export const releaseExceptions = (s: string) => /* sql */ `
  UPDATE ${s}.deliveries d SET lease_until = NULL, attempts = d.attempts - 1, updated_at = now()
    FROM unnest($1::text[], $2::text[], $3::int[]) AS x(event_id, sink, attempt)
   WHERE d.event_id = x.event_id AND d.sink = x.sink AND d.attempts = x.attempt AND d.status = 'pending'`;

export const registerSink = (s: string) => /* sql */ `
  INSERT INTO ${s}.sinks (name, bit)
  SELECT $1, (SELECT coalesce(max(bit) + 1, 0) FROM ${s}.sinks)
  ON CONFLICT (name) DO NOTHING`;

export const loadSinks = (s: string) => `SELECT name, bit FROM ${s}.sinks`;

export const loadOrders = (s: string) => `SELECT order_no, row FROM ${s}.orders WHERE order_no = ANY($1::text[])`;

export const checkpointsOf = (s: string) => `SELECT stream, position FROM ${s}.checkpoints WHERE source = $1 AND stream = ANY($2::text[])`;

export const loadCheckpoints = (s: string) => `SELECT stream, position FROM ${s}.checkpoints WHERE source = $1`;

export const ledgerSetting = (s: string) => `SELECT value FROM ${s}.settings WHERE key = $1`;

export const openOrders = (s: string) =>
  `SELECT DISTINCT order_key FROM ${s}.deliveries WHERE sink = $1 AND order_key = ANY($2::text[]) AND status IN ('pending', 'rejected', 'skipped')`;
