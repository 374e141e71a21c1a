import pg from 'pg';
import { ledgerUrl } from '../app.js';
import { qualify, text, type Classification } from '../classify/classifier.js';
import type { Config } from '../config/schema.js';
import type { Row } from '../core/events.js';
import type { SourceChange } from '../core/source.js';
import {
  checkFilter,
  deliveryStates,
  HELD,
  matchDeliveries,
  requeueParked,
  resolveInputs,
  skipParked,
  unknownEvents,
  unresolvedInputs,
  type DeliveryAction,
  type DeliveryFilter,
  type DeliveryOutcome,
  type DeliveryRow,
  type Renderer,
  type Rendering,
  type StoredEvent,
} from '../ledger/replay.js';
import type { Logger } from '../log.js';
import { createRereader, type Rereader } from './backfill.js';
import { clip, table } from './format.js';

export type { DeliveryFilter } from '../ledger/replay.js';

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

const matchedOf = (r: DeliveryRow): MatchedDelivery => ({
  id: r.id, eventId: r.eventId, sink: r.sink, code: r.code, orderNo: r.orderNo, status: r.status, lastCode: r.lastCode, lastMessage: r.lastMessage,
});

/**
 * Parked (or, with `statuses`, skipped) deliveries matching the filter. Deliveries held
 * behind a skipped one match only when named by event id.
 */
export async function matchParked(pool: pg.Pool, schema: string, f: DeliveryFilter, statuses: string[] = ['rejected']): Promise<MatchedDelivery[]> {
  return (await matchDeliveries(pool, schema, f, statuses)).rows.map(matchedOf);
}

/**
 * Re-queues parked deliveries as stored: the same delivery row, so the same event id and
 * the same idempotency key (AntChain request_id, Zhima out_biz_no) — a gateway that did act
 * on an earlier attempt recognises the repeat. A running instance picks them up at its next
 * poll. `includeSkipped` also brings back deliveries an operator skipped earlier, and with
 * them the deliveries held behind them. `replayParked` is the command, with refresh.
 */
export async function replayDeliveries(pool: pg.Pool, schema: string, f: DeliveryFilter, options: { includeSkipped?: boolean } = {}): Promise<number> {
  return (await requeueParked(pool, schema, f, options)).changed;
}

/**
 * Gives up on parked deliveries: status `skipped`, kept with their last code and message;
 * nothing is sent for them. The deliveries of the same order waiting behind one (for that
 * sink) are held, not let through: see `skipParked`. Returns how many were skipped.
 */
export async function skipDeliveries(pool: pg.Pool, schema: string, f: DeliveryFilter): Promise<number> {
  return (await skipParked(pool, schema, f)).outcomes.filter((o) => o.action === 'skipped').length;
}

export interface ReplayOptions extends DeliveryFilter {
  skip?: boolean;
  /** Skip, and skip the rest of each matched delivery's order for that sink. */
  skipOrder?: boolean;
  includeSkipped?: boolean;
  dryRun?: boolean;
  /** Re-render payloads from the current source rows (default true); false re-sends them as stored. */
  refresh?: boolean;
}

export interface ReplayReport {
  action: 'replay' | 'skip' | 'skip-order';
  dryRun: boolean;
  /** replay: whether payloads were re-read from the source rows. */
  refresh: boolean;
  filter: string;
  /** The deliveries the filter matched. */
  matched: MatchedDelivery[];
  /** Deliveries whose status changed (0 for a dry run). */
  changed: number;
  /** What happened to each delivery: the matched ones and those of the same order behind them. */
  deliveries: DeliveryOutcome[];
  /** Held deliveries the filter matched without naming them: left as they are. */
  heldLeft: MatchedDelivery[];
  /** Named events with nothing to act on, and why. */
  notes: string[];
}

/**
 * `order-relay replay` for deliveries: re-queue (payloads re-rendered from the current
 * source rows unless `refresh` is false), or skip (`skip`, `skipOrder`). An event id the
 * ledger does not hold is an error naming it.
 */
