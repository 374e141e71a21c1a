export { antchainSinkSchema, type AntchainSinkConfig, type AntchainSinkConfigInput } from './config.js';
export { answerOutcome, createAntchainSink, INVALID_EVENT, maskPersonal, type AnswerContext, type AntchainSinkDeps } from './sink.js';
export { RESPONSE_TOO_LARGE, sendRequest, type HttpAnswer, type SendOptions } from './transport.js';
export { buildBusinessParams, type BuildResult } from './request.js';
export { flattenParams, type ParamObject } from './params.js';
export {
  canonicalString,
  extractResponseStringToSign,
  hmacSha1Base64,
  percentEncode,
  signParams,
  verifyResponseSign,
} from './sign.js';
export { parseGatewayResponse, type ParsedResponse } from './response.js';
export { classifyAnswer, EVENT_STATUSES, looksLikeAuthFailure, RESULT_CODES, type OutcomeClass } from './result-codes.js';
export { EVENT_REPORT_METHOD, EVENT_REPORT_VERSION, gatewayUrl, signRequest, type SignedRequest } from './wire.js';
export { CONFIRM_TIME_PATTERN, formatConfirmTime, formatReqTime } from './time.js';
