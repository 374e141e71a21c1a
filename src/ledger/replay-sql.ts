import { OPEN } from './sql.js';

/**
 * The statements of `order-relay replay` (see `replay.ts`), as pure builders of their text,
 * beside the dispatcher's own in `sql.ts`. In the ledger model of schema version 3 the
 * deliveries an operator acts on (parked, skipped, held, waiting behind those) are rows of
 * `deliveries` carrying their own code, order number and payload; an event is found by id
 * through `event_ids` (id → seq) and read from `log`; what a sink settled as its cursor passed
 * an event is in `outcomes`. Rows are keyed by (event_id, sink): their `id` is the event's seq,
 * shared by the rows of one event at every sink.
 *
 * Event ids are passed as 32-hex text and decoded here; callers pass only well-formed ids
 * (`decode` fails the statement on anything else).
 */

const ROW = `d.id::text AS id, d.event_id, d.sink, d.order_key, d.code, d.order_no, d.status, d.attempts, d.last_code, d.last_message`;

/** $1 event ids (hex): those the ledger holds (kept in event_ids far longer than the payloads). */
export const knownEvents = (s: string) => /* sql */ `
  SELECT encode(i.id, 'hex') AS id FROM ${s}.event_ids i WHERE i.id IN (SELECT decode(x, 'hex') FROM unnest($1::text[]) AS x)`;

/**
 * Per event and sink: the row's status, else the outcome its cursor wrote, else whether the
 * event is past the sink's cursor (not yet settled: pending there). $1 event ids.
 */
export const eventStates = (s: string) => /* sql */ `
  WITH ev AS (
    SELECT encode(i.id, 'hex') AS event_id, l.seq, l.shard, l.sinks
      FROM ${s}.event_ids i LEFT JOIN ${s}.log l ON l.seq = i.seq
     WHERE i.id IN (SELECT decode(x, 'hex') FROM unnest($1::text[]) AS x)
  ), pairs AS (
    SELECT ev.event_id, k.name AS sink, ev.seq, ev.shard FROM ev JOIN ${s}.sinks k ON (ev.sinks & (1 << k.bit)) <> 0
    UNION
    SELECT d.event_id, d.sink, ev.seq, ev.shard FROM ${s}.deliveries d JOIN ev ON ev.event_id = d.event_id
  )
  SELECT p.event_id, p.sink, d.status AS row_status, d.last_code,
         (SELECT o.status FROM ${s}.outcomes o WHERE o.seq = p.seq AND o.sink = p.sink LIMIT 1) AS outcome,
         coalesce(p.seq > coalesce((SELECT c.seq FROM ${s}.cursors c WHERE c.sink = p.sink AND c.shard = p.shard),
                                   (SELECT value::bigint FROM ${s}.settings WHERE key = 'cursor_start'), 0), false) AS unsettled
    FROM pairs p LEFT JOIN ${s}.deliveries d ON d.event_id = p.event_id AND d.sink = p.sink
   ORDER BY p.event_id, p.sink`;

/** Rows in $4 statuses matching $1 event ids (or all), $2 sink, $3 event code; in FIFO order. */
export const matchRows = (s: string, lock: boolean) => /* sql */ `
  SELECT ${ROW}
    FROM ${s}.deliveries d
   WHERE d.status = ANY($4::text[])
     AND ($1::text[] IS NULL OR d.event_id = ANY($1::text[]))
     AND ($2::text IS NULL OR d.sink = $2)
     AND ($3::text IS NULL OR d.code = $3)
   ORDER BY d.id, d.sink${lock ? ' FOR UPDATE OF d' : ''}`;

/** Open rows of the same (sink, order) after each head ($1 sinks, $2 order keys, $3 ids), locked. */
export const openRowsBehind = (s: string) => /* sql */ `
  SELECT ${ROW}
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS h(sink, order_key, id)
    JOIN ${s}.deliveries d ON d.sink = h.sink AND d.order_key = h.order_key AND d.id > h.id AND d.status IN ${OPEN}
   ORDER BY d.id, d.sink
     FOR UPDATE OF d`;

/**
 * Events of the same (sink, order) after each head ($1 sinks, $2 order keys, $3 seqs) that the
 * sink has not settled (past its cursor for the event's shard) and that have no row: what
 * waits behind the head without being a row yet. Reads the log from the sink's lowest cursor
 * (or the head, if later), so only its unread tail.
 */