export async function replayParked(config: Config, options: ReplayOptions, deps: { logger: Logger; env?: NodeJS.ProcessEnv }): Promise<ReplayReport> {
  const filter: DeliveryFilter = {
    ...(options.eventIds?.length ? { eventIds: options.eventIds } : {}),
    ...(options.sink ? { sink: options.sink } : {}),
    ...(options.code ? { code: options.code } : {}),
    ...(options.all ? { all: true } : {}),
  };
  checkFilter(filter);
  if (filter.sink && !Object.hasOwn(config.sinks, filter.sink)) throw new Error(`no sink "${filter.sink}" in the config (have: ${Object.keys(config.sinks).join(', ')})`);
  const schema = config.ledger.schema;
  const pool = new pg.Pool({ connectionString: ledgerUrl(config), max: 2, application_name: 'order-relay-replay' });
  pool.on('error', () => {});
  const skipping = !!(options.skip || options.skipOrder);
  const refresh = !skipping && options.refresh !== false;
  const renderer = refresh ? sourceRenderer(config, deps) : undefined;
  try {
    const unknown = await unknownEvents(pool, schema, filter.eventIds ?? []);
    if (unknown.length) {
      throw new Error(`no event ${unknown.join(', ')} in the ledger (event ids are the 32 hex characters \`status\` and \`replay --all --dry-run\` show)`);
    }
    const dryRun = !!options.dryRun;
    const result = skipping
      ? await skipParked(pool, schema, filter, { wholeOrder: !!options.skipOrder, dryRun })
      : await requeueParked(pool, schema, filter, { includeSkipped: !!options.includeSkipped, dryRun, ...(renderer ? { render: renderer.render } : {}) });
    const notes: string[] = [];
    const acted = new Set(result.outcomes.map((o) => o.eventId));
    const idle = (filter.eventIds ?? []).filter((e) => !acted.has(e) && !result.heldLeft.some((h) => h.eventId === e));
    const states = await deliveryStates(pool, schema, idle);
    for (const e of idle) {
      const list = (states.get(e) ?? []).filter((d) => !filter.sink || d.sink === filter.sink);
      notes.push(`event ${e}: nothing to ${skipping ? 'skip' : 're-queue'}${list.length ? `: ${list.map((d) => `${d.status === 'rejected' ? 'parked' : d.status} at ${d.sink}`).join(', ')}` : filter.sink ? ` at ${filter.sink} (no delivery there)` : ' (no delivery)'}`);
    }
    return {
      action: options.skipOrder ? 'skip-order' : options.skip ? 'skip' : 'replay',
      dryRun,
      refresh,
      filter: describeFilter(filter),
      matched: result.outcomes.filter((o) => o.role === 'matched').map(matchedOf),
      changed: result.changed,
      deliveries: result.outcomes,
      heldLeft: result.heldLeft.map(matchedOf),
      notes,
    };
  } finally {
    await Promise.all([pool.end(), renderer?.close()]);
  }
}

