import type { BusinessEvent, JsonValue, Row, TradeCode } from '../core/events.js';
import { eventId } from '../core/ids.js';
import type { SourceChange } from '../core/source.js';
import type { OrdersTableConfig, RefundsTableConfig } from '../config/schema.js';

export interface ClassifierConfig {
  project: string;
  orders: OrdersTableConfig;
  refunds?: RefundsTableConfig | undefined;
}

/** What the ledger knows of orders, by order number (the last row it stored). */
export type OrderLookup = (orderNo: string) => Row | undefined;

/**
 * `unmapped` is the row's status when no mapping lists it (`orders.statuses`, a refunds
 * table's `successStatuses`): the change yields no events for that reason alone. Callers count
 * it, so a mapping that misses what the table holds (`PAID` against rows holding `paid`) shows
 * instead of dropping every event without a trace.
 */
export type Classification =
  | { kind: 'events'; events: BusinessEvent[]; orderNo?: string; orderRow?: Row; unmapped?: string }
  | { kind: 'ignored'; unmapped?: string }
  | { kind: 'bad'; reason: string };

/**
 * Maps one row change to business events. Pure: no I/O, no clock. The same change with the
 * same ledger knowledge always yields the same events with the same ids.
 *
 * REPLICA IDENTITY DEFAULT gives no old row, so "status entered PAID" is decided from the
 * new row plus the ledger's last row for that order: a row whose status is unchanged
 * yields nothing, and any event that would repeat is dropped by its deterministic id.
 *
 * One refund, one REFUND_SUCCESS: with a refunds table the refund rows emit it (one per row,
 * with its refund id) and a status never does; a config where a status lists it anyway is
 * refused here as it is at config load, so no caller can build the ambiguous rules.
 */
export function createClassifier(config: ClassifierConfig) {
  const ambiguous = refundRuleProblems(config.orders, config.refunds);
  if (ambiguous.length) throw new Error(ambiguous.map((p) => `orders.statuses.${p.status}: ${p.message}`).join('; '));
  const ordersTable = qualify(config.orders.table);
  const refundsTable = config.refunds ? qualify(config.refunds.table) : undefined;

  const tradeEvent = (code: TradeCode, orderNo: string, row: Row, occurredAt: string): BusinessEvent => ({
    id: eventId([config.project, orderNo, code]),
    code,
    kind: 'TRADE',
    orderKey: orderNo,
    orderNo,
    occurredAt,
    order: row,
  });

  function classifyOrder(change: SourceChange, known: Row | undefined): Classification {
    if (change.op === 'delete' || !change.after) return { kind: 'ignored' };
    const cfg = config.orders;
    const row = mergeUnknown(change.after, change.unknownColumns, known);
    const inexactNo = inexactKey(row, cfg.orderNo, ordersTable);
    if (inexactNo) return inexactNo;
    const orderNo = text(row[cfg.orderNo]);
    if (!orderNo) return { kind: 'bad', reason: `${ordersTable}: order number column "${cfg.orderNo}" is missing or empty` };
    const status = text(row[cfg.status]);
    if (status === undefined) return { kind: 'bad', reason: `${ordersTable} order ${orderNo}: status column "${cfg.status}" is missing or empty` };
    // Statuses are compared exactly (after trimming): `paid` is not `PAID`.
    const mapped = Object.hasOwn(cfg.statuses, status);
    const codes = mapped ? cfg.statuses[status]! : [];
    const previous = known ? text(known[cfg.status]) : undefined;
    const occurredAt = timeOf(row, cfg.occurredAt, change.committedAt);
    // Unchanged status: every event it stands for is already in the ledger.
    const events = previous === status ? [] : codes.map((code) => tradeEvent(code, orderNo, row, occurredAt));
    return mapped ? { kind: 'events', events, orderNo, orderRow: row } : { kind: 'events', events, orderNo, orderRow: row, unmapped: status };
  }

  function classifyRefund(change: SourceChange, known: Row | undefined, cfg: RefundsTableConfig): Classification {
    if (change.op === 'delete' || !change.after) return { kind: 'ignored' };
    const refund = change.after;
    const inexact = inexactKey(refund, cfg.orderNo, refundsTable!) ?? inexactKey(refund, cfg.refundId, refundsTable!);
    if (inexact) return inexact;
    const orderNo = text(refund[cfg.orderNo]);
    if (!orderNo) return { kind: 'bad', reason: `${refundsTable}: order number column "${cfg.orderNo}" is missing or empty` };
    const refundId = text(refund[cfg.refundId]);
    if (!refundId) return { kind: 'bad', reason: `${refundsTable} order ${orderNo}: refund id column "${cfg.refundId}" is missing or empty` };
    if (cfg.status) {
      const status = text(refund[cfg.status]);
      if (status === undefined || !cfg.successStatuses.includes(status)) return { kind: 'ignored', unmapped: status ?? '(empty)' };
    }
    if (!known) return { kind: 'bad', reason: `${refundsTable} refund ${refundId}: order ${orderNo} is unknown (not in the ledger nor in ${ordersTable})` };
    const occurredAt = timeOf(refund, cfg.occurredAt, change.committedAt);
    // A refund proves the order was paid: its TRADE_SUCCESS (deduplicated by id) goes
    // first, so a refund is never delivered ahead of the purchase it undoes.
    const trade = tradeEvent('TRADE_SUCCESS', orderNo, known, timeOf(known, config.orders.occurredAt, change.committedAt));
    const refundEvent: BusinessEvent = {
      id: eventId([config.project, orderNo, 'REFUND_SUCCESS', refundId]),
      code: 'REFUND_SUCCESS',
      kind: 'TRADE',
      orderKey: orderNo,
      orderNo,
      refundId,
      occurredAt,
      order: known,
      refund,
    };
    return { kind: 'events', events: [trade, refundEvent] };
  }

  function orderNoIn(change: SourceChange, table: string): string | undefined {
    if (table === ordersTable) return text(change.after?.[config.orders.orderNo] ?? change.before?.[config.orders.orderNo]);
    if (table === refundsTable && config.refunds) return text(change.after?.[config.refunds.orderNo]);
    return undefined;
  }

  function classifyVisit(change: SourceChange): Classification {
    const visit = change.visit!;
    return {
      kind: 'events',
      events: [
        {
          id: eventId([config.project, 'VISIT', visit.visitId, visit.page]),
          code: visit.page,
          kind: 'VISIT',
          orderKey: `visit:${visit.visitId}`,
          occurredAt: visit.visitedAt ?? change.committedAt,
          visit,
        },
      ],
    };
  }

  return {
    ordersTable,
    refundsTable,
    /** The order number a change concerns, so the caller can look up what the ledger knows. */
    orderNoOf(change: SourceChange): string | undefined {
      return orderNoIn(change, qualify(change.table));
    },
    /**
     * The source row a change is, as every reader of it names it: table and order number
     * (orders) or refund id (refunds), e.g. `public.orders order_no=A1`. The stream, a
     * backfill and Kafka records of the same row give the same key, so a bad row is parked
     * once. Undefined for a row without that key, and for visits.
     */
    rowKeyOf(change: SourceChange): string | undefined {
      if (change.visit) return undefined;
      const table = qualify(change.table);
      const column = table === ordersTable ? config.orders.orderNo : table === refundsTable && config.refunds ? config.refunds.refundId : undefined;
      if (column === undefined) return undefined;
      const value = inexactKey(change.after ?? change.before ?? {}, column, table) ? undefined : text((change.after ?? change.before)?.[column]);
      return value === undefined ? undefined : `${table} ${column}=${value}`;
    },
    classify(change: SourceChange, lookup: OrderLookup): Classification {
      if (change.visit) return classifyVisit(change);
      const table = qualify(change.table);
      const orderNo = orderNoIn(change, table);
      const known = orderNo ? lookup(orderNo) : undefined;
      if (table === ordersTable) return classifyOrder(change, known);
      if (table === refundsTable && config.refunds) return classifyRefund(change, known, config.refunds);
      return { kind: 'ignored' };
    },
  };
}

