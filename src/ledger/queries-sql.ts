import { HELD } from './replay.js';
import { OPEN } from './sql.js';

/**
 * The read-only questions operators ask of the ledger (`status`, `/metrics`, the console,
 * the demo's report), as pure builders of their text; `sql.ts` has the statements that
 * change it. Every figure reads the model of `sql.ts`:
 *
 * - an (event, sink) delivery is settled once the sink's cursor of the event's shard has
 *   passed it: by an `outcomes` row (delivered, not applicable) or by a `deliveries` row (an
 *   exception: retrying, parked, waiting behind one of those, skipped, and what became of it);
 * - until then it is pending in the log: a log row with the sink's bit, past the cursor of
 *   its (sink, shard). A sink whose dispatcher has not made its cursors yet starts at the
 *   ledger's `cursor_start`, as `ensureCursors` would make them.
 *
 * The open part (the log past the cursors, open exceptions) is cheap: the log is read as one
 * range of its seq index per sink, from the sink's lowest cursor, and each row is checked
 * against its own shard's cursor; open exceptions come from the partial FIFO index. Totals
 * (delivered, not applicable, skipped) read outcomes and finished exceptions in full, so
 * `/metrics` leaves them out.
 */

/** The ledger's `cursor_start`: where a cursor the dispatcher has not made yet would start. */
const cursorStart = (s: string) => `coalesce((SELECT value::bigint FROM ${s}.settings WHERE key = 'cursor_start'), 0)`;

/**
 * Per registered sink: its bit and the lowest of its cursors (`floor`, text), a shard whose
 * cursor the dispatcher has not made yet counting at `cursor_start`. Everything pending in
 * the log for the sink is above the floor. No parameters.
 */
export const cursorFloors = (s: string) => /* sql */ `
  SELECT k.name AS sink, k.bit,
         (CASE WHEN count(c.seq) < n.shards THEN least(min(c.seq), ${cursorStart(s)}) ELSE min(c.seq) END)::text AS floor
    FROM ${s}.sinks k
   CROSS JOIN (SELECT coalesce((SELECT value::int FROM ${s}.settings WHERE key = 'shards'), 1) AS shards) n
    LEFT JOIN ${s}.cursors c ON c.sink = k.name
   GROUP BY k.name, k.bit, n.shards
   ORDER BY k.name`;

/**
 * One sink's part of the log past its cursors: $1 the sink, $2 its bit mask, $3 its floor
 * (`cursorFloors`). One range of the seq index from the floor (a parameter, so the planner
 * sees how short it is), each row checked against the cursor of its own shard. n: how many;
 * blocked: of those, whose order has a parked exception for the sink (they will wait behind
 * it); age: seconds since the oldest was stored.
 */
export const logTail = (s: string) => /* sql */ `
  SELECT count(*)::int AS n,
         count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM ${s}.deliveries p
              WHERE p.sink = $1 AND p.order_key = l.order_key AND p.id < l.seq AND p.status = 'rejected' OFFSET 0))::int AS blocked,
         extract(epoch FROM now() - min(l.created_at))::float8 AS age
    FROM ${s}.log l
    LEFT JOIN ${s}.cursors c ON c.sink = $1 AND c.shard = l.shard
   WHERE l.seq > $3::bigint AND (l.sinks & $2::int) <> 0
     AND l.seq > coalesce(c.seq, ${cursorStart(s)})`;

/**
 * Open exceptions per sink: pending (backlog), due, retrying, parked, held, blocked, and
 * the age in seconds of the oldest pending one (since its event was stored). No parameters.
 */
