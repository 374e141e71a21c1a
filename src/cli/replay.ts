import pg from 'pg';
import { ledgerUrl } from '../app.js';
import { qualify, text } from '../classify/classifier.js';
import type { Config } from '../config/schema.js';
import type { SourceChange } from '../core/source.js';
import { createLedger } from '../ledger/ledger.js';
import type { Logger } from '../log.js';
import { createRereader } from './backfill.js';

export interface DeliveryFilter {
  eventIds?: string[];
  sink?: string;
  code?: string;
  all?: boolean;
}

export interface MatchedDelivery {
  id: string;
  eventId: string;
  sink: string;
  code: string;
  orderNo: string | null;
  status: string;
  lastCode: string | null;
  lastMessage: string | null;
}

export function describeFilter(f: DeliveryFilter): string {
  const parts = [
    f.eventIds?.length ? `event ${f.eventIds.join(',')}` : '',
    f.sink ? `sink ${f.sink}` : '',
    f.code ? `code ${f.code}` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'all';
}

function checkFilter(f: DeliveryFilter): void {
  if (!f.all && !f.eventIds?.length && !f.sink && !f.code) {
    throw new Error('say which parked deliveries: --event <id>, --sink <name>, --code <EVENT_CODE>, or --all');
  }
}

/** Parked (or, with `statuses`, skipped) deliveries matching the filter. */
export async function matchParked(pool: pg.Pool, schema: string, f: DeliveryFilter, statuses: string[] = ['rejected']): Promise<MatchedDelivery[]> {
  const { rows } = await pool.query<{
    id: string; event_id: string; sink: string; code: string; order_no: string | null; status: string; last_code: string | null; last_message: string | null;
  }>(
    `SELECT d.id::text, d.event_id, d.sink, e.code, e.order_no, d.status, d.last_code, d.last_message
       FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.id = d.event_id
      WHERE d.status = ANY($4::text[])
        AND ($1::text[] IS NULL OR d.event_id = ANY($1::text[]))
        AND ($2::text IS NULL OR d.sink = $2)
        AND ($3::text IS NULL OR e.code = $3)
      ORDER BY d.id`,
    [f.eventIds?.length ? f.eventIds : null, f.sink ?? null, f.code ?? null, statuses],
  );
  return rows.map((r) => ({
    id: r.id, eventId: r.event_id, sink: r.sink, code: r.code, orderNo: r.order_no, status: r.status, lastCode: r.last_code, lastMessage: r.last_message,
  }));
}

/**
 * Re-queues parked deliveries: the same delivery row, so the same event id and the same
 * idempotency key (AntChain request_id, Zhima out_biz_no) — a gateway that did act on an
 * earlier attempt recognises the repeat. A running instance picks them up at its next poll.
 * `includeSkipped` also brings back deliveries an operator skipped earlier.
 */
export async function replayDeliveries(pool: pg.Pool, schema: string, f: DeliveryFilter, options: { includeSkipped?: boolean } = {}): Promise<number> {
  checkFilter(f);
  const filter = { ...(f.eventIds?.length ? { eventIds: f.eventIds } : {}), ...(f.sink ? { sink: f.sink } : {}), ...(f.code ? { code: f.code } : {}) };
  return createLedger(pool, schema).replay(filter, options);
}

/**
 * Gives up on parked deliveries: status `skipped`, kept with their last code and message.
 * Later events of the same order for that sink stop waiting behind them (the FIFO claim
 * only waits for pending and parked ones). Nothing is sent for a skipped delivery.
 */
export async function skipDeliveries(pool: pg.Pool, schema: string, f: DeliveryFilter): Promise<number> {
  checkFilter(f);
  const r = await pool.query(
    `UPDATE ${schema}.deliveries d SET status = 'skipped', lease_until = NULL, updated_at = now()
       FROM ${schema}.events e
      WHERE e.id = d.event_id AND d.status = 'rejected'
        AND ($1::text[] IS NULL OR d.event_id = ANY($1::text[]))
        AND ($2::text IS NULL OR d.sink = $2)
        AND ($3::text IS NULL OR e.code = $3)`,
    [f.eventIds?.length ? f.eventIds : null, f.sink ?? null, f.code ?? null],
  );
  return r.rowCount ?? 0;
}

export interface InputOutcome {
  id: string;
  /** resolved: events stored (or none due) and the input marked resolved; left: still parked. */
  result: 'resolved' | 'left' | 'dismissed';
  detail: string;
  newEvents?: number;
}

/**
 * Re-processes parked source input. Safe by construction: it does not replay the old row
 * (which may be older than what the ledger knows), it re-reads the row's *current* version
 * from the source table by its key and runs it through the backfill path — events of the
 * row's current state, deduplicated by id; the ledger's order row is only inserted when
 * missing, never rolled back to an older state. The input is marked resolved in the same
 * transaction. Input that names no row of a configured table (undecodable messages, Kafka
 * records, rows without a key) cannot be re-read here: it stays parked with the reason;
 * fix it upstream (a corrected row streams again by itself) and `--dismiss` it.
 */
export async function reprocessInputs(
  config: Config,
  options: { ids?: string[]; dismiss?: boolean; logger: Logger; env?: NodeJS.ProcessEnv },
): Promise<InputOutcome[]> {
  const schema = config.ledger.schema;
  const pool = new pg.Pool({ connectionString: ledgerUrl(config), max: 2, application_name: 'order-relay-replay' });
  pool.on('error', () => {});
  const outcomes: InputOutcome[] = [];
  try {
    const { rows } = await pool.query<{ id: string; stream: string; reason: string; raw: string }>(
      `SELECT id::text, stream, reason, raw FROM ${schema}.parked_inputs
        WHERE resolved_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[])) ORDER BY id`,
      [options.ids?.length ? options.ids : null],
    );
    if (options.dismiss) {
      if (!options.ids?.length) throw new Error('--dismiss needs --input <id> for each input to dismiss');
      await pool.query(`UPDATE ${schema}.parked_inputs SET resolved_at = now() WHERE resolved_at IS NULL AND id = ANY($1::bigint[])`, [options.ids]);
      return rows.map((r) => ({ id: r.id, result: 'dismissed', detail: 'marked resolved without re-processing' }));
    }
    if (rows.length === 0) return [];
    const reader = await createRereader(config, { logger: options.logger, ...(options.env ? { env: options.env } : {}) });
    try {
      for (const input of rows) {
        const target = locate(config, input.raw);
        if ('why' in target) {
          outcomes.push({ id: input.id, result: 'left', detail: target.why });
          continue;
        }
        const spec = reader.specs.find((s) => s.kind === target.kind)!;
        const current = await reader.rowsByKey(spec, [target.key]);
        if (current.length === 0) {
          outcomes.push({ id: input.id, result: 'left', detail: `${spec.table} has no row with ${spec.key} = ${target.key} any more; --dismiss it if that is expected` });
          continue;
        }
        const stored = await reader.store(spec, current, {
          parkBad: false,
          inTransaction: async (client, outcome) => {
            if (outcome.bad === 0) await client.query(`UPDATE ${schema}.parked_inputs SET resolved_at = now() WHERE id = $1 AND resolved_at IS NULL`, [input.id]);
          },
        });
        if (stored.bad.length) {
          outcomes.push({ id: input.id, result: 'left', detail: `still fails: ${stored.bad[0]!.reason}` });
        } else {
          outcomes.push({ id: input.id, result: 'resolved', detail: `re-read ${spec.table} ${target.key}`, newEvents: stored.newEvents });
        }
      }
    } finally {
      await reader.close();
    }
    return outcomes;
  } finally {
    await pool.end();
  }
}

function locate(config: Config, raw: string): { kind: 'orders' | 'refunds'; key: string } | { why: string } {
  let change: Partial<SourceChange>;
  try {
    change = JSON.parse(raw) as Partial<SourceChange>;
  } catch {
    return { why: 'the parked input is not a decoded row change (e.g. a message the source could not decode); inspect it and --dismiss it' };
  }
  if (!change || typeof change !== 'object' || typeof change.table !== 'string') return { why: 'the parked input is not a row change; inspect it and --dismiss it' };
  if (change.visit) return { why: 'a visit record from Kafka: re-send it upstream, then --dismiss it' };
  const row = change.after ?? change.before ?? null;
  const table = qualify(change.table);
  if (table === qualify(config.orders.table)) {
    const key = row ? text(row[config.orders.orderNo]) : undefined;
    return key ? { kind: 'orders', key } : { why: `the row has no ${config.orders.orderNo}: nothing to re-read; once fixed in the table it streams again by itself` };
  }
  if (config.refunds && table === qualify(config.refunds.table)) {
    const key = row ? text(row[config.refunds.refundId]) : undefined;
    return key ? { kind: 'refunds', key } : { why: `the row has no ${config.refunds.refundId}: nothing to re-read; once fixed in the table it streams again by itself` };
  }
  return { why: `${change.table} is not a configured table (a Kafka record?): re-send it upstream, then --dismiss it` };
}
