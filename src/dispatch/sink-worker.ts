import { setMaxListeners } from 'node:events';
import { failpoint } from '../core/failpoints.js';
import type { DeliveryOutcome, Sink } from '../core/sink.js';
import type { ClaimedDelivery, Ledger, Settlement } from '../ledger/ledger.js';
import type { Logger } from '../log.js';
import { backoffMs, TokenBucket } from './backoff.js';
import { FailureRun } from './outage.js';

export interface SinkPolicy {
  concurrency: number;
  rateLimit?: number | undefined;
  timeout: number;
  retry: { initialBackoff: number; maxBackoff: number };
}

export interface WorkerOptions {
  claimBatch: number;
  pollInterval: number;
  /** Lease = sink timeout + this. A crashed worker's claims come back after the lease. */
  leaseMargin: number;
}

export interface DispatchHooks {
  /** After an outcome is recorded in the ledger. `latencyMs` is source commit → now, for delivered. */
  onSettled?(sink: string, outcome: DeliveryOutcome, delivery: ClaimedDelivery, latencyMs: number): void;
  onPauseChange?(sink: string, paused: boolean, reason?: string): void;
}

export interface SinkState {
  sink: string;
  inflight: number;
  paused: boolean;
  /** The failing outcome's code: bounded, so it may be a metric label (the text is not). */
  pausedCode?: string;
  /** Code and message, for `status`, readiness and the log. */
  pausedReason?: string;
  pausedSince?: string;
}

const PROBE_INITIAL_MS = 1_000;
const PROBE_MAX_MS = 60_000;

/**
 * Delivers one sink's pending deliveries: claims due ones (FIFO per order is enforced by
 * the claim query), runs up to `concurrency` attempts, and records outcomes in batches.
 * A `sink_failure` pauses the sink: its deliveries stay pending, one probe goes out with
 * growing backoff, and the first answer that is not a sink failure resumes it.
 */
export class SinkWorker {
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private inflight = 0;
  private wakeup: (() => void) | null = null;
  private wakePending = false;
  private readonly settleQueue: Settlement[] = [];
  private settling: Promise<void> | null = null;
  private settleDeadline = Number.POSITIVE_INFINITY;
  private readonly pending = new Map<string, { delivery: ClaimedDelivery; outcome: DeliveryOutcome }>();
  private readonly queue: ClaimedDelivery[] = [];
  private exhausted = false;
  /** Counts wake-ups, so a claim that started before one cannot mark the ledger exhausted after it. */
  private wakes = 0;
  private paused: { code: string; message: string; since: Date; probeAt: number; backoff: number } | null = null;
  private readonly bucket: TokenBucket | undefined;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly claims: FailureRun;
  private readonly settles: FailureRun;
  private readonly releases: FailureRun;

