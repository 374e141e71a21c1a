import { APPEND_LOCK_KEY } from './sql.js';

/**
 * The statements of ledger maintenance (`maintenance.ts`), as pure builders of their text:
 * rotation of the log's partitions, and retention. Numbers that go into DDL (partition
 * bounds) are integers computed by the caller and checked there; everything else is a
 * parameter.
 *
 * Every delete here is bounded (a LIMIT, a block range, one partition's seq range) and
 * repeats its conditions outside the row-picking subquery: a row updated meanwhile (an
 * order upserted, a skipped delivery re-queued by replay) is rechecked in its new version
 * and kept. A TID scan's own recheck does not look at the TID list.
 */

/** Every partition of the log (and of outcomes) covers this many seqs: [lo, lo + 2^32). */
export const PARTITION_WIDTH = 2 ** 32;

/**
 * No partition reaches past this. Seqs are JS numbers in the dispatcher, exact below 2^53;
 * stopping at 2^52 leaves 2^20 (about a million) rotations of headroom, and the refusal
 * comes while the open partition still has its 2^32 seqs to serve.
 */
export const SEQ_CEILING = 2 ** 52;

/** Rows per delete statement. */
export const BATCH_ROWS = 10_000;

/** Blocks of `orders` one sweep statement looks at (4 MB of 8 kB blocks: about 10,000 rows of a typical order). */
export const ORDER_SWEEP_BLOCKS = 512;

const index = (lo: number) => {
  if (!Number.isSafeInteger(lo) || lo < 0 || lo % PARTITION_WIDTH !== 0) throw new Error(`not a partition bound: ${lo}`);
  return lo / PARTITION_WIDTH;
};

/** `log_p0` for [0, 2^32), `log_p1` for [2^32, 2^33) ... (unqualified, as in pg_class). */
export const logPartitionName = (lo: number) => `log_p${index(lo)}`;
export const outcomesPartitionName = (lo: number) => `outcomes_p${index(lo)}`;

export const lockTimeout = (ms: number) => `SET LOCAL lock_timeout = '${Math.max(1, Math.round(ms))}ms'`;

/** The lock every append takes: held, no append is between its nextval and its commit. */
export const appendLock = (lockClass: number) => `SELECT pg_advisory_xact_lock(${Math.trunc(lockClass)}, ${APPEND_LOCK_KEY})`;

/**
 * The open partition (the newest, not closed), locked for this transaction, with the
 * sequence and whether any event is in it. Ages by the server's clock, the one that wrote
 * `opened_at`.
 */
export const openPartition = (s: string) => /* sql */ `
  SELECT p.lo::text AS lo, p.hi::text AS hi,
         (extract(epoch FROM clock_timestamp() - p.opened_at) * 1000)::float8 AS age_ms,
         (SELECT q.last_value::text FROM ${s}.log_seq q) AS last_value,
         (SELECT q.is_called FROM ${s}.log_seq q) AS is_called,
         EXISTS (SELECT 1 FROM ${s}.log l WHERE l.seq >= p.lo AND l.seq < p.hi) AS has_rows
    FROM ${s}.log_partitions p
   WHERE p.closed_at IS NULL
   ORDER BY p.lo DESC
   LIMIT 1
   FOR UPDATE OF p`;

/**
 * Opens [lo, hi) and closes the partition before it (`prevLo`). Runs under the append lock:
 * every append that took a seq below `lo` has committed, and the next one takes `lo`.
 *
 * The tables are made standalone and attached (LIKE ... INCLUDING ALL, then ATTACH
 * PARTITION) instead of CREATE TABLE ... PARTITION OF: that one takes ACCESS EXCLUSIVE on
 * `log` and `outcomes`, so it waits for every reader of the log (a status query, a sink
 * reading forward, a pg_dump) and every reader queues behind it; ATTACH takes SHARE UPDATE
 * EXCLUSIVE, which readers and writers do not conflict with. The new tables are empty, so
 * validating the range scans nothing, and the partitioned indexes (the log's primary key,
 * the outcomes' BRIN) attach to the copies LIKE made.
 *
 * `setval(lo - 1, true)`: `last_value` stays the highest seq taken before an append (the
 * dispatcher's `appended.after`), and the next nextval is `lo`. Never backwards.
 */
