import type { BizContent } from './biz-check.js';
import type { FaultKind } from './faults.js';

/**
 * The simulator's view of Zhima's side: one effect per out_biz_no. A repeat is acknowledged
 * like the first call but counted as a duplicate, which is what "exactly once in effect"
 * is measured against.
 */

export interface ZhimaEffect {
  out_biz_no: string;
  biz_state_code: string;
  user_id: string;
  /** When the effect was recorded (ISO-8601). */
  time: string;
}

export interface ZhimaSimulatorStats {
  /** Every POST to /gateway.do, whatever happened to it. */
  requests: number;
  effects: number;
  /** out_biz_no of every effect, in order. */
  effectKeys: string[];
  effectsList: ZhimaEffect[];
  /** Valid repeats of an out_biz_no that already had its effect. */
  duplicates: number;
  /** Repeats whose biz_content differed from the first call (a client bug: a retry must resend the same content). */
  conflictingDuplicates: number;
  /** Answered 40002 isv.invalid-signature. */
  rejectedSignatures: number;
  /** Answered any other error because of the request itself (missing/invalid params, biz_content). */
  invalidRequests: number;
  faultsInjected: Record<FaultKind, number>;
  /** Each request counted in `duplicates`: its out_biz_no and when the gateway received it (ISO-8601), in order. */
  duplicateRequests: Array<{ key: string; at: string }>;
}

const noFaults = (): Record<FaultKind, number> => ({ http5xx: 0, code20000: 0, hang: 0, dropAfterCommit: 0, corruptSignature: 0 });

export class EffectLedger {
  private readonly contents = new Map<string, string>();
  private effects: ZhimaEffect[] = [];
  private counters = { requests: 0, duplicates: 0, conflictingDuplicates: 0, rejectedSignatures: 0, invalidRequests: 0 };
  private faults = noFaults();
  private duplicateRequests: Array<{ key: string; at: string }> = [];

  countRequest(): void {
    this.counters.requests += 1;
  }

  countRejectedSignature(): void {
    this.counters.rejectedSignatures += 1;
  }

  countInvalid(): void {
    this.counters.invalidRequests += 1;
  }

  countFault(kind: FaultKind): void {
    this.faults[kind] += 1;
  }

  /** Records the effect unless it exists; returns whether this call was a duplicate (noted with `receivedAt`, the request's arrival). */
  apply(biz: BizContent, rawBizContent: string, at: Date, receivedAt: Date = at): { duplicate: boolean } {
    const previous = this.contents.get(biz.out_biz_no);
    if (previous !== undefined) {
      this.counters.duplicates += 1;
      this.duplicateRequests.push({ key: biz.out_biz_no, at: receivedAt.toISOString() });
      if (previous !== rawBizContent) this.counters.conflictingDuplicates += 1;
      return { duplicate: true };
    }
    this.contents.set(biz.out_biz_no, rawBizContent);
    this.effects.push({ out_biz_no: biz.out_biz_no, biz_state_code: biz.biz_state_code, user_id: biz.user_id, time: at.toISOString() });
    return { duplicate: false };
  }

  stats(): ZhimaSimulatorStats {
    return {
      ...this.counters,
      effects: this.effects.length,
      effectKeys: this.effects.map((e) => e.out_biz_no),
      effectsList: this.effects.map((e) => ({ ...e })),
      faultsInjected: { ...this.faults },
      duplicateRequests: this.duplicateRequests.map((d) => ({ ...d })),
    };
  }

  reset(): void {
    this.contents.clear();
    this.effects = [];
    this.counters = { requests: 0, duplicates: 0, conflictingDuplicates: 0, rejectedSignatures: 0, invalidRequests: 0 };
    this.faults = noFaults();
    this.duplicateRequests = [];
  }
}