const STATUS_NAMES: Record<string, string> = { rejected: 'parked' };
const statusName = (d: DeliveryRow) => (d.status === 'rejected' && d.lastCode === HELD ? 'held' : STATUS_NAMES[d.status] ?? d.status);
const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** The report as an operator reads it: a row per delivery, then what happened and what to do next. */
export function renderReplay(r: ReplayReport): string {
  const out: string[] = [];
  const would = (verb: string, conditional: string) => (r.dryRun ? conditional : verb);
  if (r.deliveries.length) {
    out.push(
      table(
        ['SINK', 'EVENT', 'CODE', 'ORDER', 'WAS', r.dryRun ? 'WOULD BE' : 'NOW', r.action === 'replay' ? 'PAYLOAD' : 'LAST CODE / MESSAGE'],
        r.deliveries.map((d) => [
          d.sink, d.eventId, d.code, d.orderNo, statusName(d), d.action,
          r.action === 'replay' ? clip(d.payload?.detail, 160) : clip(d.lastCode ? `${d.lastCode}: ${d.lastMessage ?? ''}` : null, 100),
        ]),
      ),
    );
  }
  const count = (a: DeliveryAction) => r.deliveries.filter((d) => d.action === a).length;
  if (r.action === 'replay') {
    const requeued = count('re-queued');
    const left = count('left parked');
    const refreshed = r.deliveries.filter((d) => d.payload?.result === 'refreshed').length;
    const how = !r.refresh
      ? 'as stored (--no-refresh)'
      : refreshed
        ? `${plural(refreshed, 'payload', 'payloads')} re-read from the source with changes (see PAYLOAD)`
        : 'payloads re-read from the source where they have a row (see PAYLOAD)';
    out.push(
      `${would('re-queued', 'would re-queue')} ${plural(requeued, 'delivery', 'deliveries')} (${r.filter}), ${how}`
        + (requeued && !r.dryRun ? '; a running instance sends them at its next poll, with their original idempotency keys' : ''),
    );
    if (left) out.push(`${would('left', 'would leave')} ${plural(left, 'delivery', 'deliveries')} parked: the payload could not be re-read (see PAYLOAD)`);
  } else {
    out.push(`${would('skipped', 'would skip')} ${plural(count('skipped'), 'delivery', 'deliveries')} (${r.filter})`);
    for (const g of groupsBehind(r.deliveries)) {
      const where = `order ${g.ahead.orderNo ?? g.ahead.orderKey} for ${g.ahead.sink}`;
      const ids = g.rows.map((x) => x.eventId).join(',');
      const held = g.rows.filter((x) => x.action === 'held');
      const parked = g.rows.filter((x) => x.action === 'already parked');
      const withOrder = g.rows.filter((x) => x.action === 'skipped with order');
      if (held.length) {
        const [them, follow] = held.length === 1 ? ['it', 'it follows'] : ['them', 'they follow'];
        out.push(
          `  ${would('held', 'would hold')} ${plural(held.length, 'later delivery', 'later deliveries')} of ${where} behind it (${held.map((x) => x.code).join(', ')}): `
            + `re-queue ${g.ahead.code} ${g.ahead.eventId} and ${follow} (replay --event ${g.ahead.eventId} --sink ${g.ahead.sink} --include-skipped), `
            + `send ${them} anyway (replay --event ${held.map((x) => x.eventId).join(',')} --sink ${g.ahead.sink}), `
            + `or skip ${them} too (replay --event ${g.ahead.eventId} --sink ${g.ahead.sink} --skip-order)`,
        );
      }
      if (parked.length) out.push(`  ${plural(parked.length, 'later delivery', 'later deliveries')} of ${where} ${parked.length === 1 ? 'is' : 'are'} parked with ${parked.length === 1 ? 'its' : 'their'} own reason and ${parked.length === 1 ? 'stays' : 'stay'} so (${parked.map((x) => x.eventId).join(',')})`);
      if (withOrder.length) out.push(`  ${would('skipped', 'would skip')} ${plural(withOrder.length, 'later delivery', 'later deliveries')} of ${where} with it (--skip-order): ${ids}`);
    }
    const already = r.deliveries.filter((d) => d.action === 'already skipped' && !r.deliveries.some((x) => x.behind === d.eventId && x.sink === d.sink));
    if (already.length) out.push(`  ${plural(already.length, 'delivery', 'deliveries')} skipped earlier with nothing held behind ${already.length === 1 ? 'it' : 'them'}: nothing to do`);
  }
  if (r.heldLeft.length) {
    out.push(
      `${plural(r.heldLeft.length, 'held delivery', 'held deliveries')} matched but ${r.heldLeft.length === 1 ? 'was' : 'were'} left as ${r.heldLeft.length === 1 ? 'it is' : 'they are'}: `
        + 'they wait for the skipped delivery ahead of them (re-queue it with --include-skipped, or skip the rest with --skip-order on it); '
        + `name them with --event to act on them directly (${r.heldLeft.map((h) => h.eventId).join(',')})`,
    );
  }
  out.push(...r.notes);
  return out.join('\n');
}

function groupsBehind(rows: DeliveryOutcome[]): Array<{ ahead: DeliveryOutcome; rows: DeliveryOutcome[] }> {
  const groups = new Map<string, { ahead: DeliveryOutcome; rows: DeliveryOutcome[] }>();
  for (const d of rows) {
    if (d.role !== 'behind') continue;
    const ahead = rows.find((x) => x.role === 'matched' && x.eventId === d.behind && x.sink === d.sink)!;
    const k = `${ahead.sink} ${ahead.eventId}`;
    (groups.get(k) ?? groups.set(k, { ahead, rows: [] }).get(k)!).rows.push(d);
  }
  return [...groups.values()];
}

/**
 * Re-renders stored events from their current source rows, through the stream's classifier:
 * the row read by its key (the refund row and its order's row for a refund), classified as
 * the backfill does, and the event with the stored id taken from the result. Opens the
 * source connection on first use.
 */
