import { z } from 'zod';

/**
 * Fault injection for the Zhima gateway simulator. Rates are probabilities per request, drawn
 * from a seeded PRNG so a failing run can be replayed with the same seed.
 */

const rate = () => z.number().min(0).max(1);

export const zhimaFaultsSchema = z.strictObject({
  /** Added before every gateway answer. */
  latencyMs: z.number().int().min(0).max(600_000),
  /** Uniform extra latency in [0, jitterMs). */
  jitterMs: z.number().int().min(0).max(600_000),
  /** HTTP 502 from the "load balancer", before any processing (no effect). */
  http5xxRate: rate(),
  /** Signed code 20000 / isp.unknow-error after verification, no effect. */
  code20000Rate: rate(),
  /** Never answer (no effect); the client must time out. */
  hangRate: rate(),
  /** Record the effect, then destroy the socket without answering. */
  dropAfterCommitRate: rate(),
  /** Record the effect, answer success with a signature that does not verify. */
  corruptSignatureRate: rate(),
});

export type ZhimaFaults = z.infer<typeof zhimaFaultsSchema>;
export type ZhimaFaultsInput = Partial<ZhimaFaults>;

export const NO_FAULTS: ZhimaFaults = {
  latencyMs: 0,
  jitterMs: 0,
  http5xxRate: 0,
  code20000Rate: 0,
  hangRate: 0,
  dropAfterCommitRate: 0,
  corruptSignatureRate: 0,
};

/** Merges a partial update into the current faults, validating the result. */
export function mergeFaults(current: ZhimaFaults, update: unknown): ZhimaFaults {
  return zhimaFaultsSchema.parse({ ...current, ...zhimaFaultsSchema.partial().parse(update ?? {}) });
}

export type FaultKind = 'http5xx' | 'code20000' | 'hang' | 'dropAfterCommit' | 'corruptSignature';

export { seededRandom } from '../../core/random.js';

/** The faults one request will suffer, drawn up front so every request consumes the same draws. */
export interface FaultPlan {
  delayMs: number;
  before?: 'http5xx' | 'hang';
  beforeEffect?: 'code20000';
  afterEffect?: 'dropAfterCommit' | 'corruptSignature';
}

export function planFaults(faults: ZhimaFaults, random: () => number): FaultPlan {
  const draw = (p: number): boolean => random() < p;
  const jitter = random() * faults.jitterMs;
  const http5xx = draw(faults.http5xxRate);
  const hang = draw(faults.hangRate);
  const code20000 = draw(faults.code20000Rate);
  const drop = draw(faults.dropAfterCommitRate);
  const corrupt = draw(faults.corruptSignatureRate);
  return {
    delayMs: faults.latencyMs + Math.floor(jitter),
    ...(http5xx ? { before: 'http5xx' as const } : hang ? { before: 'hang' as const } : {}),
    ...(code20000 && { beforeEffect: 'code20000' as const }),
    ...(drop ? { afterEffect: 'dropAfterCommit' as const } : corrupt ? { afterEffect: 'corruptSignature' as const } : {}),
  };
}
