/**
 * Alipay `zhima.data.state.data.sync` sink: business-state sync of TRADE events to Zhima,
 * RSA2-signed requests, verified responses, idempotency key `out_biz_no` = event id.
 */
import { zhimaSinkSchema, type ZhimaSinkConfig } from './config.js';
import { createZhimaSink, type ZhimaSinkDeps } from './sink.js';

export { zhimaSinkSchema, type ZhimaSinkConfig, type ZhimaSinkConfigInput } from './config.js';
export { createZhimaSink, type ZhimaSinkDeps } from './sink.js';
export { KeyError } from './keys.js';
export { RESULT_CODES, type ResultRule } from './result-codes.js';
export { METHOD as ZHIMA_METHOD, RESPONSE_KEY as ZHIMA_RESPONSE_KEY } from './wire.js';

/** Module descriptor for the sink registry. */
export const zhimaSinkModule = {
  kind: 'zhima',
  configSchema: zhimaSinkSchema,
  create: (config: ZhimaSinkConfig, deps: ZhimaSinkDeps) => createZhimaSink(config, deps),
} as const;