function sourceRenderer(config: Config, deps: { logger: Logger; env?: NodeJS.ProcessEnv }): { render: Renderer; close(): Promise<void> } {
  let reader: Promise<Rereader> | undefined;
  const open = () => (reader ??= createRereader(config, { logger: deps.logger, ...(deps.env ? { env: deps.env } : {}), sinks: [] }));
  const render: Renderer = async (events) => {
    const out = new Map<string, Rendering>();
    const trade: StoredEvent[] = [];
    for (const e of events) {
      if (e.kind === 'VISIT') out.set(e.id, { kind: 'no-source', why: 'a page visit (from Kafka) has no source row' });
      else if (!config.source) out.set(e.id, { kind: 'no-source', why: 'no source table to re-read (the config has no postgres source)' });
      else if (!e.orderNo) out.set(e.id, { kind: 'no-source', why: 'the event names no order to re-read' });
      else trade.push(e);
    }
    if (trade.length === 0) return out;
    const r = await open();
    const [ordersSpec, refundsSpec] = [r.specs.find((s) => s.kind === 'orders')!, r.specs.find((s) => s.kind === 'refunds')];
    const fromRefunds = (e: StoredEvent) => !!(e.refundId && refundsSpec && config.refunds);
    let orders: Map<string, Row>;
    let refunds: Map<string, Row>;
    try {
      orders = byKey(await r.rowsByKey(ordersSpec, [...new Set(trade.map((e) => e.orderNo!))]), config.orders.orderNo);
      const refundIds = [...new Set(trade.filter(fromRefunds).map((e) => e.refundId!))];
      refunds = refundsSpec && config.refunds ? byKey(await r.rowsByKey(refundsSpec, refundIds), config.refunds.refundId) : new Map();
    } catch (err) {
      throw new Error(`cannot re-read the source tables to refresh the payloads (${err instanceof Error ? err.message : String(err)}): fix that, or replay --no-refresh to re-send them as stored`);
    }
    for (const e of trade) {
      const spec = fromRefunds(e) ? refundsSpec! : ordersSpec;
      const key = fromRefunds(e) ? e.refundId! : e.orderNo!;
      const row = (fromRefunds(e) ? refunds : orders).get(key);
      if (!row) {
        out.set(e.id, { kind: 'failed', why: `${spec.table} has no row with ${spec.key} = ${key} any more` });
        continue;
      }
      // The stored time stands in for the commit time: an event without an occurredAt column keeps its time.
      const change: SourceChange = { table: spec.table, op: 'insert', after: row, before: null, position: 'replay', committedAt: e.payload.occurredAt };
      let result: Classification;
      try {
        // As the backfill does: an order without ledger knowledge (every event its status
        // stands for), a refund with its order's current row.
        result = r.classifier.classify(change, (orderNo) => (spec.kind === 'refunds' ? orders.get(orderNo) : undefined));
      } catch (err) {
        result = { kind: 'bad', reason: `cannot classify: ${err instanceof Error ? err.message : String(err)}` };
      }
      const event = result.kind === 'events' ? result.events.find((x) => x.id === e.id) : undefined;
      if (event) out.set(e.id, { kind: 'rendered', event, from: `${spec.table} ${key}` });
      else if (result.kind === 'bad') out.set(e.id, { kind: 'failed', why: `the current row does not classify: ${result.reason}` });
      else if (result.kind === 'ignored') out.set(e.id, { kind: 'failed', why: `the current ${spec.table} row yields no event` });
      else {
        const status = spec.kind === 'orders' ? text(row[config.orders.status]) : undefined;
        const yields = result.events.map((x) => x.code).join(', ') || 'nothing';
        out.set(e.id, { kind: 'failed', why: `the current row${status ? ` (status ${status})` : ''} no longer yields ${e.code} (it yields ${yields})` });
      }
    }
    return out;
  };
  return {
    render,
    async close() {
      if (reader) await (await reader).close();
    },
  };
}

function byKey(rows: Row[], column: string): Map<string, Row> {
  const map = new Map<string, Row>();
  for (const row of rows) {
    const k = text(row[column]);
    if (k) map.set(k, row);
  }
  return map;
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
    const rows = await unresolvedInputs(pool, schema, options.ids);
    if (options.dismiss) {
      if (!options.ids?.length) throw new Error('--dismiss needs --input <id> for each input to dismiss');
      await resolveInputs(pool, schema, options.ids);
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
            if (outcome.bad === 0) await resolveInputs(client, schema, [input.id]);
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
