import { signedFailure, type Answer } from './answer.js';

/**
 * biz_content checks, after the signature verified. Field rules come from the API document
 * (all seven required strings, with maximum lengths); the sub_codes are the document's own
 * business error codes, including its `ZMDAT.SERVICE_ID_ERROR` spelling.
 */

export interface BizContent {
  user_id: string;
  out_biz_no: string;
  out_principal_id: string;
  biz_state_code: string;
  category_code: string;
  service_id: string;
  biz_data: string;
}

/** Optional allow-lists, standing in for what Zhima configured for the merchant. */
export interface BizRules {
  bizStateCodes?: readonly string[];
  categoryCodes?: readonly string[];
  serviceIds?: readonly string[];
}

export type BizCheck = { ok: true; biz: BizContent } | { ok: false; answer: Answer };

interface FieldRule {
  field: keyof BizContent;
  max: number;
  subCode: string;
  subMsg: string;
  allowed?: (rules: BizRules) => readonly string[] | undefined;
  pattern?: RegExp;
}

const FIELDS: readonly FieldRule[] = [
  { field: 'user_id', max: 64, subCode: 'ZMDATA.USER_ID_ERROR', subMsg: '用户ID为空或不正确', pattern: /^2088\d+$/ },
  { field: 'out_biz_no', max: 128, subCode: 'ZMDATA.OUT_BIZ_NO_NULL', subMsg: '外部订单号不可空' },
  { field: 'out_principal_id', max: 128, subCode: 'ZMDATA.OUT_PRINCIPAL_ID_ERROR', subMsg: '外部主体唯一ID错误' },
  { field: 'biz_state_code', max: 64, subCode: 'ZMDATA.BIZ_STATE_CODE_ERROR', subMsg: '业务状态码错误', allowed: (r) => r.bizStateCodes },
  { field: 'category_code', max: 64, subCode: 'ZMDATA.CATEGORY_CODE_ERROR', subMsg: '类目编码不正确', allowed: (r) => r.categoryCodes },
  { field: 'service_id', max: 128, subCode: 'ZMDAT.SERVICE_ID_ERROR', subMsg: '服务id不正确', allowed: (r) => r.serviceIds },
  { field: 'biz_data', max: 4096, subCode: 'ZMDATA.BIZ_DATA_ERROR', subMsg: '业务数据错误或格式不正确' },
];

function isJsonObjectText(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  } catch {
    return false;
  }
}

function fieldOk(rule: FieldRule, value: unknown, rules: BizRules): boolean {
  // biz_data must be a JSON *string*; a nested object (the Node SDK's snake-casing trap) fails here.
  if (typeof value !== 'string' || value.trim() === '') return false;
  // The document's maximum lengths count characters.
  if (value.length > rule.max) return false;
  if (rule.pattern && !rule.pattern.test(value)) return false;
  const allowed = rule.allowed?.(rules);
  if (allowed && !allowed.includes(value)) return false;
  return rule.field !== 'biz_data' || isJsonObjectText(value);
}

export function checkBizContent(text: string | undefined, rules: BizRules): BizCheck {
  if (text === undefined) return { ok: false, answer: signedFailure('40002', 'isv.invalid-parameter', '缺少必选参数biz_content') };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, answer: signedFailure('40002', 'isv.invalid-parameter', 'biz_content不是合法的JSON对象') };
  }
  const record = parsed as Record<string, unknown>;
  for (const rule of FIELDS) {
    if (!fieldOk(rule, record[rule.field], rules)) {
      return { ok: false, answer: signedFailure('40004', rule.subCode, rule.subMsg) };
    }
  }
  return { ok: true, biz: record as unknown as BizContent };
}
