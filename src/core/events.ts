/**
 * The business events order-relay delivers, and the rows they are built from.
 *
 * An event is immutable once it is in the ledger: sinks build their requests from
 * the snapshot stored with it, never from the live database, so a retry three days
 * later sends the same business content under the same idempotency key.
 */

export const TRADE_CODES = ['TRADE_SUCCESS', 'REFUND_SUCCESS', 'TRADE_CONFIRM'] as const;
export const VISIT_CODES = ['CONTRACT_DETAIL_PAGE', 'SHARE_LANDING_PAGE'] as const;
export const EVENT_CODES = [...TRADE_CODES, ...VISIT_CODES] as const;

export type TradeCode = (typeof TRADE_CODES)[number];
export type VisitCode = (typeof VISIT_CODES)[number];
export type EventCode = (typeof EVENT_CODES)[number];

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * One table row or record, column name to value. Values are JSON-safe: sources turn
 * timestamps into ISO-8601 strings, and keep int8/numeric as strings.
 */
export type Row = Record<string, JsonValue>;

export type UserIdType = 'PHONE' | 'ALIPAY_LOGON_ID';

export interface UserRef {
  type: UserIdType;
  id: string;
}

/** A page visit, as the Kafka visit topic delivers it. */
export interface VisitRecord {
  visitId: string;
  page: VisitCode;
  visitor: UserRef;
  sharer?: UserRef;
  projectId?: string;
  visitedAt?: string;
}

export interface BusinessEvent {
  /** Deterministic id: 32 lowercase hex chars, derived from business identity only. */
  id: string;
  code: EventCode;
  kind: 'TRADE' | 'VISIT';
  /** FIFO key: deliveries of one sink with the same key go out in ledger order. */
  orderKey: string;
  /** Order number, for TRADE events. */
  orderNo?: string;
  /** Refund identity, for REFUND_SUCCESS events that come from a refunds table. */
  refundId?: string;
  /** When the business fact happened: the source commit time unless a column says otherwise. */
  occurredAt: string;
  /** The order row as known when the event was classified (TRADE events). */
  order?: Row;
  /** The refund row, for REFUND_SUCCESS events that come from a refunds table. */
  refund?: Row;
  /** The visit, for VISIT events. */
  visit?: VisitRecord;
}

export function isTradeCode(code: string): code is TradeCode {
  return (TRADE_CODES as readonly string[]).includes(code);
}

export function isVisitCode(code: string): code is VisitCode {
  return (VISIT_CODES as readonly string[]).includes(code);
}
