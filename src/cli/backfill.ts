import pg from 'pg';
import { decodeTuple } from '../../connectors/sources/postgres/decode.js';
import { ensurePublicationAndSlot } from '../../connectors/sources/postgres/setup.js';
import { configuredTables, ledgerUrl, migrateLedger, sourceUrl } from '../app.js';
import { createClassifier, qualify, text, type Classifier } from '../classify/classifier.js';
import type { Config } from '../config/schema.js';
import type { BusinessEvent, Row } from '../core/events.js';
import type { Sink } from '../core/sink.js';
import type { BadInput, SourceChange } from '../core/source.js';
import { createLedger, type EventToStore } from '../ledger/ledger.js';
import type { Logger } from '../log.js';
import { createSink } from '../registry.js';
import { bar, progressReporter } from './format.js';

/**
 * Backfill: events for orders that existed before the replication slot.
 *
 * Why this is consistent with the stream (no gap, no duplicate):
 * - The slot exists before the first row is read (backfill creates it when it may). Every
 *   change committed after the slot's creation is streamed; every row committed before it
 *   is visible to the reads below, which all start after it. Together they cover everything.
 * - Where they overlap (a row changed after the slot was created, read here and streamed),
 *   event identity is deterministic — (project, order, code[, refund]) — and the ledger
 *   keeps the first copy of an id, so the second is dropped. No snapshot is needed.
 * - Rows go through the stream's classifier as synthetic inserts and, for the orders table,
 *   without the ledger's last row (so every event the row's current status stands for is
 *   emitted; repeats are dropped by id). The ledger's `orders` row is *inserted* when the
 *   ledger has none, never overwritten: the stream's row says what the stream last saw, and
 *   a newer or older copy from here could make it misjudge its next transition. A stored row
 *   that lacks columns is completed, though: only the columns it lacks are added, its own
 *   values (status included) stay. A row lacks a column when the order's first streamed
 *   change was an update that left a TOASTed value alone (pgoutput sends no value for it)
 *   and the source table could not be read then; the next events of that order take the
 *   column from this row. Because
 *   the ledger stores an order row only together with the events of that row's status, a
 *   later streamed change whose status equals that row's is skipped only when its events
 *   are already in the ledger.
 * - Each page is one ledger transaction: events, deliveries, parked rows, the inserted order
 *   rows and the cursor (checkpoints, source `backfill`, one stream per table). An
 *   interrupted backfill resumes after the last committed page; a page re-read after a
 *   crash yields the same ids.
 */

export const BACKFILL_SOURCE = 'backfill';

export interface BackfillProgress {
  table: string;
  /** Rows read in this table so far (across resumed runs). */
  done: number;
  total: number;
  events: number;
}

export interface BackfillOptions {
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Rows per page (one ledger transaction each). */
  batchSize?: number;
  /** Forget stored cursors and read every table again (events already stored stay, by id). */
  restart?: boolean;
  signal?: AbortSignal;
  onProgress?(p: BackfillProgress): void;
  /** Called after each committed page (tests interrupt here). */
  afterPage?(p: BackfillProgress): void | Promise<void>;
  /** Sinks to fan out to (tests); default: built from config. */
  sinks?: Sink[];
}

export interface BackfillTableResult {
  table: string;
  rows: number;
  /** Events new to the ledger (the rest were there already). */
  newEvents: number;
  parked: number;
  /** Ledger order rows that lacked columns (unchanged TOAST never read), completed from the table. */
  ordersCompleted: number;
  /** Rows whose key column is NULL: they cannot be paged and are left to the stream. */
  nullKeys: number;
  /** Already complete from an earlier run. */
  alreadyDone: boolean;
}

export interface BackfillResult {
  tables: BackfillTableResult[];
  interrupted: boolean;
  slotCreated: boolean;
  deliveries: Record<string, number>;
}

interface Cursor {
  after: string | null;
  rows: number;
  done: boolean;
}

export interface TableSpec {
  table: string;
  key: string;
  kind: 'orders' | 'refunds';
}

