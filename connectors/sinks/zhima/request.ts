import type { BusinessEvent, JsonValue, Row, TradeCode } from '../../../src/core/events.js';
import type { ZhimaSinkConfig } from './config.js';
import { buildBizData } from './biz-data.js';

/**
 * Event → biz_content. Everything is decided here, before any signing or I/O: an event that
 * cannot make a valid request is `rejected` (INVALID_EVENT, naming the field), one without an
 * Alipay user id is `not_applicable` (many buyers never linked Alipay; that is not a failure).
 */

export type BizContentResult =
  | { status: 'ok'; bizContent: string; outBizNo: string }
  | { status: 'not_applicable'; reason: string }
  | { status: 'rejected'; code: 'INVALID_EVENT'; message: string };

type RequestConfig = Pick<
  ZhimaSinkConfig,
  'userIdColumn' | 'principalIdColumn' | 'categoryCode' | 'serviceId' | 'states' | 'bizData'
>;

const USER_ID = /^2088\d+$/;

/**
 * The API document's maximum lengths of the biz_content fields, in characters (counted as
 * Java does, in UTF-16 code units). biz_data's 4096, which is also checked in UTF-8 bytes,
 * lives in biz-data.ts. A value over its limit is refused, never cut: a truncated id would
 * name another record.
 */
export const BIZ_CONTENT_LIMITS = {
  user_id: 64,
  out_biz_no: 128,
  out_principal_id: 128,
  biz_state_code: 64,
  category_code: 64,
  service_id: 128,
} as const;

const rejected = (message: string): BizContentResult => ({ status: 'rejected', code: 'INVALID_EVENT', message });

/** The row the columns are read from: a refund row's non-null columns override the order's. */
export function eventRow(event: BusinessEvent): Row {
  const row: Row = { ...(event.order ?? {}) };
  if (event.code === 'REFUND_SUCCESS' && event.refund) {
    for (const [column, value] of Object.entries(event.refund)) {
      if (value !== null && value !== undefined) row[column] = value;
    }
  }
  return row;
}

function scalarText(value: JsonValue | undefined): string | undefined {
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return undefined;
}

/** A JS number beyond 2^53 may already have lost digits wherever it was parsed. */
function unsafeNumber(value: JsonValue | undefined): boolean {
  return typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value);
}

/** `<field>: <source> is N characters; the limit is L`, or undefined when it fits. */
function tooLong(field: keyof typeof BIZ_CONTENT_LIMITS, source: string, value: string): string | undefined {
  const limit = BIZ_CONTENT_LIMITS[field];
  return value.length > limit ? `${field}: ${source} is ${value.length} characters; the limit is ${limit}` : undefined;
}

export function buildBizContent(config: RequestConfig, event: BusinessEvent): BizContentResult {
  const state = config.states[event.code as TradeCode];
  if (event.kind !== 'TRADE' || state === undefined) {
    return { status: 'not_applicable', reason: `event code ${event.code} is not mapped in states` };
  }
  const row = eventRow(event);
  const rawUser = row[config.userIdColumn];
  if (rawUser === undefined || rawUser === null || (typeof rawUser === 'string' && rawUser.trim() === '')) {
    return { status: 'not_applicable', reason: `no Alipay user id in column ${config.userIdColumn}` };
  }
  const userId = scalarText(rawUser);
  if (userId === undefined || !USER_ID.test(userId)) {
    // Never echo the value: it is personal data and this message is stored and logged.
    return rejected(`user_id: column ${config.userIdColumn} does not hold an Alipay user id (2088 followed by digits)`);
  }
  const rawPrincipal = row[config.principalIdColumn];
  if (unsafeNumber(rawPrincipal)) {
    return rejected(`out_principal_id: column ${config.principalIdColumn} holds a JSON number beyond 2^53, which may already have been rounded; deliver the column as text`);
  }
  const principal = scalarText(rawPrincipal);
  if (!principal) return rejected(`out_principal_id: column ${config.principalIdColumn} is missing or empty`);
  const outBizNo = event.id;
  if (!outBizNo) return rejected('out_biz_no: the event id is empty');
  const lengthProblem =
    tooLong('user_id', `column ${config.userIdColumn}`, userId) ??
    tooLong('out_biz_no', 'the event id', outBizNo) ??
    tooLong('out_principal_id', `column ${config.principalIdColumn}`, principal) ??
    tooLong('biz_state_code', `states.${event.code}`, state) ??
    tooLong('category_code', 'categoryCode', config.categoryCode) ??
    tooLong('service_id', 'serviceId', config.serviceId);
  if (lengthProblem) return rejected(lengthProblem);
  const bizData = buildBizData(config.bizData, row);
  if (!bizData.ok) return rejected(bizData.message);
  // Key order as in the API document; the vectors compare byte for byte.
  const bizContent = JSON.stringify({
    user_id: userId,
    out_biz_no: outBizNo,
    out_principal_id: principal,
    biz_state_code: state,
    category_code: config.categoryCode,
    service_id: config.serviceId,
    biz_data: bizData.value,
  });
  return { status: 'ok', bizContent, outBizNo };
}