export function rotate(s: string, prevLo: number, lo: number, hi: number): string {
  if (hi - lo !== PARTITION_WIDTH) throw new Error(`a partition is ${PARTITION_WIDTH} seqs wide, not ${hi - lo}`);
  if (hi > SEQ_CEILING) throw new Error(`partition bound ${hi} past ${SEQ_CEILING}`);
  index(prevLo);
  const log = logPartitionName(lo);
  const out = outcomesPartitionName(lo);
  return /* sql */ `
    CREATE TABLE ${s}.${log} (LIKE ${s}.log INCLUDING ALL);
    ALTER TABLE ${s}.log ATTACH PARTITION ${s}.${log} FOR VALUES FROM (${lo}) TO (${hi});
    CREATE TABLE ${s}.${out} (LIKE ${s}.outcomes INCLUDING ALL);
    ALTER TABLE ${s}.outcomes ATTACH PARTITION ${s}.${out} FOR VALUES FROM (${lo}) TO (${hi});
    UPDATE ${s}.log_partitions SET closed_at = clock_timestamp() WHERE lo = ${prevLo};
    INSERT INTO ${s}.log_partitions (lo, hi, opened_at) VALUES (${lo}, ${hi}, clock_timestamp());
    SELECT setval('${s}.log_seq', greatest(${lo - 1}, (SELECT last_value FROM ${s}.log_seq)), true);`;
}

/** Closed partitions whose tables are still there and whose close is older than $1 ms. */
export const partitionsPastRetention = (s: string) => /* sql */ `
  SELECT lo::text AS lo, hi::text AS hi, closed_at
    FROM ${s}.log_partitions
   WHERE dropped_at IS NULL AND closed_at IS NOT NULL AND closed_at < now() - $1::bigint * interval '1 millisecond'
   ORDER BY lo`;

/** One of those again, locked (two instances' maintenance drop it once). $1 lo, $2 retention ms. */
export const lockPartitionForDrop = (s: string) => /* sql */ `
  SELECT lo FROM ${s}.log_partitions
   WHERE lo = $1::bigint AND dropped_at IS NULL AND closed_at IS NOT NULL AND closed_at < now() - $2::bigint * interval '1 millisecond'
   FOR UPDATE`;

/** The highest seq in a partition (its primary key's last entry), null when empty or gone. */
export const partitionMaxSeq = (s: string, lo: number) =>
  `SELECT CASE WHEN to_regclass('${s}.${logPartitionName(lo)}') IS NOT NULL
               THEN (SELECT max(seq)::text FROM ${s}.${logPartitionName(lo)}) END AS max`;

/**
 * What holds a partition whose highest seq is $1: cursors below it, and sinks events were
 * stored for that have no cursors yet (their dispatcher never started: nothing of theirs is
 * settled). The cursors table moves only forward, so a partition that passes this stays
 * passed.
 */
export const cursorsBehind = (s: string) => /* sql */ `
  SELECT c.sink, c.shard, c.seq::text AS seq FROM ${s}.cursors c WHERE c.seq < $1::bigint
  UNION ALL
  SELECT k.name, NULL, NULL FROM ${s}.sinks k WHERE NOT EXISTS (SELECT 1 FROM ${s}.cursors c WHERE c.sink = k.name)
  ORDER BY 1, 2
  LIMIT 64`;

/** Drops a partition pair and keeps its row, with when. */
export const dropPartition = (s: string, lo: number) => /* sql */ `
  DROP TABLE IF EXISTS ${s}.${logPartitionName(lo)}, ${s}.${outcomesPartitionName(lo)};
  UPDATE ${s}.log_partitions SET dropped_at = now() WHERE lo = ${lo};`;

/** Final deliveries (and their attempts) untouched for longer than $1 ms, at most $2. */
export const deleteSettledDeliveries = (s: string) => /* sql */ `
  WITH d AS (
    DELETE FROM ${s}.deliveries d
     WHERE d.ctid = ANY (ARRAY(
             SELECT x.ctid FROM ${s}.deliveries x
              WHERE x.status IN ('delivered', 'not_applicable', 'skipped')
                AND x.updated_at < now() - $1::bigint * interval '1 millisecond'
                -- A skipped delivery that deliveries are held behind (HELD) names them: it
                -- stays while they are open, so --include-skipped can still bring it back.
                AND NOT (x.status = 'skipped' AND EXISTS (
                      SELECT 1 FROM ${s}.deliveries y
                       WHERE y.sink = x.sink AND y.order_key = x.order_key AND y.id > x.id AND y.status IN ('pending', 'rejected')))
              LIMIT $2))
       AND d.status IN ('delivered', 'not_applicable', 'skipped')
       AND d.updated_at < now() - $1::bigint * interval '1 millisecond'
    RETURNING d.sink, d.id
  ), a AS (
    DELETE FROM ${s}.attempts t USING d WHERE t.sink = d.sink AND t.delivery_id = d.id
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM d)::int AS deliveries, (SELECT count(*) FROM a)::int AS attempts`;