export interface StoreResult {
  newEvents: number;
  bad: Array<{ key: string | undefined; reason: string }>;
  deliveries: Record<string, number>;
  /** Order rows the ledger held without some of the row's columns, now completed. */
  ordersCompleted: number;
}

/** The reading side shared by backfill and by `replay --inputs`: reads current rows, classifies, stores. */
export interface Rereader {
  classifier: Classifier;
  specs: TableSpec[];
  source: pg.Pool;
  ledgerPool: pg.Pool;
  /** The SQL type of the table's key column, e.g. `text` or `bigint`. */
  keyType(spec: TableSpec): Promise<string>;
  /** Current rows of `spec.table` whose key is one of `keys`. */
  rowsByKey(spec: TableSpec, keys: string[]): Promise<Row[]>;
  /**
   * Classifies rows and stores their events in one ledger transaction, with `extra` run in the
   * same transaction (the cursor, resolving parked input).
   */
  store(
    spec: TableSpec,
    rows: Row[],
    extra: { checkpoint?: { stream: string; position: string }; parkBad?: boolean; inTransaction?: (client: pg.PoolClient, outcome: { bad: number }) => Promise<void> },
  ): Promise<StoreResult>;
  close(): Promise<void>;
}

export function tableSpecs(config: Config): TableSpec[] {
  return [
    { table: qualify(config.orders.table), key: config.orders.orderNo, kind: 'orders' as const },
    ...(config.refunds ? [{ table: qualify(config.refunds.table), key: config.refunds.refundId, kind: 'refunds' as const }] : []),
  ];
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteTable(table: string): string {
  return table.split('.').map(quoteIdent).join('.');
}

export async function createRereader(config: Config, deps: { logger: Logger; env?: NodeJS.ProcessEnv; sinks?: Sink[] }): Promise<Rereader> {
  if (!config.source) throw new Error('backfill reads the source tables: the config has no postgres source');
  const classifier = createClassifier(config);
  const specs = tableSpecs(config);
  const sinks = deps.sinks ?? Object.entries(config.sinks).map(([name, sc]) => createSink(name, sc, { logger: deps.logger, ...(deps.env ? { env: deps.env } : {}) }));
  const ownSinks = !deps.sinks;
  const source = new pg.Pool({ connectionString: sourceUrl(config), max: 2, application_name: 'order-relay-backfill' });
  const ledgerPool = new pg.Pool({ connectionString: ledgerUrl(config), max: 2, application_name: 'order-relay-backfill' });
  source.on('error', () => {});
  ledgerPool.on('error', () => {});
  const schema = config.ledger.schema;
  const keyTypes = new Map<string, string>();
  const ordersSpec = specs[0]!;

  async function keyType(spec: TableSpec): Promise<string> {
    const known = keyTypes.get(spec.table);
    if (known) return known;
    const { rows } = await source.query<{ t: string | null }>(
      `SELECT format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a
        WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`,
      [quoteTable(spec.table), spec.key],
    );
    const t = rows[0]?.t;
    if (!t) throw new Error(`${spec.table}: no column "${spec.key}" (or no such table)`);
    keyTypes.set(spec.table, t);
    return t;
  }

  const primaryKeys = new Map<string, string[]>();
  /** The table's primary key columns (none without one). */
  async function primaryKey(spec: TableSpec): Promise<string[]> {
    const known = primaryKeys.get(spec.table);
    if (known) return known;
    const { rows } = await source.query<{ col: string }>(
      `SELECT a.attname::text AS col FROM pg_index i
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n`,
      [quoteTable(spec.table)],
    );
    const cols = rows.map((r) => r.col);
    primaryKeys.set(spec.table, cols);
    return cols;
  }

  async function rowsByKey(spec: TableSpec, keys: string[]): Promise<Row[]> {
    if (keys.length === 0) return [];
    const t = await keyType(spec);
    const res = await source.query(`SELECT * FROM ${quoteTable(spec.table)} WHERE ${quoteIdent(spec.key)} = ANY($1::${t}[])`, [keys]);
    return res.rows.map((r) => decodeTuple(r as Record<string, unknown>)!.row);
  }

  async function store(
    spec: TableSpec,
    rows: Row[],
    extra: Parameters<Rereader['store']>[2],
  ): Promise<StoreResult> {
    const committedAt = new Date().toISOString();
    // Refunds need their order: the current row from the source table (what the stream's
    // fetchOrders would read for an order the ledger does not know).
    let orderRows = new Map<string, Row>();
    if (spec.kind === 'refunds' && config.refunds) {
      const nos = [...new Set(rows.map((r) => text(r[config.refunds!.orderNo])).filter((n): n is string => !!n))];
      orderRows = new Map(
        (await rowsByKey(ordersSpec, nos)).map((r) => [text(r[config.orders.orderNo])!, r] as const).filter(([k]) => !!k),
      );
    }
    const events = new Map<string, EventToStore>();
    const orders = new Map<string, Row>();
    const bad: Array<BadInput & { rowKey?: string | undefined }> = [];
    const badKeys: Array<{ key: string | undefined; reason: string }> = [];
    const pk = rows.some((r) => text(r[spec.key]) === undefined) ? await primaryKey(spec) : [];
    for (const row of rows) {
      const key = text(row[spec.key]);
      // A row without its key (a blank order number) is named by its primary key instead.
      const position = `backfill:${key ?? (pk.length ? keyText(pk, row) : `${keyText([spec.key], row)}, no primary key`)}`;
      const change: SourceChange = { table: spec.table, op: 'insert', after: row, before: null, position, committedAt };
      let result;
      try {
        // Orders: no ledger knowledge, so every event of the current status is emitted (and
        // deduplicated by id). Refunds: the order's current row.
        result = classifier.classify(change, (orderNo) => (spec.kind === 'refunds' ? orderRows.get(orderNo) : undefined));
      } catch (err) {
        result = { kind: 'bad' as const, reason: `cannot classify: ${err instanceof Error ? err.message : String(err)}` };
      }
      if (result.kind === 'bad') {
        badKeys.push({ key, reason: result.reason });
        // Keyed by the row, as the stream parks it: a row both read (or a restarted backfill
        // reads again) is parked once. Without an order number / refund id, by table and
        // primary key, which only a backfill names so.
        const rowKey = classifier.rowKeyOf(change) ?? (key === undefined && pk.length ? `${spec.table} ${keyText(pk, row)}` : undefined);
        bad.push({ stream: spec.table, position, reason: result.reason, raw: JSON.stringify(change), rowKey });
        continue;
      }
      if (result.kind === 'ignored') continue;
      if (result.orderNo && result.orderRow) orders.set(result.orderNo, result.orderRow);
      for (const event of result.events) {
        if (events.has(event.id)) continue;
        events.set(event.id, { event, sinks: sinksFor(event), position: change.position, committedAt });
      }
    }

    // Sinks are registered outside the page's transaction: inside it, a registration would
    // hold every other writer of the ledger until the page commits.
    for (const sink of sinks) await registered(sink.name);
    const client = await ledgerPool.connect();
    try {
      await client.query('BEGIN');
      // A row parked already and not resolved (by the stream, an earlier run) is parked once:
      // the append's parked input is keyed by row.
      const toPark = extra.parkBad === false ? [] : bad;
      // The ledger's append is one statement; run on this client it joins this transaction.
      const ledger = createLedger(client, schema);
      const stored = await ledger.append({
        source: BACKFILL_SOURCE,
        events: [...events.values()],
        orders: [],
        bad: toPark,
        checkpoints: extra.checkpoint ? [extra.checkpoint] : [],
      });
      let ordersCompleted = 0;
      if (orders.size) {
        // Stored values win (`||` keeps the right operand's value of a key both have); a row
        // is only touched when it gains a column (xmax is not 0 for a row updated here).
        const { rows: upserted } = await client.query<{ completed: boolean }>(
          `INSERT INTO ${schema}.orders AS t (order_no, row) SELECT o.order_no, o.row FROM json_to_recordset($1::json) AS o(order_no text, row json)
           ON CONFLICT (order_no) DO UPDATE SET row = (EXCLUDED.row::jsonb || t.row::jsonb)::json, updated_at = now()
            WHERE (EXCLUDED.row::jsonb || t.row::jsonb) <> t.row::jsonb
           RETURNING t.xmax::text <> '0' AS completed`,
          [JSON.stringify([...orders].map(([order_no, row]) => ({ order_no, row })))],
        );
        ordersCompleted = upserted.filter((r) => r.completed).length;
      }
      await extra.inTransaction?.(client, { bad: badKeys.length });
      await client.query('COMMIT');
      return { newEvents: stored.inserted, bad: badKeys, deliveries: stored.deliveries, ordersCompleted };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  const registeredSinks = new Set<string>();
  async function registered(name: string): Promise<void> {
    if (registeredSinks.has(name)) return;
    await createLedger(ledgerPool, schema).sinkBit(name);
    registeredSinks.add(name);
  }

  function sinksFor(event: BusinessEvent): string[] {
    return sinks.filter((s) => s.handles(event)).map((s) => s.name);
  }

  return {
    classifier,
    specs,
    source,
    ledgerPool,
    keyType,
    rowsByKey,
    store,
    async close() {
      if (ownSinks) await Promise.all(sinks.map((s) => s.close().catch(() => {})));
      await Promise.all([source.end(), ledgerPool.end()]);
    },
  };
}

/**
 * The backfill's progress on stderr. On a terminal, one line redrawn in place (`\r`). To a file
 * or a pipe (a log, CI, `2> backfill.log`), where `\r` redraws pile up into one unreadable
 * line, a plain line at most every `intervalMs` (default 10 s), the last line of each table
 * when the next one starts, and a final line.
 */
export function backfillProgress(stream: NodeJS.WritableStream & { isTTY?: boolean }, options: { intervalMs?: number; now?: () => number } = {}) {
  const tty = stream.isTTY === true;
  const every = options.intervalMs ?? 10_000;
  const now = options.now ?? Date.now;
  const redraw = progressReporter(stream, { intervalMs: 0 });
  let lastAt = -Infinity;
  let unwritten: { table: string; text: string } | undefined;
  const write = (text: string) => {
    stream.write(`${text}\n`);
    lastAt = now();
    unwritten = undefined;
  };
  return {
    update(p: BackfillProgress): void {
      const text = `${p.table.padEnd(16)} ${bar(p.done, p.total)} ${p.done}/${p.total} rows, ${p.events} new events`;
      if (tty) return redraw.update(text);
      if (unwritten && unwritten.table !== p.table) write(unwritten.text);
      if (now() - lastAt >= every) write(text);
      else unwritten = { table: p.table, text };
    },
    done(): void {
      if (tty) redraw.done();
      else if (unwritten) write(unwritten.text);
    },
  };
}

/** Reads every configured table in key order, page by page, into the ledger. */
export async function backfill(config: Config, options: BackfillOptions): Promise<BackfillResult> {
  const log = options.logger.child({ component: 'backfill' });
  const batchSize = options.batchSize ?? 500;
  await migrateLedger(config);
  const slotCreated = await ensureSlot(config, log);
  const reader = await createRereader(config, { logger: options.logger, ...(options.env ? { env: options.env } : {}), ...(options.sinks ? { sinks: options.sinks } : {}) });
  const schema = config.ledger.schema;
  const result: BackfillResult = { tables: [], interrupted: false, slotCreated, deliveries: {} };
  try {
    if (options.restart) await reader.ledgerPool.query(`DELETE FROM ${schema}.checkpoints WHERE source = $1`, [BACKFILL_SOURCE]);
    for (const spec of reader.specs) {
      const stored = await reader.ledgerPool.query<{ position: string }>(
        `SELECT position FROM ${schema}.checkpoints WHERE source = $1 AND stream = $2`,
        [BACKFILL_SOURCE, spec.table],
      );
      let cursor: Cursor = stored.rows[0] ? (JSON.parse(stored.rows[0].position) as Cursor) : { after: null, rows: 0, done: false };
      const t: BackfillTableResult = { table: spec.table, rows: 0, newEvents: 0, parked: 0, ordersCompleted: 0, nullKeys: 0, alreadyDone: cursor.done };
      result.tables.push(t);
      const table = quoteTable(spec.table);
      const key = quoteIdent(spec.key);
      const counts = await reader.source.query<{ total: string; nulls: string }>(
        `SELECT count(*)::text AS total, count(*) FILTER (WHERE ${key} IS NULL)::text AS nulls FROM ${table}`,
      );
      const total = Number(counts.rows[0]!.total);
      t.nullKeys = Number(counts.rows[0]!.nulls);
      if (t.nullKeys) log.warn({ table: spec.table, rows: t.nullKeys }, `rows with a NULL ${spec.key} cannot be backfilled; the stream parks them when they change`);
      if (cursor.done) continue;
      const type = await reader.keyType(spec);
      while (!options.signal?.aborted) {
        const page =
          cursor.after === null
            ? await reader.source.query(`SELECT * FROM ${table} WHERE ${key} IS NOT NULL ORDER BY ${key} LIMIT $1`, [batchSize])
            : await reader.source.query(`SELECT * FROM ${table} WHERE ${key} > $1::${type} ORDER BY ${key} LIMIT $2`, [cursor.after, batchSize]);
        const rows = page.rows.map((r) => decodeTuple(r as Record<string, unknown>)!.row);
        const last = page.rows.length ? rawKey(page.rows[page.rows.length - 1] as Record<string, unknown>, spec.key) : cursor.after;
        const next: Cursor = { after: last, rows: cursor.rows + rows.length, done: rows.length < batchSize };
        const stored = await reader.store(spec, rows, { checkpoint: { stream: spec.table, position: JSON.stringify(next) } });
        cursor = next;
        t.rows += rows.length;
        t.newEvents += stored.newEvents;
        t.parked += stored.bad.length;
        t.ordersCompleted += stored.ordersCompleted;
        for (const [sink, n] of Object.entries(stored.deliveries)) result.deliveries[sink] = (result.deliveries[sink] ?? 0) + n;
        const progress = { table: spec.table, done: cursor.rows, total: Math.max(total, cursor.rows), events: t.newEvents };
        options.onProgress?.(progress);
        await options.afterPage?.(progress);
        if (cursor.done) break;
      }
      if (!cursor.done) {
        result.interrupted = true;
        log.warn({ table: spec.table, rows: cursor.rows }, 'backfill interrupted; run it again to resume after the last stored page');
        break;
      }
      log.info({ table: spec.table, rows: t.rows, newEvents: t.newEvents, parked: t.parked, ordersCompleted: t.ordersCompleted }, 'table backfilled');
    }
  } finally {
    await reader.close();
  }
  return result;
}

/** Columns and their values as PostgreSQL shows a key, e.g. `(id)=(17)` or `(order_no)=(" ")`. */
function keyText(columns: string[], row: Row): string {
  const value = (v: Row[string] | undefined) => (typeof v === 'string' && /^-?\d+$/.test(v) ? v : JSON.stringify(v ?? null));
  return `(${columns.join(', ')})=(${columns.map((c) => value(row[c])).join(', ')})`;
}

/** The key as text the next page can compare against (cast back to the column's type). */
function rawKey(row: Record<string, unknown>, key: string): string {
  const v = row[key];
  if (v instanceof Date) return v.toISOString();
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/**
 * The slot must exist before the first read, or changes committed between a read and the
 * slot's creation would be in neither. Creates publication and slot when the config allows.
 */
async function ensureSlot(config: Config, log: Logger): Promise<boolean> {
  const client = new pg.Client({ connectionString: sourceUrl(config), application_name: 'order-relay-backfill' });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config.source!.slot]);
    if (rows.length) return false;
    if (!config.source!.create) {
      throw new Error(`replication slot "${config.source!.slot}" does not exist: create it (or start \`order-relay run\` once) before backfilling, so no change falls between the two`);
    }
    const { slotCreated } = await ensurePublicationAndSlot(
      client,
      { slot: config.source!.slot, publication: config.source!.publication, tables: configuredTables(config), create: true },
      log,
    );
    if (slotCreated) log.info({ slot: config.source!.slot }, 'created the replication slot first: changes from now on are streamed by `run`, older rows come from this backfill');
    return slotCreated;
  } finally {
    await client.end().catch(() => {});
  }
}