export const unreadBehind = (s: string) => /* sql */ `
  WITH st AS (SELECT coalesce((SELECT value::bigint FROM ${s}.settings WHERE key = 'cursor_start'), 0) AS seq),
  h AS (
    SELECT h.sink, h.order_key, k.bit,
           greatest(h.id, coalesce((SELECT min(c.seq) FROM ${s}.cursors c WHERE c.sink = h.sink), (SELECT seq FROM st))) AS lo
      FROM unnest($1::text[], $2::text[], $3::bigint[]) AS h(sink, order_key, id)
      JOIN ${s}.sinks k ON k.name = h.sink
  )
  SELECT l.seq::text AS seq, h.sink
    FROM h
    JOIN LATERAL (
           SELECT l.seq, l.id, l.shard FROM ${s}.log l
            WHERE l.seq > h.lo AND l.order_key = h.order_key AND (l.sinks & (1 << h.bit)) <> 0) l ON true
   WHERE l.seq > coalesce((SELECT c.seq FROM ${s}.cursors c WHERE c.sink = h.sink AND c.shard = l.shard), (SELECT seq FROM st))
     AND NOT EXISTS (SELECT 1 FROM ${s}.deliveries d WHERE d.event_id = encode(l.id, 'hex') AND d.sink = h.sink)
   ORDER BY l.seq, h.sink`;

/**
 * Those events ($1 seqs, $2 sinks) as rows, pending behind the open row of their order, as the
 * dispatcher makes them when it reads one (its own insert then finds the row and leaves it).
 */
export const insertRowsFromLog = (s: string) => /* sql */ `
  INSERT INTO ${s}.deliveries (event_id, sink, id, order_key, status, attempts, next_attempt_at, code, order_no, committed_at, payload)
  SELECT encode(l.id, 'hex'), x.sink, l.seq, l.order_key, 'pending', 0, now(), l.code, l.payload->>'orderNo', l.committed_at, l.payload
    FROM unnest($1::bigint[], $2::text[]) AS x(seq, sink)
    JOIN ${s}.log l ON l.seq = x.seq
  ON CONFLICT (event_id, sink) DO NOTHING`;

/** Parked rows ($1 event ids, $2 sinks) to skipped. */
export const skipRows = (s: string) => /* sql */ `
  UPDATE ${s}.deliveries d SET status = 'skipped', lease_until = NULL, updated_at = now()
    FROM unnest($1::text[], $2::text[]) AS x(event_id, sink)
   WHERE d.event_id = x.event_id AND d.sink = x.sink AND d.status = 'rejected'`;

/** Pending rows ($1 event ids, $2 sinks) parked behind a skipped one: last_code HELD, $3 messages. */
export const holdRows = (s: string, held: string) => /* sql */ `
  UPDATE ${s}.deliveries d SET status = 'rejected', last_code = '${held}', last_message = x.message, lease_until = NULL, updated_at = now()
    FROM unnest($1::text[], $2::text[], $3::text[]) AS x(event_id, sink, message)
   WHERE d.event_id = x.event_id AND d.sink = x.sink AND d.status = 'pending'`;

/**
 * Open rows ($1 event ids, $2 sinks, $3 messages) skipped with the rest of their order: their
 * own reason (a remote code) is kept; a held or never-tried one says why it was skipped.
 */
export const skipRowsWithOrder = (s: string, held: string, withOrder: string) => /* sql */ `
  UPDATE ${s}.deliveries d SET status = 'skipped', lease_until = NULL, updated_at = now(),
         last_code = CASE WHEN d.last_code IS NULL OR d.last_code = '${held}' OR d.status = 'pending' THEN '${withOrder}' ELSE d.last_code END,
         last_message = CASE WHEN d.last_code IS NULL OR d.last_code = '${held}' OR d.status = 'pending' THEN x.message ELSE d.last_message END
    FROM unnest($1::text[], $2::text[], $3::text[]) AS x(event_id, sink, message)
   WHERE d.event_id = x.event_id AND d.sink = x.sink AND d.status IN ${OPEN}`;

/** Parked or skipped rows ($1 event ids, $2 sinks) back to pending: same row, same event id, same key. */
export const requeueRows = (s: string, held: string) => /* sql */ `
  UPDATE ${s}.deliveries d SET status = 'pending', next_attempt_at = now(), lease_until = NULL, updated_at = now(),
         last_code = CASE WHEN d.last_code = '${held}' THEN NULL ELSE d.last_code END,
         last_message = CASE WHEN d.last_code = '${held}' THEN NULL ELSE d.last_message END
    FROM unnest($1::text[], $2::text[]) AS x(event_id, sink)
   WHERE d.event_id = x.event_id AND d.sink = x.sink AND d.status IN ('rejected', 'skipped')`;

