import type { EventReport } from './business-checks.js';
import { emptyFaultCounts, type FaultKind } from './faults.js';

/**
 * The simulated platform's memory: one effect per request_id (the idempotency key), the
 * orders that have had a TRADE_SUCCESS, and the counters a chaos checker reads.
 */
export interface SimEffect {
  requestId: string;
  eventId: string;
  eventType: 'VISIT' | 'TRADE';
  code: string;
  orderNo?: string;
  confirmType?: string;
  /** Gateway clock when the effect was recorded (ISO-8601). */
  at: string;
  tokenStatus: string;
  tokenAmount: number;
  parentTokenAmount: number;
}

export interface SimViolation {
  requestId: string;
  orderNo?: string;
  code: string;
  /** ORDER_BEFORE_TRADE_SUCCESS: a refund/confirm effect for an order with no TRADE_SUCCESS effect yet.
   *  REQUEST_ID_CONFLICT: a request_id repeated with different business content. */
  reason: 'ORDER_BEFORE_TRADE_SUCCESS' | 'REQUEST_ID_CONFLICT';
}

export interface SimStats {
  /** Requests to /gateway.do (admin calls not counted), whatever became of them. */
  requests: number;
  effects: number;
  effectKeys: string[];
  duplicates: number;
  violations: SimViolation[];
  rejectedSignatures: number;
  invalidRequests: number;
  faultsInjected: Record<FaultKind, number>;
  effectList: SimEffect[];
  /** Each request counted in `duplicates`: its request_id and when the gateway received it (ISO-8601), in order. */
  duplicateRequests: Array<{ key: string; at: string }>;
  /** TCP connections accepted since start/reset (keep-alive reuse shows as few connections). */
  connections: number;
}

export class SimState {
  private effects = new Map<string, { effect: SimEffect; fingerprint: string }>();
  private tradedOrders = new Set<string>();
  private sequence = 0;
  requests = 0;
  duplicates = 0;
  rejectedSignatures = 0;
  invalidRequests = 0;
  violations: SimViolation[] = [];
  faultsInjected = emptyFaultCounts();
  private duplicateRequests: Array<{ key: string; at: string }> = [];

  /** Notes when a request that `record` found a duplicate arrived (chaos attributes repeats to restarts by it). */
  noteDuplicate(requestId: string, receivedAt: Date): void {
    this.duplicateRequests.push({ key: requestId, at: receivedAt.toISOString() });
  }

  /** The effect for this request_id: the existing one (a duplicate) or a new one. */
  record(report: EventReport, at: Date): { effect: SimEffect; duplicate: boolean } {
    const known = this.effects.get(report.requestId);
    if (known) {
      this.duplicates += 1;
      if (known.fingerprint !== report.fingerprint) {
        this.violations.push({ requestId: report.requestId, orderNo: report.orderNo, code: report.code, reason: 'REQUEST_ID_CONFLICT' });
      }
      return { effect: known.effect, duplicate: true };
    }
    if ((report.code === 'REFUND_SUCCESS' || report.code === 'TRADE_CONFIRM') && !this.tradedOrders.has(report.orderNo!)) {
      this.violations.push({ requestId: report.requestId, orderNo: report.orderNo, code: report.code, reason: 'ORDER_BEFORE_TRADE_SUCCESS' });
    }
    if (report.code === 'TRADE_SUCCESS') this.tradedOrders.add(report.orderNo!);
    const effect: SimEffect = { ...tokens(report), requestId: report.requestId, eventId: this.nextEventId(at), eventType: report.eventType, code: report.code, at: at.toISOString() };
    if (report.orderNo !== undefined) effect.orderNo = report.orderNo;
    if (report.confirmType !== undefined) effect.confirmType = report.confirmType;
    this.effects.set(report.requestId, { effect, fingerprint: report.fingerprint });
    return { effect, duplicate: false };
  }

  stats(): Omit<SimStats, 'connections'> {
    const effectList = [...this.effects.values()].map((entry) => ({ ...entry.effect }));
    return {
      requests: this.requests,
      effects: effectList.length,
      effectKeys: effectList.map((effect) => effect.requestId),
      duplicates: this.duplicates,
      violations: this.violations.map((violation) => ({ ...violation })),
      rejectedSignatures: this.rejectedSignatures,
      invalidRequests: this.invalidRequests,
      faultsInjected: { ...this.faultsInjected },
      effectList,
      duplicateRequests: this.duplicateRequests.map((d) => ({ ...d })),
    };
  }

  /** Platform-style ids: the gateway's date and a sequence, e.g. 20240520000123. */
  private nextEventId(at: Date): string {
    this.sequence += 1;
    return `${at.toISOString().slice(0, 10).replaceAll('-', '')}${String(this.sequence).padStart(6, '0')}`;
  }
}

/** Illustrative token figures (hundredths of a token): the real grant rules are the platform's. */
function tokens(report: EventReport): Pick<SimEffect, 'tokenStatus' | 'tokenAmount' | 'parentTokenAmount'> {
  if (report.eventType === 'VISIT') {
    return { tokenStatus: 'TOKEN_SUCCESS', tokenAmount: 100, parentTokenAmount: report.hasParent ? 50 : 0 };
  }
  if (report.code === 'REFUND_SUCCESS') return { tokenStatus: 'NO_NEED_ALLOCATION', tokenAmount: 0, parentTokenAmount: 0 };
  const amount = Number.isSafeInteger(report.actualAmount) ? report.actualAmount! : 0;
  return { tokenStatus: 'TOKEN_SUCCESS', tokenAmount: amount, parentTokenAmount: report.hasParent ? Math.floor(amount / 10) : 0 };
}
