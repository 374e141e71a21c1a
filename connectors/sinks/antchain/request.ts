import type { BusinessEvent, JsonValue, Row, UserIdType } from '../../../src/core/events.js';
import { isVisitCode } from '../../../src/core/events.js';
import type { AntchainSinkConfig } from './config.js';
import type { ParamObject } from './params.js';
import { formatConfirmTime } from './time.js';
import { absent, isUnsafeNumber, normaliseUserId, parseAmount, parseCount, parseInstant, textOf } from './values.js';

/**
 * Business event → EventReport business parameters (wire names, nested; spec section 2.2).
 * Every problem names the wire field and the column it came from, so a parked event tells
 * the operator what to fix without showing the (possibly personal) value.
 */
export type BuildResult = { ok: true; params: ParamObject } | { ok: false; message: string };

class InvalidEvent extends Error {}

/** Configuration the request builder reads (the sink's config minus transport concerns). */
export type RequestConfig = Pick<
  AntchainSinkConfig,
  'productInstanceId' | 'projectId' | 'confirmType' | 'confirmTime' | 'buyer' | 'sharer' | 'order' | 'refund' | 'amountUnit'
>;

export function buildBusinessParams(event: BusinessEvent, config: RequestConfig): BuildResult {
  try {
    if (!/^\S+$/.test(event.id)) throw new InvalidEvent('request_id: event id is empty or contains whitespace');
    const params = event.kind === 'VISIT' || isVisitCode(event.code) ? visitParams(event, config) : tradeParams(event, config);
    return { ok: true, params: { product_instance_id: config.productInstanceId, ...params } };
  } catch (err) {
    if (err instanceof InvalidEvent) return { ok: false, message: err.message };
    throw err;
  }
}

function visitParams(event: BusinessEvent, config: RequestConfig): ParamObject {
  const visit = event.visit;
  if (!visit) throw new InvalidEvent(`event ${event.code}: visit record (event.visit) is missing`);
  if (visit.page !== event.code) {
    throw new InvalidEvent(`event_instance_code: visit.page ${visit.page} does not match event code ${event.code}`);
  }
  return {
    event_type: 'VISIT',
    event_instance_code: visit.page,
    event_child: user('event_child', 'visit.visitor', visit.visitor?.type, visit.visitor?.id),
    event_parent: visit.sharer ? user('event_parent', 'visit.sharer', visit.sharer.type, visit.sharer.id) : undefined,
    request_id: event.id,
    project_id: visit.projectId?.trim() ? visit.projectId : config.projectId,
    confirm_type: 'DIRECT',
  };
}

function tradeParams(event: BusinessEvent, config: RequestConfig): ParamObject {
  const orderRow = event.order ?? event.refund;
  if (!orderRow) throw new InvalidEvent(`event ${event.code}: order row (event.order) is missing`);
  const sharer = config.sharer;
  // No sharer is a blank column; a value that cannot be read is an error, not "no sharer".
  const sharerValue = sharer ? orderRow[sharer.column] : undefined;
  const hasSharer = sharerValue !== undefined && sharerValue !== null && !(typeof sharerValue === 'string' && sharerValue.trim() === '');
  return {
    event_type: 'TRADE',
    event_instance_code: event.code,
    event_child: user('event_child', `column "${config.buyer.column}"`, config.buyer.type, orderRow[config.buyer.column]),
    event_parent: sharer && hasSharer ? user('event_parent', `column "${sharer.column}"`, sharer.type, sharerValue) : undefined,
    request_id: event.id,
    project_id: config.projectId,
    // The seed's REFUND_SUCCESS and TRADE_CONFIRM examples carry no confirm_type.
    confirm_type: event.code === 'TRADE_SUCCESS' ? config.confirmType : undefined,
    confirm_time: event.code === 'TRADE_SUCCESS' && config.confirmType === 'TWO_STEP' ? confirmTime(orderRow, config) : undefined,
    trade_order: tradeOrder(event, orderRow, config),
  };
}

function user(field: string, source: string, type: UserIdType | undefined, raw: JsonValue | undefined): ParamObject {
  if (type !== 'PHONE' && type !== 'ALIPAY_LOGON_ID') {
    throw new InvalidEvent(`${field}.user_id_type: ${source} has no valid type (PHONE or ALIPAY_LOGON_ID)`);
  }
  const text = textOf(raw);
  if (text === undefined) throw new InvalidEvent(`${field}.user_id_no: ${source} ${absent(raw)}`);
  const parsed = normaliseUserId(type, text);
  if (!parsed.ok) throw new InvalidEvent(`${field}.user_id_no: ${source} ${parsed.problem}`);
  return { user_id_no: parsed.value, user_id_type: type };
}

function confirmTime(row: Row, config: RequestConfig): string {
  const setting = config.confirmTime;
  if (!setting) throw new InvalidEvent('confirm_time: confirmType TWO_STEP needs confirmTime.column in the sink config');
  const parsed = parseInstant(row[setting.column]);
  if (!parsed.ok) throw new InvalidEvent(`confirm_time: column "${setting.column}" ${parsed.problem}`);
  return formatConfirmTime(new Date(parsed.value.getTime() + (setting.offset ?? 0)));
}

function tradeOrder(event: BusinessEvent, orderRow: Row, config: RequestConfig): ParamObject {
  const rawOrderNo = event.order?.[config.order.orderNo];
  // A rounded order number names another order: never fall back to event.orderNo for it.
  if (isUnsafeNumber(rawOrderNo)) throw new InvalidEvent(`trade_order.order_no: column "${config.order.orderNo}" ${absent(rawOrderNo)}`);
  const orderNo = textOf(rawOrderNo) ?? event.orderNo;
  if (orderNo === undefined || orderNo.trim() === '') {
    throw new InvalidEvent(`trade_order.order_no: column "${config.order.orderNo}" is missing or null`);
  }

  // A refund row (partial or full refund from a refunds table) carries its own amounts and
  // item count. A REFUND_SUCCESS without one is the order's status turning REFUNDED: a full
  // refund, reported with the order's own amounts.
  const useRefund = event.code === 'REFUND_SUCCESS' && config.refund !== undefined && event.refund !== undefined;
  const columns = useRefund ? config.refund! : config.order;
  const row = useRefund ? event.refund! : orderRow;
  const rowName = useRefund ? 'refund row' : 'order row';
  const read = (field: string, columnName: string, parse: (v: JsonValue | undefined) => ReturnType<typeof parseCount>) => {
    const parsed = parse(row[columnName]);
    if (!parsed.ok) throw new InvalidEvent(`trade_order.${field}: column "${columnName}" in the ${rowName} ${parsed.problem}`);
    return parsed.value;
  };
  const amount = (v: JsonValue | undefined) => parseAmount(v, config.amountUnit);
  return {
    order_no: orderNo,
    original_total_amount: read('original_total_amount', columns.originalAmount, amount),
    actual_total_amount: read('actual_total_amount', columns.actualAmount, amount),
    item_count: read('item_count', columns.itemCount, parseCount),
    currency: 'CNY',
  };
}