  constructor(
    private readonly sink: Sink,
    private readonly policy: SinkPolicy,
    private readonly ledger: Ledger,
    private readonly options: WorkerOptions,
    logger: Logger,
    private readonly hooks: DispatchHooks = {},
  ) {
    this.log = logger.child({ component: 'dispatcher', sink: sink.name });
    this.claims = new FailureRun(this.log, 'claiming deliveries');
    this.settles = new FailureRun(this.log, 'recording outcomes');
    this.releases = new FailureRun(this.log, 'releasing unstarted claims');
    this.bucket = policy.rateLimit ? new TokenBucket(policy.rateLimit) : undefined;
    // Every in-flight attempt listens for shutdown: up to `concurrency` listeners, each removed.
    setMaxListeners(0, this.abort.signal);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** New deliveries may exist (ingest stored some): claim again. */
  wake(): void {
    this.wakes++;
    this.exhausted = false;
    this.kick();
  }

  /**
   * How many deliveries this worker could start or queue now: new deliveries up to this
   * many are stored already claimed and handed over (`offer`) instead of claimed later.
   */
  room(): number {
    if (!this.running || this.paused) return 0;
    return Math.max(0, this.prefetchRoom());
  }

  /** Up to twice `concurrency` deliveries started or queued: how many more that allows. */
  private prefetchRoom(): number {
    return 2 * this.policy.concurrency - this.inflight - this.queue.length;
  }

  /** The lease a claim of this worker holds: the attempt timeout and a margin. */
  leaseMs(): number {
    return this.policy.timeout + this.options.leaseMargin;
  }

  /** Deliveries claimed for this worker when they were stored (see `room`). */
  offer(claimed: ClaimedDelivery[]): void {
    if (claimed.length === 0) return;
    if (!this.running) {
      void this.ledger.release(claimed).catch(() => {}); // their leases would run out anyway
      return;
    }
    this.queue.push(...claimed);
    this.kick();
  }

  /** Re-run the loop (an attempt finished: start the next queued one). */
  private kick(): void {
    this.wakePending = true;
    this.wakeup?.();
  }

  state(): SinkState {
    return {
      sink: this.sink.name,
      inflight: this.inflight,
      paused: this.paused !== null,
      ...(this.paused
        ? { pausedCode: this.paused.code, pausedReason: `${this.paused.code}: ${this.paused.message}`, pausedSince: this.paused.since.toISOString() }
        : {}),
    };
  }

  /** Stops claiming, lets in-flight attempts finish for up to `drainMs`, then abandons the rest (retried later). */
  async stop(drainMs: number): Promise<void> {
    this.running = false;
    this.wake();
    await this.loopDone;
    const deadline = Date.now() + drainMs;
    while (this.inflight > 0 && Date.now() < deadline) await this.idle(Math.min(50, deadline - Date.now()));
    if (this.inflight > 0) {
      this.log.warn({ inflight: this.inflight }, 'drain timeout: abandoning in-flight attempts (they will be retried with the same key)');
      this.abort.abort();
      while (this.inflight > 0) await this.idle(50);
    }
    this.settleDeadline = Date.now() + Math.max(drainMs, 1_000);
    await this.settling;
    await this.flushSettles();
  }

  /**
   * Keeps up to `concurrency` attempts in flight and about as many claimed deliveries queued
   * behind them, so a finished attempt is replaced at once instead of after a round trip.
   * Queued claims hold a lease; they are released when the sink pauses or the worker stops.
   */
  private async loop(): Promise<void> {
    while (this.running) {
      const probing = this.paused !== null;
      if (probing && Date.now() < this.paused!.probeAt) {
        await this.release();
        await this.idle(this.paused!.probeAt - Date.now());
        continue;
      }
      const limit = probing ? 1 : this.policy.concurrency;
      let started = false;
      while (this.queue.length > 0 && this.inflight < limit && this.running) {
        const wait = this.bucket?.take() ?? 0;
        if (wait > 0) await sleep(wait);
        void this.attempt(this.queue.shift()!);
        started = true;
        if (probing) break;
      }
      if (await this.refill(probing)) continue;
      if (!started) {
        const timedOut = await this.idle(this.options.pollInterval);
        // Retries come due with time, not with a wake-up: look again after every poll interval.
        if (timedOut) this.exhausted = false;
      }
    }
    await this.release();
  }

  /**
   * Claims more when the queue runs low. After a claim that came back short, the ledger has
   * nothing more due: wait for new deliveries (a wake-up from ingest) or the poll timer
   * instead of asking again after every finished attempt.
   */
  private async refill(probing: boolean): Promise<boolean> {
    if (this.exhausted) return false;
    if (probing ? this.inflight + this.queue.length > 0 : this.queue.length >= Math.ceil(this.policy.concurrency / 2)) return false;
    const want = probing ? 1 - this.inflight - this.queue.length : Math.min(this.prefetchRoom(), this.options.claimBatch);
    if (want <= 0) return false;
    const wakes = this.wakes;
    try {
      const claimed = await this.ledger.claim(this.sink.name, want, this.leaseMs());
      this.claims.succeeded();
      this.queue.push(...claimed);
      // Short, and nothing new was stored while the claim ran: wait for a wake-up. (Without
      // the check, a claim that raced an append swallowed its wake-up, and the new
      // deliveries waited a whole poll interval: the 500 ms tail of the latency bench.)
      if (claimed.length < want && wakes === this.wakes) this.exhausted = true;
      return claimed.length > 0;
    } catch (err) {
      this.claims.failed(err);
      this.exhausted = true;
      return false;
    }
  }

  /** Gives queued, unstarted claims back to the ledger (their attempt never happened). */
  private async release(): Promise<void> {
    if (this.queue.length === 0) return;
    const released = this.queue.splice(0);
    try {
      await this.ledger.release(released);
      this.releases.succeeded();
    } catch (err) {
      // Their leases run out by themselves; nothing is lost.
      this.releases.failed(err, { deliveries: released.length, note: 'they return when their lease ends' });
    }
  }

  /** Waits for `ms` or a wake-up, whichever comes first; true when the time ran out. */
  private idle(ms: number): Promise<boolean> {
    if (this.wakePending) {
      this.wakePending = false;
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const self = this;
      const t = setTimeout(() => done(true), Math.max(0, ms));
      function done(timedOut = false) {
        clearTimeout(t);
        if (self.wakeup === wake) self.wakeup = null;
        self.wakePending = false;
        resolve(timedOut);
      }
      const wake = () => done(false);
      this.wakeup = wake;
    });
  }

