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
];

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Runs pending migrations; returns the versions applied. */
export async function migrate(client: pg.ClientBase, schema: string): Promise<number[]> {
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
      await client.query(m.sql(schema));
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
