import type pg from 'pg';

/**
 * Numbered, forward-only migrations. Each runs once, in its own transaction, under a
 * transaction-level advisory lock so several instances starting at once migrate once.
 * Never edit a released migration: add the next number.
 */
export interface Migration {
  version: number;
  name: string;
  sql: (schema: string) => string;
}

export interface MigrateOptions {
  /** Shards of a ledger made now (`ledger.shards`); an existing ledger keeps its own. */
  shards?: number;
}

export const DEFAULT_SHARDS = 16;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'ledger',
    sql: (s) => `
      CREATE TABLE ${s}.checkpoints (
        source      text NOT NULL,
        stream      text NOT NULL,
        position    text NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source, stream)
      );
      CREATE TABLE ${s}.events (
        id            text PRIMARY KEY,
        code          text NOT NULL,
        kind          text NOT NULL,
        order_key     text NOT NULL,
        order_no      text,
        refund_id     text,
        occurred_at   timestamptz NOT NULL,
        committed_at  timestamptz NOT NULL,
        source        text NOT NULL,
        position      text NOT NULL,
        payload       json NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX events_order_no ON ${s}.events (order_no);
      -- One row per (event, sink). status: pending | delivered | rejected | not_applicable | skipped.
      -- No foreign key to events: both are written by the same statement, and the check
      -- would cost more than the rest of the insert.
      -- id orders deliveries (FIFO per order) and is only indexed inside the FIFO index.
      CREATE TABLE ${s}.deliveries (
        event_id         text NOT NULL,
        sink             text NOT NULL,
        id               bigserial NOT NULL,
        order_key        text NOT NULL,
        status           text NOT NULL DEFAULT 'pending',
        attempts         integer NOT NULL DEFAULT 0,
        next_attempt_at  timestamptz NOT NULL DEFAULT now(),
        lease_until      timestamptz,
        last_code        text,
        last_message     text,
        result           jsonb,
        created_at       timestamptz NOT NULL DEFAULT now(),
        updated_at       timestamptz NOT NULL DEFAULT now(),
        delivered_at     timestamptz,
        PRIMARY KEY (event_id, sink)
      );
      -- The delivery queue changes fast: analyze and vacuum it far more often than the defaults.
      ALTER TABLE ${s}.deliveries SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05);
      CREATE INDEX deliveries_due ON ${s}.deliveries (sink, next_attempt_at, id) WHERE status = 'pending';
      -- FIFO per (sink, order): the earliest unfinished delivery of an order blocks the rest.
      CREATE INDEX deliveries_fifo ON ${s}.deliveries (sink, order_key, id) WHERE status IN ('pending', 'rejected');
      CREATE TABLE ${s}.attempts (
        delivery_id     bigint NOT NULL,
        attempt         integer NOT NULL,
        at              timestamptz NOT NULL DEFAULT now(),
        outcome         text NOT NULL,
        request_id      text,
        http_status     integer,
        remote_code     text,
        remote_sub_code text,
        remote_message  text,
        duration_ms     integer,
        PRIMARY KEY (delivery_id, attempt)
      );
      -- The last row seen per order: decides transitions under REPLICA IDENTITY DEFAULT,
      -- fills unchanged TOAST columns, and gives refunds their order.
      -- json, not jsonb: the row is only ever read back whole, and building a jsonb tree
      -- was two thirds of the upsert's cost.
      CREATE TABLE ${s}.orders (
        order_no    text PRIMARY KEY,
        row         json NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
      );
      -- Source input that could not become events: visible, with its reason, replayable.
      CREATE TABLE ${s}.parked_inputs (
        id          bigserial PRIMARY KEY,
        source      text NOT NULL,
        stream      text NOT NULL,
        position    text NOT NULL,
        reason      text NOT NULL,
        raw         text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        resolved_at timestamptz
      );
    `,
  },
  {
    version: 2,
    name: 'parked inputs keyed by row',
    // A bad row was parked once by the stream and again by `backfill` (and by each run of
    // it): row_key names the source row an input is (table and order number or refund id,
    // which the stream and a backfill both know), and an unresolved row is parked once; a
    // later parking of it updates its reason, raw input and last_seen_at. Input that names
    // no row (no key, undecodable messages) has no row_key and is parked as it comes. Rows
    // parked before this migration keep no key.
    sql: (s) => `
      ALTER TABLE ${s}.parked_inputs ADD COLUMN row_key text, ADD COLUMN last_seen_at timestamptz;
      CREATE UNIQUE INDEX parked_inputs_row ON ${s}.parked_inputs (row_key) WHERE resolved_at IS NULL;
    `,
  },
  {
    version: 3,
    name: 'event log with sink cursors',
    // See ARCHITECTURE.md (the ledger model). Events become an append-only log partitioned by
    // ranges of a sequence; each sink keeps a cursor per shard below which every event is
    // settled; the deliveries table keeps only the exceptions (retrying, parked, waiting
    // behind those, skipped) with their own copy of the payload, and settled history of
    // earlier versions. The events and deliveries of a version-2 ledger are carried over:
    // events get sequence numbers in the order of their first delivery (so FIFO per order
    // holds), unfinished deliveries stay rows (pending stays pending, parked stays parked),
    // and every cursor starts past them.
    sql: (s) => `
      CREATE TABLE ${s}.sinks (
        name text PRIMARY KEY,
        bit  smallint NOT NULL UNIQUE CHECK (bit BETWEEN 0 AND 30)
      );
      CREATE SEQUENCE ${s}.log_seq AS bigint MINVALUE 1;
      CREATE TABLE ${s}.log (
        seq           bigint NOT NULL,
        id            bytea NOT NULL,
        shard         smallint NOT NULL,
        sinks         integer NOT NULL,
        code          text NOT NULL,
        order_key     text NOT NULL,
        committed_at  timestamptz NOT NULL,
        source        text NOT NULL,
        position      text NOT NULL,
        payload       json NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (seq)
      ) PARTITION BY RANGE (seq);
      -- What each sink settled, as the cursor passed it: append-only, dropped with its log partition.
      CREATE TABLE ${s}.outcomes (
        seq          bigint NOT NULL,
        sink         text NOT NULL,
        status       text NOT NULL,
        attempts     integer NOT NULL,
        at           timestamptz NOT NULL DEFAULT now(),
        request_id   text,
        http_status  integer,
        remote_code  text,
        -- Why, for not_applicable (the sink's reason).
        message      text,
        result       jsonb
      ) PARTITION BY RANGE (seq);
      CREATE INDEX outcomes_seq ON ${s}.outcomes USING brin (seq);
      -- One row per partition pair (log and outcomes share the range). closed_at: when the
      -- sequence moved past it (every row in it is older).
      CREATE TABLE ${s}.log_partitions (
        lo         bigint PRIMARY KEY,
        hi         bigint NOT NULL,
        opened_at  timestamptz NOT NULL DEFAULT now(),
        closed_at  timestamptz
      );
      CREATE TABLE ${s}.log_p0 PARTITION OF ${s}.log FOR VALUES FROM (0) TO (4294967296);
      CREATE TABLE ${s}.outcomes_p0 PARTITION OF ${s}.outcomes FOR VALUES FROM (0) TO (4294967296);
      INSERT INTO ${s}.log_partitions (lo, hi) VALUES (0, 4294967296);
      -- The ids of events, kept far longer than their payloads: a change of an old order (a
      -- refund after the window) or a backfill of old orders must not make a second event.
      CREATE TABLE ${s}.event_ids (
        id   bytea PRIMARY KEY,
        seq  bigint NOT NULL
      );
      CREATE INDEX event_ids_seq ON ${s}.event_ids USING brin (seq);
      CREATE TABLE ${s}.cursors (
        sink        text NOT NULL,
        shard       integer NOT NULL,
        seq         bigint NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, shard)
      );
      -- Order rows are upserted per change: room for HOT updates.
      ALTER TABLE ${s}.orders SET (fillfactor = 80);

      -- Exceptions carry what they are sent: the log partition may be gone when they go out.
      ALTER TABLE ${s}.deliveries
        ADD COLUMN code text, ADD COLUMN order_no text, ADD COLUMN committed_at timestamptz, ADD COLUMN payload json;
      ALTER TABLE ${s}.deliveries ALTER COLUMN id DROP DEFAULT;
      ALTER TABLE ${s}.attempts ADD COLUMN sink text;

      -- Carry version-2 events over, numbered in the order of their first delivery.
      CREATE TEMP TABLE seqmap ON COMMIT DROP AS
        SELECT e.id, row_number() OVER (ORDER BY min(d.id) NULLS LAST, e.created_at, e.id) AS seq
          FROM ${s}.events e LEFT JOIN ${s}.deliveries d ON d.event_id = e.id
         GROUP BY e.id, e.created_at;
      INSERT INTO ${s}.sinks (name, bit)
        SELECT sink, (row_number() OVER (ORDER BY sink) - 1)::smallint FROM (SELECT DISTINCT sink FROM ${s}.deliveries) x;
      INSERT INTO ${s}.log (seq, id, shard, sinks, code, order_key, committed_at, source, position, payload, created_at)
        SELECT m.seq, decode(e.id, 'hex'), 0,
               coalesce((SELECT bit_or(1 << k.bit) FROM ${s}.deliveries d JOIN ${s}.sinks k ON k.name = d.sink WHERE d.event_id = e.id), 0),
               e.code, e.order_key, e.committed_at, e.source, e.position, e.payload, e.created_at
          FROM ${s}.events e JOIN seqmap m ON m.id = e.id;
      INSERT INTO ${s}.event_ids (id, seq) SELECT decode(id, 'hex'), seq FROM seqmap;
      -- Only when events were carried over: a fresh sequence's last_value is not a seq taken.
      SELECT setval('${s}.log_seq', max(seq)) FROM seqmap HAVING count(*) > 0;
      CREATE TEMP TABLE idmap ON COMMIT DROP AS
        SELECT d.id AS old, m.seq AS new, d.sink FROM ${s}.deliveries d JOIN seqmap m ON m.id = d.event_id;
      -- The old key first: both sinks' deliveries of an event become (seq, attempt) rows.
      ALTER TABLE ${s}.attempts DROP CONSTRAINT attempts_pkey;
      UPDATE ${s}.attempts a SET delivery_id = x.new, sink = x.sink FROM idmap x WHERE a.delivery_id = x.old;
      UPDATE ${s}.deliveries d
         SET id = m.seq, code = e.code, order_no = e.order_no, committed_at = e.committed_at, payload = e.payload
        FROM seqmap m, ${s}.events e
       WHERE m.id = d.event_id AND e.id = d.event_id;
      ALTER TABLE ${s}.attempts ALTER COLUMN sink SET NOT NULL, ADD PRIMARY KEY (sink, delivery_id, attempt);
      DROP TABLE ${s}.events;

      -- The events as version 2 showed them, for operators' own queries.
      CREATE VIEW ${s}.events AS
        SELECT encode(l.id, 'hex') AS id, l.seq, l.code, (l.payload->>'kind') AS kind, l.order_key,
               (l.payload->>'orderNo') AS order_no, (l.payload->>'refundId') AS refund_id,
               (l.payload->>'occurredAt')::timestamptz AS occurred_at, l.committed_at, l.source, l.position,
               l.payload, l.created_at
          FROM ${s}.log l;
      -- Every (event, sink) with its state, for operators' own queries (not for the hot path):
      -- the outcome its cursor wrote, else its delivery row, else pending (past the cursor).
      CREATE VIEW ${s}.delivery_states AS
        SELECT encode(l.id, 'hex') AS event_id, k.name AS sink, l.seq, l.code, l.order_key,
               (l.payload->>'orderNo') AS order_no,
               coalesce(d.status, o.status, 'pending') AS status,
               coalesce(d.attempts, o.attempts, 0) AS attempts,
               d.last_code, coalesce(d.last_message, o.message) AS last_message,
               coalesce(d.result, o.result) AS result,
               coalesce(d.delivered_at, o.at) AS settled_at
          FROM ${s}.log l
          JOIN ${s}.sinks k ON (l.sinks & (1 << k.bit)) <> 0
          LEFT JOIN ${s}.deliveries d ON d.event_id = encode(l.id, 'hex') AND d.sink = k.name
          LEFT JOIN LATERAL (SELECT o.status, o.attempts, o.result, o.at, o.message FROM ${s}.outcomes o
                              WHERE o.seq = l.seq AND o.sink = k.name ORDER BY o.at DESC LIMIT 1) o ON d.event_id IS NULL;
      -- Where a sink's cursors start when the dispatcher makes them: past every carried-over event.
      CREATE TABLE ${s}.settings (key text PRIMARY KEY, value text NOT NULL);
      INSERT INTO ${s}.settings (key, value) SELECT 'cursor_start', coalesce(max(seq), 0)::text FROM seqmap;
      -- The shard count is fixed when the ledger is made (ledger.shards); the append hashes
      -- each order key into one of them.
      INSERT INTO ${s}.settings (key, value) VALUES ('shards', '__SHARDS__');
    `,
  },
  {
    version: 4,
    name: 'log partition retention',
    // Ledger maintenance (src/ledger/maintenance.ts) drops partition pairs past
    // ledger.retention and keeps their row: dropped_at says when, and ids_dropped_at when
    // the event ids of its range went (past ledger.idRetention). deliveries_settled finds
    // the finished deliveries to delete without reading the whole table (a version-2 ledger
    // carries its settled history over into it).
    sql: (s) => `
      ALTER TABLE ${s}.log_partitions ADD COLUMN dropped_at timestamptz, ADD COLUMN ids_dropped_at timestamptz;
      CREATE INDEX deliveries_settled ON ${s}.deliveries (updated_at) WHERE status IN ('delivered', 'not_applicable', 'skipped');
      -- A skipped delivery holds the later events of its order (sql.ts, holds): probed per new event.
      CREATE INDEX deliveries_skipped ON ${s}.deliveries (sink, order_key, id) WHERE status = 'skipped';
    `,
  },
  {
    version: 5,
    name: 'one probe for what holds an order',
    // Every new event asks whether its order waits behind a row of its sink (sql.ts, holds):
    // one index that has exactly those rows answers it in one probe instead of two.
    sql: (s) => `
      CREATE INDEX deliveries_holds ON ${s}.deliveries (sink, order_key) WHERE status IN ('pending', 'rejected', 'skipped');
    `,
  },
  {
    version: 6,
    name: 'owners: fencing epochs',
    // Who may write for a name (a slot): each new owner takes the next epoch; an append made
    // under an older one is refused (sql.ts, fenceCheck).
    sql: (s) => `
      CREATE TABLE ${s}.owners (
        name    text PRIMARY KEY,
        epoch   bigint NOT NULL,
        holder  text NOT NULL,
        at      timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
];

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Runs pending migrations; returns the versions applied. */
export async function migrate(client: pg.ClientBase, schema: string, options: MigrateOptions = {}): Promise<number[]> {
  const shards = options.shards ?? DEFAULT_SHARDS;
  if (!Number.isInteger(shards) || shards < 1 || shards > 4096) throw new Error(`ledger.shards must be an integer from 1 to 4096, not ${shards}`);
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    // One lock id per schema name, so two ledgers in one database do not serialise each other.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('order_relay.migrate.' || $1))`, [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations`);
    const done = new Set(rows.map((r) => r.version));
    const newer = rows.find((r) => r.version > LATEST_VERSION);
    if (newer) throw new Error(`ledger schema ${schema} is at version ${newer.version}, newer than this order-relay (${LATEST_VERSION}); upgrade order-relay`);
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql(schema).replaceAll('__SHARDS__', String(shards)));
      await client.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** The ledger's schema version, or 0 when it has none yet. */
export async function schemaVersion(client: pg.ClientBase | pg.Pool, schema: string): Promise<number> {
  const { rows } = await client.query<{ v: number | null }>(
    `SELECT CASE WHEN to_regclass($1) IS NULL THEN 0 END AS v`,
    [`${schema}.schema_migrations`],
  );
  if (rows[0]?.v === 0) return 0;
  const r = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${schema}.schema_migrations`);
  return r.rows[0]?.v ?? 0;
}
