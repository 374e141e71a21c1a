import { CONFIRM_TIME_PATTERN } from '../../../connectors/sinks/antchain/time.js';

/**
 * The ENT product's own parameter rules (spec sections 2.2, 3.8 and 8, and the seed's field
 * table), applied after the gateway checks. Stricter than the real service where the
 * sources disagree, so a client bug shows up here rather than in production.
 */
export interface EventReport {
  eventType: 'VISIT' | 'TRADE';
  code: string;
  requestId: string;
  projectId: string;
  confirmType?: string;
  childType: string;
  childId: string;
  hasParent: boolean;
  orderNo?: string;
  actualAmount?: number;
  /** The business parameters only, sorted, for "same request_id, different content" checks. */
  fingerprint: string;
}

export type BusinessCheck = { ok: true; report: EventReport } | { ok: false; message: string };

const SYSTEM = new Set([
  'method', 'version', 'access_key', 'sign_type', 'req_msg_id', 'req_time', 'sign', 'base_sdk_version',
  'sdk_version', 'security_token', 'product_instance_id', 'region_name', 'auth_token',
]);
const BUSINESS = new Set([
  'event_type', 'event_instance_code', 'event_child.user_id_no', 'event_child.user_id_type',
  'event_parent.user_id_no', 'event_parent.user_id_type', 'request_id', 'project_id', 'confirm_type',
  'confirm_time', 'trade_order.order_no', 'trade_order.original_total_amount',
  'trade_order.actual_total_amount', 'trade_order.item_count', 'trade_order.currency',
]);
const INSTANCE_CODES: Record<string, readonly string[]> = {
  VISIT: ['CONTRACT_DETAIL_PAGE', 'SHARE_LANDING_PAGE'],
  TRADE: ['TRADE_SUCCESS', 'REFUND_SUCCESS', 'TRADE_CONFIRM'],
};
const PHONE = /^\+86-\d{11}$/;

class Invalid extends Error {}

export function checkBusiness(params: Record<string, string>): BusinessCheck {
  try {
    return { ok: true, report: readReport(params) };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, message: err.message };
    throw err;
  }
}

function readReport(p: Record<string, string>): EventReport {
  for (const [key, value] of Object.entries(p)) {
    if (!SYSTEM.has(key) && !BUSINESS.has(key)) throw new Invalid(`unknown parameter ${key}`);
    if (value === '') throw new Invalid(`parameter ${key} is empty`);
  }
  const eventType = required(p, 'event_type');
  if (eventType !== 'VISIT' && eventType !== 'TRADE') throw new Invalid(`event_type ${eventType} is not VISIT or TRADE`);
  const code = required(p, 'event_instance_code');
  if (!INSTANCE_CODES[eventType]!.includes(code)) throw new Invalid(`event_instance_code ${code} is not valid for ${eventType}`);
  const child = user(p, 'event_child', true)!;
  const parent = user(p, 'event_parent', false);
  const confirmType = p.confirm_type;
  checkConfirm(eventType, code, confirmType, p.confirm_time);
  const report: EventReport = {
    eventType,
    code,
    requestId: required(p, 'request_id'),
    projectId: required(p, 'project_id'),
    confirmType,
    childType: child.type,
    childId: child.id,
    hasParent: parent !== undefined,
    fingerprint: fingerprint(p),
  };
  if (eventType === 'TRADE') {
    report.orderNo = required(p, 'trade_order.order_no');
    for (const field of ['original_total_amount', 'actual_total_amount', 'item_count']) {
      if (!/^\d+$/.test(required(p, `trade_order.${field}`))) throw new Invalid(`trade_order.${field} must be an integer >= 0`);
    }
    if (p['trade_order.currency'] !== undefined && p['trade_order.currency'] !== 'CNY') throw new Invalid('trade_order.currency must be CNY');
    report.actualAmount = Number(p['trade_order.actual_total_amount']);
  }
  return report;
}

function checkConfirm(eventType: string, code: string, confirmType: string | undefined, confirmTime: string | undefined): void {
  if (confirmType !== undefined && !['DIRECT', 'TWO_STEP', 'TWO_STEP_MANUAL'].includes(confirmType)) {
    throw new Invalid(`confirm_type ${confirmType} is not DIRECT, TWO_STEP or TWO_STEP_MANUAL`);
  }
  if (eventType === 'VISIT' && confirmType !== 'DIRECT') throw new Invalid('visit events need confirm_type DIRECT');
  if (eventType === 'TRADE' && confirmType === 'DIRECT') throw new Invalid('trade events cannot use confirm_type DIRECT');
  if (code === 'TRADE_SUCCESS' && confirmType === undefined) throw new Invalid('TRADE_SUCCESS needs confirm_type');
  if (confirmType === 'TWO_STEP' && confirmTime === undefined) throw new Invalid('confirm_type TWO_STEP needs confirm_time');
  if (confirmTime !== undefined && !CONFIRM_TIME_PATTERN.test(confirmTime)) throw new Invalid('confirm_time does not match the required pattern');
}

function user(p: Record<string, string>, prefix: string, needed: boolean): { type: string; id: string } | undefined {
  const type = p[`${prefix}.user_id_type`];
  const id = p[`${prefix}.user_id_no`];
  if (type === undefined && id === undefined && !needed) return undefined;
  if (type === undefined || id === undefined) throw new Invalid(`${prefix} needs user_id_no and user_id_type`);
  if (type === 'PHONE' && !PHONE.test(id)) throw new Invalid(`${prefix}.user_id_no is not a +86- phone number`);
  if (type !== 'PHONE' && type !== 'ALIPAY_LOGON_ID') throw new Invalid(`${prefix}.user_id_type ${type} is not PHONE or ALIPAY_LOGON_ID`);
  return { type, id };
}

function required(p: Record<string, string>, key: string): string {
  const value = p[key];
  if (value === undefined) throw new Invalid(`missing parameter ${key}`);
  return value;
}

function fingerprint(p: Record<string, string>): string {
  return Object.keys(p)
    .filter((key) => BUSINESS.has(key) || key === 'product_instance_id')
    .sort()
    .map((key) => `${key}=${p[key]}`)
    .join('&');
}