export const openExceptions = (s: string) => /* sql */ `
  SELECT d.sink,
         count(*) FILTER (WHERE d.status = 'pending')::int AS backlog,
         count(*) FILTER (WHERE d.status = 'pending' AND d.next_attempt_at <= now())::int AS due,
         count(*) FILTER (WHERE d.status = 'pending' AND d.last_code IS NOT NULL AND d.last_code <> '${HELD}')::int AS retrying,
         count(*) FILTER (WHERE d.status = 'rejected')::int AS parked,
         count(*) FILTER (WHERE d.status = 'rejected' AND d.last_code = '${HELD}')::int AS held,
         count(*) FILTER (WHERE d.status = 'pending' AND EXISTS (
             SELECT 1 FROM ${s}.deliveries p
              WHERE p.sink = d.sink AND p.order_key = d.order_key AND p.id < d.id AND p.status = 'rejected'))::int AS blocked,
         -- Pending since its event was stored (the log row, while its partition is kept), not
         -- since it became an exception.
         extract(epoch FROM now() - min(coalesce((SELECT l.created_at FROM ${s}.log l WHERE l.seq = d.id), d.created_at)) FILTER (WHERE d.status = 'pending'))::float8 AS age
    FROM ${s}.deliveries d
   WHERE d.status IN ${OPEN}
   GROUP BY d.sink`;

/**
 * Settled totals per sink: delivered, delivered in the last minute, not applicable (outcomes
 * and finished exceptions), skipped (exceptions). Reads both in full. No parameters.
 */
export const settledTotals = (s: string) => /* sql */ `
  SELECT sink, sum(delivered)::int AS delivered, sum(last)::int AS last, sum(na)::int AS na, sum(skipped)::int AS skipped
    FROM (
      SELECT sink,
             count(*) FILTER (WHERE status = 'delivered') AS delivered,
             count(*) FILTER (WHERE status = 'delivered' AND at > now() - interval '1 minute') AS last,
             count(*) FILTER (WHERE status = 'not_applicable') AS na,
             0 AS skipped
        FROM ${s}.outcomes GROUP BY sink
      UNION ALL
      SELECT sink,
             count(*) FILTER (WHERE status = 'delivered'),
             count(*) FILTER (WHERE status = 'delivered' AND delivered_at > now() - interval '1 minute'),
             count(*) FILTER (WHERE status = 'not_applicable'),
             count(*) FILTER (WHERE status = 'skipped')
        FROM ${s}.deliveries WHERE status IN ('delivered', 'not_applicable', 'skipped') GROUP BY sink
    ) x
   GROUP BY sink`;

export const parkedInputCount = (s: string) => `SELECT count(*)::int AS n FROM ${s}.parked_inputs WHERE resolved_at IS NULL`;

/** $1 limit. (Ordered by the qualified id: a bare `id` would be the text column of the output, so 10 before 2.) */
export const parkedInputs = (s: string) =>
  `SELECT p.id::text AS id, p.source, p.stream, p.position, p.reason, p.created_at FROM ${s}.parked_inputs p WHERE p.resolved_at IS NULL ORDER BY p.id LIMIT $1`;

/**
 * Unresolved parked inputs whose reason, stream or raw input contains $1 (NULL: all); $2 limit.
 * `parkedInputMatchCount`: how many ($1 only).
 */
export const parkedInputMatches = (s: string) => /* sql */ `
  SELECT p.id::text AS id, p.source, p.stream, p.position, p.reason, p.created_at FROM ${s}.parked_inputs p
   WHERE p.resolved_at IS NULL AND ($1::text IS NULL OR strpos(p.reason, $1) > 0 OR strpos(p.stream, $1) > 0 OR strpos(p.raw, $1) > 0)
   ORDER BY p.id LIMIT $2`;

export const parkedInputMatchCount = (s: string) => /* sql */ `
  SELECT count(*)::int AS n FROM ${s}.parked_inputs
   WHERE resolved_at IS NULL AND ($1::text IS NULL OR strpos(reason, $1) > 0 OR strpos(stream, $1) > 0 OR strpos(raw, $1) > 0)`;

export const checkpointRows = (s: string) => `SELECT source, stream, position, updated_at FROM ${s}.checkpoints ORDER BY source, stream`;

/**
 * The latest failure of each open exception (retrying or parked), newest first, with its
 * last attempt (request id). Failures of events still in the log (retried in memory) have no
 * row and are not here. $1 limit.
 */