/** Parked input resolved longer than $1 ms ago, at most $2. */
export const deleteResolvedParkedInputs = (s: string) => /* sql */ `
  WITH d AS (
    DELETE FROM ${s}.parked_inputs p
     WHERE p.id = ANY (ARRAY(
             SELECT x.id FROM ${s}.parked_inputs x
              WHERE x.resolved_at < now() - $1::bigint * interval '1 millisecond'
              LIMIT $2))
       AND p.resolved_at < now() - $1::bigint * interval '1 millisecond'
    RETURNING 1)
  SELECT count(*)::int AS n FROM d`;

/** How many blocks `orders` has: where a sweep of it wraps. */
export const orderBlocks = (s: string) =>
  `SELECT (pg_relation_size('${s}.orders') / current_setting('block_size')::int)::bigint::text AS blocks`;

/**
 * Order rows not upserted for longer than $1 ms, among blocks [$2, $3), at most $4.
 *
 * Why `orders` has no partitions: a row is one order's last seen state, upserted on every
 * change of the order (ON CONFLICT (order_no)). Its age is its last update, which moves:
 * partitions by time would move the row to another partition on each change (a delete and
 * an insert, never a HOT update), and a partitioned table's unique key must include the
 * partition key, so order_no could no longer be unique across them. Hash partitions by
 * order_no keep the key but do not group rows by age, so no partition is ever old as a
 * whole. Old rows are deleted in batches instead.
 *
 * And no index on updated_at to find them: every upsert sets updated_at, and an indexed
 * updated_at would make every upsert a non-HOT update (the table's fillfactor is there for
 * HOT). So a sweep walks the table by block ranges (a TID range scan, PostgreSQL 14+) and
 * deletes by ctid: each statement reads at most $3 - $2 blocks and deletes at most $4 rows.
 * A row found old but upserted meanwhile is rechecked in its new version (updated_at) and kept.
 */
export const deleteOldOrders = (s: string) => /* sql */ `
  WITH d AS (
    DELETE FROM ${s}.orders o
     WHERE o.ctid = ANY (ARRAY(
             SELECT x.ctid FROM ${s}.orders x
              WHERE x.ctid >= ('(' || $2::bigint || ',0)')::tid AND x.ctid < ('(' || $3::bigint || ',0)')::tid
                AND x.updated_at < now() - $1::bigint * interval '1 millisecond'
              LIMIT $4))
       AND o.updated_at < now() - $1::bigint * interval '1 millisecond'
    RETURNING 1)
  SELECT count(*)::int AS n FROM d`;

/**
 * Dropped partitions closed longer than $1 ms (ledger.idRetention) ago whose event ids are
 * still kept. An id outlives its payload: ids go only after their partition is dropped.
 */
export const partitionsPastIdRetention = (s: string) => /* sql */ `
  SELECT lo::text AS lo, hi::text AS hi
    FROM ${s}.log_partitions
   WHERE dropped_at IS NOT NULL AND ids_dropped_at IS NULL
     AND closed_at < now() - $1::bigint * interval '1 millisecond'
   ORDER BY lo`;

/**
 * Event ids with a seq in [$1, $2), at most $3 (the BRIN on seq finds their blocks). An id
 * that still has a delivery row (an exception parked for longer than idRetention) is kept:
 * without it, the event stored again would be a second event with a delivery of its own.
 */
export const deleteEventIds = (s: string) => /* sql */ `
  WITH d AS (
    DELETE FROM ${s}.event_ids e
     WHERE e.ctid = ANY (ARRAY(
             SELECT x.ctid FROM ${s}.event_ids x
              WHERE x.seq >= $1::bigint AND x.seq < $2::bigint
                AND NOT EXISTS (SELECT 1 FROM ${s}.deliveries d WHERE d.event_id = encode(x.id, 'hex'))
              LIMIT $3))
       AND e.seq >= $1::bigint AND e.seq < $2::bigint
    RETURNING 1)
  SELECT count(*)::int AS n FROM d`;

export const markIdsDropped = (s: string) => `UPDATE ${s}.log_partitions SET ids_dropped_at = now() WHERE lo = $1::bigint`;
