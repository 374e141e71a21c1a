import { effectResponse, errorAnswer, signedAnswer, statusResponse } from './answers.js';
import { checkBusiness } from './business-checks.js';
import type { FaultRoll } from './faults.js';
import { checkGateway, mergeParams, type GatewayKeys } from './gateway-checks.js';
import type { SimState } from './state.js';

/** Optional product-side data the simulator knows, to drive business failures on purpose. */
export interface ProductRules {
  /** When set, other project_id values answer INVALID_PARAMETER (unknown project). */
  projects?: readonly string[];
  /** ALIPAY_LOGON_ID values that answer LOGON_ID_NOT_FOUND. */
  unknownLogonIds?: readonly string[];
  /** Event instance codes the project does not support: OK + EVENT_NOT_SUPPORTED, no effect. */
  unsupportedEvents?: readonly string[];
}

export interface ReportInput {
  query: string;
  body: string;
  keys: GatewayKeys;
  rules: ProductRules;
  roll: FaultRoll;
  state: SimState;
  secret: string;
}

export interface ReportResult {
  body: string;
  /** Effect recorded but the answer must be lost (drop-after-commit fault). */
  drop: boolean;
  outcome: string;
  reqMsgId?: string;
  requestId?: string;
}

/** Gateway checks, then product rules, then the fault decisions that need a valid request. */
export function processReport(input: ReportInput): ReportResult {
  const { state, roll } = input;
  const merged = mergeParams(input.query, input.body);
  const checked = merged.ok ? checkGateway(merged.params, input.keys) : merged;
  if (!checked.ok) {
    if (checked.auth) state.rejectedSignatures += 1;
    else state.invalidRequests += 1;
    const reqMsgId = merged.ok ? merged.params.req_msg_id : undefined;
    return { body: errorAnswer(reqMsgId, checked.code, checked.message), drop: false, outcome: checked.code, reqMsgId };
  }
  const reqMsgId = checked.params.req_msg_id!;
  const fail = (code: string, message: string, requestId?: string): ReportResult => ({
    body: errorAnswer(reqMsgId, code, message),
    drop: false,
    outcome: code,
    reqMsgId,
    requestId,
  });
  const business = checkBusiness(checked.params);
  if (!business.ok) {
    state.invalidRequests += 1;
    return fail('INVALID_PARAMETER', business.message);
  }
  const report = business.report;
  const { projects, unknownLogonIds, unsupportedEvents } = input.rules;
  if (projects && !projects.includes(report.projectId)) {
    state.invalidRequests += 1;
    return fail('INVALID_PARAMETER', `project_id ${report.projectId} does not exist`, report.requestId);
  }
  if (report.childType === 'ALIPAY_LOGON_ID' && unknownLogonIds?.includes(report.childId)) {
    return fail('LOGON_ID_NOT_FOUND', '1005', report.requestId);
  }
  const signed = (response: Record<string, unknown>, outcome: string, drop = false): ReportResult => ({
    body: signedAnswer(response, input.secret),
    drop,
    outcome,
    reqMsgId,
    requestId: report.requestId,
  });
  if (roll.needRetry) {
    state.faultsInjected.needRetry += 1;
    return signed(statusResponse(reqMsgId, 'NEED_RETRY'), 'NEED_RETRY');
  }
  if (roll.failedNeedRetry) {
    state.faultsInjected.failedNeedRetry += 1;
    return fail('FAILED_NEED_RETRY', '1009', report.requestId);
  }
  if (unsupportedEvents?.includes(report.code)) {
    return signed(statusResponse(reqMsgId, 'EVENT_NOT_SUPPORTED'), 'EVENT_NOT_SUPPORTED');
  }
  const { effect, duplicate } = input.state.record(report, input.keys.now());
  return signed(effectResponse(reqMsgId, effect), duplicate ? 'DUPLICATE' : 'PROCESSED', roll.dropAfterCommit);
}