export const recentErrors = (s: string) => /* sql */ `
  SELECT coalesce(a.at, d.updated_at) AS at, d.sink, d.event_id, d.code, d.order_no,
         CASE WHEN d.status = 'rejected' AND d.last_code = '${HELD}' THEN 'held'
              ELSE coalesce(a.outcome, CASE WHEN d.status = 'rejected' THEN 'rejected' ELSE 'retry' END) END AS outcome,
         a.request_id, a.http_status, coalesce(d.last_code, a.remote_code) AS remote_code, coalesce(d.last_message, a.remote_message) AS message
    FROM ${s}.deliveries d
    LEFT JOIN LATERAL (
           SELECT t.at, t.outcome, t.request_id, t.http_status, t.remote_code, t.remote_message
             FROM ${s}.attempts t WHERE t.sink = d.sink AND t.delivery_id = d.id ORDER BY t.attempt DESC LIMIT 1) a ON true
   WHERE d.status IN ${OPEN} AND d.last_code IS NOT NULL
   ORDER BY d.updated_at DESC, d.id DESC
   LIMIT $1`;

/**
 * Parked exceptions, FIFO order; each filter is off when NULL: $1 sink, $2 event code or
 * parking code (INVALID_PARAMETER, HELD …), $3 order number; $4 limit.
 * `parkedExceptionCount`: how many match ($1–$3).
 */
export const parkedExceptions = (s: string) => /* sql */ `
  SELECT d.id::text, d.sink, d.event_id, d.code, d.order_no, d.last_code, d.last_message, d.attempts, d.updated_at
    FROM ${s}.deliveries d
   WHERE d.status = 'rejected' ${parkedFilter}
   ORDER BY d.id
   LIMIT $4`;

const parkedFilter = `AND ($1::text IS NULL OR d.sink = $1) AND ($2::text IS NULL OR d.code = $2 OR d.last_code = $2) AND ($3::text IS NULL OR d.order_no = $3)`;

export const parkedExceptionCount = (s: string) => `SELECT count(*)::int AS n FROM ${s}.deliveries d WHERE d.status = 'rejected' ${parkedFilter}`;

/** One exception row: $1 sink, $2 event id. */
export const exceptionRow = (s: string) => /* sql */ `
  SELECT d.id::text, d.status, d.last_code, d.last_message, d.attempts, d.created_at, d.updated_at, d.code, d.order_no,
         d.committed_at, d.payload
    FROM ${s}.deliveries d WHERE d.sink = $1 AND d.event_id = $2`;

/** An exception's attempt history, newest first: $1 sink, $2 its id (the event's seq). */
export const attemptHistory = (s: string) => /* sql */ `
  SELECT attempt, at, outcome, request_id, http_status, remote_code, remote_sub_code, remote_message, duration_ms
    FROM ${s}.attempts WHERE sink = $1 AND delivery_id = $2 ORDER BY attempt DESC`;

/**
 * An event from the log by id ($2, hex), with what the log says of it for sink $1: whether
 * the sink takes it, whether it is still past the sink's cursor, and the outcome the cursor
 * wrote as it passed it. No row: the event id is unknown; a row with a null seq_in_log: the
 * id is known but its log partition is gone.
 */
export const eventForSink = (s: string) => /* sql */ `
  WITH i AS (SELECT seq FROM ${s}.event_ids WHERE id = decode($2, 'hex'))
  SELECT i.seq::text AS seq, l.seq::text AS seq_in_log, l.code, l.payload, l.committed_at, l.created_at, l.source, l.position,
         k.bit IS NOT NULL AND (l.sinks & (1 << k.bit)) <> 0 AS takes,
         l.seq > coalesce(c.seq, ${cursorStart(s)}) AS past_cursor,
         o.status AS outcome, o.attempts AS outcome_attempts, o.at AS outcome_at, o.request_id, o.http_status, o.remote_code
    FROM i
    LEFT JOIN ${s}.log l ON l.seq = i.seq
    LEFT JOIN ${s}.sinks k ON k.name = $1
    LEFT JOIN ${s}.cursors c ON c.sink = $1 AND c.shard = l.shard
    LEFT JOIN LATERAL (
           SELECT o.status, o.attempts, o.at, o.request_id, o.http_status, o.remote_code
             FROM ${s}.outcomes o WHERE o.sink = $1 AND o.seq = i.seq ORDER BY o.at LIMIT 1) o ON true`;