export type Classifier = ReturnType<typeof createClassifier>;

/**
 * One business fact, one event. With a refunds table, each refund is one of its rows and gets
 * its REFUND_SUCCESS there, identified by the refund id. A status that also stands for
 * REFUND_SUCCESS reports a refund a second time under another id: the usual full refund
 * writes a SUCCESS refund row *and* sets the order REFUNDED, and an order refunded in N
 * partial rows that ends REFUNDED would report N + 1 refunds. A status may list
 * REFUND_SUCCESS only when no refunds table is configured (the status is then the refund).
 * Returns one problem per offending status, for the config check and the classifier.
 */
export function refundRuleProblems(
  orders: { statuses: Readonly<Record<string, readonly string[]>> },
  refunds: { table: string } | undefined,
): Array<{ status: string; message: string }> {
  if (!refunds) return [];
  return Object.entries(orders.statuses)
    .filter(([, codes]) => codes.includes('REFUND_SUCCESS'))
    .map(([status]) => ({
      status,
      message:
        `lists REFUND_SUCCESS while refunds.table is set (${refunds.table}): the refund rows already emit one REFUND_SUCCESS per refund, ` +
        `so this status would report the same refund again under another id. Remove REFUND_SUCCESS from orders.statuses.${status} ` +
        `(keep TRADE_SUCCESS, so an order first seen as ${status} still gets its purchase), or remove refunds to take refunds from the status alone`,
    }));
}

export function qualify(table: string): string {
  return table.includes('.') ? table : `public.${table}`;
}

/** A value as non-empty text, or undefined for null/absent/blank. */
/**
 * An identity that reached us as a JSON number beyond 2^53 (a Kafka JSON field, a json
 * column) has already lost digits: refuse the row rather than mint an event id, and an
 * order number, from a rounded value.
 */
function inexactKey(row: Row, column: string, table: string): { kind: 'bad'; reason: string } | undefined {
  const v = row[column];
  if (typeof v !== 'number' || !Number.isInteger(v) || Number.isSafeInteger(v)) return undefined;
  return { kind: 'bad', reason: `${table}: column "${column}" holds the number ${String(v)}, beyond 2^53, so its exact digits are lost; publish it as text (a string in JSON)` };
}

export function text(value: JsonValue | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  const s = typeof value === 'string' ? value.trim() : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return s === '' ? undefined : s;
}

/**
 * Fills columns the source could not see (unchanged TOAST) from the ledger's last row.
 * A column nobody knows stays absent: it is never replaced by null.
 */
function mergeUnknown(row: Row, unknown: string[] | undefined, known: Row | undefined): Row {
  if (!unknown?.length) return row;
  const merged: Row = { ...row };
  for (const col of unknown) {
    if (known && Object.hasOwn(known, col)) merged[col] = known[col]!;
    else delete merged[col];
  }
  return merged;
}

function timeOf(row: Row, column: string | undefined, fallback: string): string {
  if (!column) return fallback;
  const v = text(row[column]);
  if (!v) return fallback;
  const ms = Date.parse(v.includes('T') || !v.includes(' ') ? v : v.replace(' ', 'T'));
  return Number.isNaN(ms) ? fallback : new Date(ms).toISOString();
}