// ---- refreshing payloads ----

/** The log rows of $1 event ids, locked: no refresh of the same event runs beside this one. */
export const lockLogEvents = (s: string) => /* sql */ `
  SELECT encode(l.id, 'hex') AS id, l.seq::text AS seq, l.code, l.payload
    FROM ${s}.event_ids i JOIN ${s}.log l ON l.seq = i.seq
   WHERE i.id IN (SELECT decode(x, 'hex') FROM unnest($1::text[]) AS x)
   ORDER BY l.seq
     FOR UPDATE OF l`;

/** Every row of $1 event ids, locked (a claim skips locked rows, so none starts meanwhile). */
export const lockEventRows = (s: string) => /* sql */ `
  SELECT d.event_id, d.sink, d.status, d.attempts, d.code, d.order_no, d.payload, coalesce(d.lease_until > now(), false) AS leased
    FROM ${s}.deliveries d WHERE d.event_id = ANY($1::text[])
   ORDER BY d.id, d.sink
     FOR UPDATE OF d`;

/** Sinks that delivered $1 event ids from the log (their outcome as the cursor passed). */
export const deliveredOutcomes = (s: string) => /* sql */ `
  SELECT encode(i.id, 'hex') AS event_id, o.sink
    FROM ${s}.event_ids i JOIN ${s}.outcomes o ON o.seq = i.seq
   WHERE i.id IN (SELECT decode(x, 'hex') FROM unnest($1::text[]) AS x) AND o.status = 'delivered'`;

/** The re-rendered payload ($2, per $1 seq) into the log, for the sinks that have not reached it. */
export const refreshLog = (s: string) => /* sql */ `
  UPDATE ${s}.log l SET payload = x.payload::json
    FROM unnest($1::bigint[], $2::text[]) AS x(seq, payload)
   WHERE l.seq = x.seq`;

/** And into the event's open rows (pending, parked, skipped): never a delivered one. $1 event ids, $2 payloads. */
export const refreshOpenRows = (s: string) => /* sql */ `
  UPDATE ${s}.deliveries d SET payload = x.payload::json, updated_at = now()
    FROM unnest($1::text[], $2::text[]) AS x(event_id, payload)
   WHERE d.event_id = x.event_id AND d.status IN ('pending', 'rejected', 'skipped')`;

/**
 * A sink that delivered the event as a row keeps what it was sent (the row's own payload) in
 * its result as `sent_payload`; the first version, if refreshed twice. $1 event ids, $2 the
 * payload before the refresh (for a row without one).
 */
export const keepSentPayloadOfRows = (s: string) => /* sql */ `
  UPDATE ${s}.deliveries d
     SET result = coalesce(d.result, '{}'::jsonb) || jsonb_build_object('sent_payload', coalesce(d.payload::jsonb, x.old::jsonb)), updated_at = now()
    FROM unnest($1::text[], $2::text[]) AS x(event_id, old)
   WHERE d.event_id = x.event_id AND d.status = 'delivered' AND NOT (coalesce(d.result, '{}'::jsonb) ? 'sent_payload')`;

/** The same for sinks that delivered it from the log: their outcome's result. $1 seqs, $2 the log's payload before the refresh. */
export const keepSentPayloadOfOutcomes = (s: string) => /* sql */ `
  UPDATE ${s}.outcomes o
     SET result = coalesce(o.result, '{}'::jsonb) || jsonb_build_object('sent_payload', x.old::jsonb)
    FROM unnest($1::bigint[], $2::text[]) AS x(seq, old)
   WHERE o.seq = x.seq AND o.status = 'delivered' AND NOT (coalesce(o.result, '{}'::jsonb) ? 'sent_payload')`;

// ---- parked source input (replay --inputs) ----

/** Unresolved parked inputs, all or $1 ids. */
export const unresolvedInputs = (s: string) => /* sql */ `
  SELECT id::text, stream, reason, raw FROM ${s}.parked_inputs
   WHERE resolved_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[])) ORDER BY id`;

export const resolveInputs = (s: string) => `UPDATE ${s}.parked_inputs SET resolved_at = now() WHERE resolved_at IS NULL AND id = ANY($1::bigint[])`;
