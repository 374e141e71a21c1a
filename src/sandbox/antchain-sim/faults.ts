import { z } from 'zod';

/**
 * Fault injection for the AntChain simulator. Every decision comes from a seeded PRNG and
 * every gateway request draws the same number of values in the same order, so a run with the
 * same seed, faults and request sequence injects the same faults.
 */
export interface AntchainFaults {
  /** Added before answering every gateway request. */
  latencyMs: number;
  /** Uniform extra latency in [0, jitterMs). */
  jitterMs: number;
  /** Answer 503 with a non-JSON body before looking at the request (no effect). */
  http5xxRate: number;
  /** Answer OK (signed) with event_status NEED_RETRY (no effect). */
  needRetryRate: number;
  /** Answer result_code FAILED_NEED_RETRY (no effect). */
  failedNeedRetryRate: number;
  /** Never answer; the client's timeout fires (no effect). */
  hangRate: number;
  /** Record the effect, then destroy the socket without answering: the ambiguous case. */
  dropAfterCommitRate: number;
}

export type FaultKind = 'latency' | 'http5xx' | 'needRetry' | 'failedNeedRetry' | 'hang' | 'dropAfterCommit';

export const NO_FAULTS: Readonly<AntchainFaults> = {
  latencyMs: 0,
  jitterMs: 0,
  http5xxRate: 0,
  needRetryRate: 0,
  failedNeedRetryRate: 0,
  hangRate: 0,
  dropAfterCommitRate: 0,
};

const rate = () => z.number().min(0).max(1);
const millis = () => z.number().int().min(0).max(600_000);

/** A partial fault setting, as `POST /__sim/faults` and `setFaults` take it. */
export const faultsPatchSchema = z
  .strictObject({
    latencyMs: millis(),
    jitterMs: millis(),
    http5xxRate: rate(),
    needRetryRate: rate(),
    failedNeedRetryRate: rate(),
    hangRate: rate(),
    dropAfterCommitRate: rate(),
  })
  .partial();

export function emptyFaultCounts(): Record<FaultKind, number> {
  return { latency: 0, http5xx: 0, needRetry: 0, failedNeedRetry: 0, hang: 0, dropAfterCommit: 0 };
}

/** The decisions for one request, drawn up front in a fixed order. */
export interface FaultRoll {
  delayMs: number;
  hang: boolean;
  http5xx: boolean;
  needRetry: boolean;
  failedNeedRetry: boolean;
  dropAfterCommit: boolean;
}

export function rollFaults(faults: AntchainFaults, random: () => number): FaultRoll {
  const jitter = random();
  const draws = [random(), random(), random(), random(), random()] as const;
  return {
    delayMs: faults.latencyMs + Math.floor(jitter * faults.jitterMs),
    hang: draws[0] < faults.hangRate,
    http5xx: draws[1] < faults.http5xxRate,
    needRetry: draws[2] < faults.needRetryRate,
    failedNeedRetry: draws[3] < faults.failedNeedRetryRate,
    dropAfterCommit: draws[4] < faults.dropAfterCommitRate,
  };
}

export { seededRandom } from '../../core/random.js';