  private async attempt(delivery: ClaimedDelivery): Promise<void> {
    this.inflight++;
    const probe = this.paused !== null;
    const started = performance.now();
    let outcome: DeliveryOutcome;
    try {
      // Sinks bound each attempt by their own timeout; this signal only says "stop now".
      outcome = await this.sink.deliver(delivery.event, this.abort.signal);
    } catch (err) {
      // A sink throws only on a programmer error; keep the delivery and say so loudly.
      this.log.error({ err: String(err), eventId: delivery.eventId }, 'sink threw; delivery will be retried');
      outcome = { status: 'retry', code: 'SINK_ERROR', message: String(err), info: { durationMs: performance.now() - started } };
    }
    if (outcome.status === 'delivered') failpoint('dispatch.after-send');
    this.trackPause(outcome, probe);
    this.pending.set(delivery.id, { delivery, outcome });
    this.enqueueSettle(this.toSettlement(delivery, outcome));
    this.inflight--;
    this.kick();
  }

  /**
   * Only a failed probe lengthens the backoff: the attempts that were already in flight when
   * the sink broke fail together and say nothing new.
   */
  private trackPause(outcome: DeliveryOutcome, probe: boolean): void {
    if (outcome.status === 'sink_failure') {
      if (this.paused && !probe) return;
      const backoff = this.paused ? Math.min(this.paused.backoff * 2, PROBE_MAX_MS) : PROBE_INITIAL_MS;
      if (!this.paused) {
        this.log.error({ code: outcome.code, remoteMessage: outcome.message }, 'sink paused: the sink itself is failing; deliveries stay pending, probing with backoff');
        this.hooks.onPauseChange?.(this.sink.name, true, `${outcome.code}: ${outcome.message}`);
      }
      this.paused = { code: outcome.code, message: outcome.message, since: this.paused?.since ?? new Date(), probeAt: Date.now() + backoff, backoff };
    } else if (this.paused && probe) {
      this.log.info({ pausedSince: this.paused.since.toISOString(), code: this.paused.code }, 'sink resumed');
      this.paused = null;
      this.hooks.onPauseChange?.(this.sink.name, false);
    }
  }

  private toSettlement(d: ClaimedDelivery, o: DeliveryOutcome): Settlement {
    const base = { eventId: d.eventId, sink: d.sink, deliveryId: d.id, attempt: d.attempt, outcome: o.status };
    switch (o.status) {
      case 'delivered':
        return { ...base, status: 'delivered', info: o.info, result: o.result, code: o.info.remoteCode };
      case 'retry': {
        const delay = o.afterMs ?? backoffMs(d.attempt, this.policy.retry.initialBackoff, this.policy.retry.maxBackoff);
        return { ...base, status: 'pending', delayMs: delay, code: o.code, message: o.message, info: o.info };
      }
      case 'rejected':
        return { ...base, status: 'rejected', code: o.code, message: o.message, info: o.info };
      case 'not_applicable':
        return { ...base, status: 'not_applicable', code: 'NOT_APPLICABLE', message: o.reason };
      case 'sink_failure':
        return { ...base, status: 'pending', delayMs: 0, code: o.code, message: o.message, info: o.info };
    }
  }

  private enqueueSettle(s: Settlement): void {
    this.settleQueue.push(s);
    if (!this.settling) this.settling = this.flushSettles();
  }

  /**
   * Group commit: everything that finished while the previous write ran goes in the next one.
   * Once stopping, it gives up when the ledger stays unreachable past the deadline: those
   * deliveries keep their leases, come back when the leases end, and are sent again under
   * the same idempotency key.
   */
  private async flushSettles(): Promise<void> {
    while (this.settleQueue.length > 0) {
      if (Date.now() > this.settleDeadline) {
        this.log.error({ outcomes: this.settleQueue.length }, 'ledger unreachable at shutdown: outcomes not recorded; the deliveries will be retried under the same keys');
        this.settleQueue.length = 0;
        break;
      }
      const batch = this.settleQueue.splice(0, 1000);
      try {
        await this.ledger.settle(batch);
        this.settles.succeeded();
      } catch (err) {
        // The ledger is unreachable: keep the outcomes and try again. If the process dies
        // first, the leases expire and the deliveries are retried under the same key.
        this.settles.failed(err, { outcomes: batch.length });
        this.settleQueue.unshift(...batch);
        await sleep(500);
        continue;
      }
      for (const s of batch) {
        const p = this.pending.get(s.deliveryId);
        this.pending.delete(s.deliveryId);
        if (p) this.hooks.onSettled?.(this.sink.name, p.outcome, p.delivery, Date.now() - p.delivery.committedAt.getTime());
      }
    }
    this.settling = null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