/** Events per code, from the log. No parameters. */
export const eventCounts = (s: string) => `SELECT code, count(*)::int AS n FROM ${s}.log GROUP BY code ORDER BY code`;

/** Event ids (hex) of the log. No parameters. */
export const eventIds = (s: string) => `SELECT encode(id, 'hex') AS id FROM ${s}.log`;

/**
 * Settled deliveries and exceptions per (sink, status): outcomes, and exception rows in every
 * status. The log past the cursors (pending too) is `logTail`'s. No parameters.
 */
export const recordCounts = (s: string) => /* sql */ `
  SELECT sink, status, sum(n)::int AS n
    FROM (
      SELECT sink, status, count(*) AS n FROM ${s}.outcomes GROUP BY sink, status
      UNION ALL
      SELECT sink, status, count(*) FROM ${s}.deliveries GROUP BY sink, status
    ) x
   GROUP BY sink, status
   ORDER BY sink, status`;

/**
 * Per sink, every (event in the log, sink taking it) pair checked against its records: how
 * many pairs, how many distinct events delivered, and what must not be: a pair the cursor
 * passed with neither an outcome nor an exception (`unrecorded`), a pair with more than one
 * record (`repeated`: e.g. two outcomes, or an outcome and a row), a pair still past the
 * cursor that already has a record (`ahead`). Reads everything: for the demo and tests. No
 * parameters.
 */
export const deliveryAudit = (s: string) => /* sql */ `
  WITH pairs AS (
    SELECT k.name AS sink, l.seq, l.seq > coalesce(c.seq, ${cursorStart(s)}) AS past
      FROM ${s}.log l
      JOIN ${s}.sinks k ON (l.sinks & (1 << k.bit)) <> 0
      LEFT JOIN ${s}.cursors c ON c.sink = k.name AND c.shard = l.shard
  ), rec AS (
    SELECT sink, seq, count(*) AS n, count(*) FILTER (WHERE status = 'delivered') AS delivered
      FROM (SELECT sink, seq, status FROM ${s}.outcomes UNION ALL SELECT sink, id, status FROM ${s}.deliveries) r
     GROUP BY sink, seq
  )
  SELECT p.sink,
         count(*)::int AS pairs,
         count(*) FILTER (WHERE r.delivered > 0)::int AS delivered,
         count(*) FILTER (WHERE r.n IS NULL AND NOT p.past)::int AS unrecorded,
         count(*) FILTER (WHERE r.n > 1)::int AS repeated,
         count(*) FILTER (WHERE r.n IS NOT NULL AND p.past)::int AS ahead
    FROM pairs p
    LEFT JOIN rec r ON r.sink = p.sink AND r.seq = p.seq
   GROUP BY p.sink
   ORDER BY p.sink`;

/**
 * Source commit → recorded delivery per sink, in ms (p50, p99, n): outcomes (the time the
 * cursor wrote them) and delivered exceptions. No parameters.
 */
export const deliveryLatency = (s: string) => /* sql */ `
  SELECT sink,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) * 1000 AS p50,
         percentile_cont(0.99) WITHIN GROUP (ORDER BY secs) * 1000 AS p99,
         count(*)::int AS n
    FROM (
      SELECT o.sink, extract(epoch FROM o.at - l.committed_at) AS secs
        FROM ${s}.outcomes o JOIN ${s}.log l ON l.seq = o.seq
       WHERE o.status = 'delivered'
      UNION ALL
      SELECT d.sink, extract(epoch FROM d.delivered_at - d.committed_at)
        FROM ${s}.deliveries d
       WHERE d.status = 'delivered' AND d.committed_at IS NOT NULL AND d.delivered_at IS NOT NULL
    ) x
   GROUP BY sink
   ORDER BY sink`;

/** Whether the ledger schema exists (its migrations table does): $1 `<schema>.schema_migrations`. */
export const ledgerExists = () => `SELECT to_regclass($1) IS NOT NULL AS ok`;
