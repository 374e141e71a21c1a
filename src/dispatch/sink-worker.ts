import { setMaxListeners } from 'node:events';
import { failpoint } from '../core/failpoints.js';
import type { AttemptInfo, DeliveryOutcome, Sink } from '../core/sink.js';
import { FencedError } from '../core/source.js';
import type { AppendResult, ClaimedDelivery, Ledger, LogEntry, LogFlush, Settlement, ShardFence, ShardLeases } from '../ledger/ledger.js';
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
  /**
   * Events a sink holds between its cursor and what it has read (in flight, waiting behind
   * their order, settled but not yet passed by the cursor): bounds memory and what a crash
   * sends again.
   */
  window: number;
  /** How long settled events wait before their outcomes and the cursor are written (group commit). */
  flushInterval: number;
  /** Retries of an event kept in memory (due within QUICK_RETRY_MAX_MS) before it becomes a retrying delivery row. */
  quickRetries: number;
  /** See `dispatcher.lease`: how long a frozen owner keeps the sink. */
  lease?: number;
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
  /** Events held between the cursor and what has been read (see WorkerOptions.window). */
  window: number;
  /** Settled events whose outcome is not yet written (a crash sends them again). */
  unflushed: number;
  /** The shards of the ledger and those this instance delivers now (see `dispatcher.lease`). */
  shards: number;
  owned: number[];
}

const PROBE_INITIAL_MS = 1_000;
const PROBE_MAX_MS = 60_000;
/** A retry due later than this becomes a delivery row at once instead of waiting in memory. */
const QUICK_RETRY_MAX_MS = 2_000;
const READ_BATCH = 512;
/** How often an instance looks at how many share the sink and takes or gives shards to even them out. */
const BALANCE_MS = 1_000;
/** A fence no write passes (an epoch no owner has). */
const NO_SHARDS: ShardFence = { names: ['(no shards held)'], epochs: [-1] };

/** One event of the log, held by the worker from when it is read until its cursor passes it. */
interface Slot {
  entry: LogEntry;
  /** The window it belongs to: a window dropped (ownership lost) ignores what its slots' attempts say. */
  epoch: number;
  /** Attempts made. */
  attempt: number;
  state: 'queued' | 'waiting' | 'inflight' | 'retry' | 'done';
  final?: Final;
  history: Array<{ attempt: number; outcome: string; info?: AttemptInfo | undefined; code?: string | undefined; message?: string | undefined }>;
}

type Final =
  | { kind: 'outcome'; outcome: DeliveryOutcome; status: 'delivered' | 'not_applicable'; result?: Record<string, unknown> | undefined; info?: AttemptInfo | undefined; message?: string | undefined }
  | { kind: 'exception'; outcome: DeliveryOutcome | null; status: 'pending' | 'rejected'; delayMs: number; code?: string | undefined; message?: string | undefined };

type Work = { kind: 'log'; slot: Slot } | { kind: 'claim'; delivery: ClaimedDelivery };

/**
 * Delivers one sink's events. The hot path reads the log forward from the sink's cursors,
 * keeps FIFO per order in memory (only the head of an order is in flight), and moves the
 * cursors over the settled prefix of each shard, writing the outcomes, any new exceptions and
 * the cursors in one statement (`flushLog`). An event that cannot be settled quickly (a retry
 * past the quick ones, a rejection) becomes a row of its own, and so do the later events of
 * its order, so the cursor moves on while they wait; those rows are claimed, FIFO per order,
 * and settled as rows. A `sink_failure` pauses the sink: nothing is settled, one probe goes
 * out with growing backoff, and the first answer that is not a sink failure resumes it.
 */
export class SinkWorker {
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private inflight = 0;
  private wakeup: (() => void) | null = null;
  private wakePending = false;
  private readonly queue: Work[] = [];
  private paused: { code: string; message: string; since: Date; probeAt: number; backoff: number } | null = null;
  private readonly bucket: TokenBucket | undefined;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly claims: FailureRun;
  private readonly settles: FailureRun;
  private readonly releases: FailureRun;
  private readonly reads: FailureRun;
  private readonly flushes: FailureRun;

  // Exceptions: claimed rows, settled as rows.
  private readonly settleQueue: Settlement[] = [];
  private settling: Promise<void> | null = null;
  private settleDeadline = Number.POSITIVE_INFINITY;
  private readonly pending = new Map<string, { delivery: ClaimedDelivery; outcome: DeliveryOutcome }>();
  private exhausted = false;
  /** Counts wake-ups, so a read or claim that started before one cannot mark the ledger exhausted after it. */
  private wakes = 0;

  // The log.
  private ready = false;
  /** Persisted cursor per shard. */
  private cursors: number[] = [];
  /** Every event up to here is held, settled, or not for this sink. */
  private readPos = 0;
  private logExhausted = false;
  /** Held slots per shard in seq order; the cursor of a shard may pass what precedes its first unsettled one. */
  private shardQueues: Slot[][] = [];
  private held = 0;
  /** Unsettled slots per order, in seq order: the head may be in flight, the rest wait. */
  private readonly orders = new Map<string, Slot[]>();
  /**
   * Orders this worker made exceptions for: Infinity while some of those rows are not yet
   * written, then the flush generation that wrote the last of them. A read that started at
   * or after that generation sees the rows itself (its `blocked`), so the mark goes.
   */
  private readonly localBlocks = new Map<string, number>();
  private readonly unwritten = new Map<string, number>();
  private flushGen = 0;
  private readonly toFlush: Slot[] = [];
  private flushing: Promise<void> | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private lastBlockPrune = 0;
  private closed = false;
  private leases: ShardLeases | null = null;
  /** The shards this window delivers (held when it was made). */
  private owned: ReadonlySet<number> = new Set();
  private nextBalance = 0;
  /** Giving or taking shards: no attempt starts. */
  private resharding = false;
  private standingBy = false;
  private epoch = 0;

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
    this.reads = new FailureRun(this.log, 'reading the event log');
    this.flushes = new FailureRun(this.log, 'recording outcomes and the cursor');
    this.bucket = policy.rateLimit ? new TokenBucket(policy.rateLimit) : undefined;
    // Every in-flight attempt listens for shutdown: up to `concurrency` listeners, each removed.
    setMaxListeners(0, this.abort.signal);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** New events or deliveries may exist (ingest stored some): look again. */
  wake(): void {
    this.wakes++;
    this.exhausted = false;
    this.logExhausted = false;
    this.kick();
  }

  /** Whether new events may be handed over straight from the append (`offer`). */
  takesHandOver(): boolean {
    return this.running && this.ready && !this.paused && this.held < this.options.window;
  }

  /**
   * New events straight from the append. Taken only when nothing can be missing before them
   * (every event up to `after` has been read) and the append looked up their open deliveries
   * for this sink (`checked`); otherwise the worker reads them from the log.
   */
  offer(appended: AppendResult['appended'], checked: readonly string[]): void {
    const mine = appended.entries.length > 0 && appended.entries.some((e) => e.sinks.includes(this.sink.name));
    if (!this.running || !this.ready || !checked.includes(this.sink.name) || appended.after > this.readPos || this.held + appended.entries.length > this.options.window) {
      if (mine) this.wake();
      return;
    }
    for (const e of appended.entries) {
      if (e.seq <= this.readPos) continue;
      this.readPos = e.seq;
      if (e.sinks.includes(this.sink.name) && this.owned.has(e.shard)) this.admit(e, e.blocked.has(this.sink.name), -1);
    }
    this.kick();
  }

  leaseMs(): number {
    return this.policy.timeout + this.options.leaseMargin;
  }

  private kick(): void {
    this.wakePending = true;
    this.wakeup?.();
  }

  state(): SinkState {
    return {
      sink: this.sink.name,
      inflight: this.inflight,
      paused: this.paused !== null,
      window: this.held,
      unflushed: this.toFlush.length,
      shards: this.leases?.shards ?? this.cursors.length,
      owned: this.ready ? [...this.owned].sort((a, b) => a - b) : [],
      ...(this.paused
        ? { pausedCode: this.paused.code, pausedReason: `${this.paused.code}: ${this.paused.message}`, pausedSince: this.paused.since.toISOString() }
        : {}),
    };
  }

  /** Stops reading, lets in-flight attempts finish for up to `drainMs`, writes what settled, then abandons the rest (sent again later). */
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
    this.closed = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.flushing;
    if (this.ready) {
      this.settleHeldAsRows();
      await this.flushLog(true);
    }
    const leases = this.leases;
    this.leases = null;
    await leases?.release();
  }

  /**
   * Joins the instances delivering this sink (`Ledger.shardLeases`), takes this instance's
   * share of the shards, then loads the cursors and makes the window of those shards. With
   * no shard free (others hold them all): stand by and look again. The lease connection
   * lost: everything held in memory is dropped, unsent; the shards' next owners read it
   * again from the cursors, under the same keys.
   */
  private async takeOwnership(): Promise<void> {
    while (this.running && !this.ready) {
      try {
        if (!this.leases) {
          const leases = await this.ledger.shardLeases(this.sink.name, this.options.lease);
          this.leases = leases;
          void leases.lost.then((err) => {
            if (this.leases !== leases) return;
            this.log.warn({ err: String(err) }, 'lost the connection that holds this instance\'s shards of the sink; dropping what it holds and joining again');
            this.loseShards();
          });
        }
        await this.balance();
        const leases = this.leases;
        if (!leases) continue;
        if (leases.held().size === 0) {
          if (!this.standingBy) this.log.info('other instances deliver every shard of this sink; standing by');
          this.standingBy = true;
          await this.idle(BALANCE_MS);
          continue;
        }
        const owned = new Set(leases.held().keys());
        const cursors = await this.ledger.cursors(this.sink.name);
        if (this.leases !== leases || !this.running) continue;
        this.cursors = cursors;
        this.owned = owned;
        this.shardQueues = this.cursors.map(() => []);
        this.readPos = Math.min(...[...owned].map((x) => this.cursors[x]!));
        this.ready = true;
        this.reads.succeeded();
        this.log.info({ shards: owned.size, of: leases.shards }, this.standingBy ? 'this instance now delivers shards of the sink' : 'delivering shards of the sink');
        this.standingBy = false;
      } catch (err) {
        this.reads.failed(err);
        await this.idle(1_000);
      }
    }
  }

  /**
   * Evens the shards out over the instances delivering the sink: takes free ones up to this
   * instance's share (`ceil(shards / instances)`), and says which it holds beyond that
   * (`excess`: given back once their window is written, see `reshard`).
   */
  private async balance(): Promise<{ took: number[]; excess: number[] }> {
    this.nextBalance = Date.now() + BALANCE_MS;
    const leases = this.leases;
    if (!leases) return { took: [], excess: [] };
    const members = Math.max(1, await leases.members());
    const share = Math.ceil(leases.shards / members);
    const held = [...leases.held().keys()];
    if (held.length > share) return { took: [], excess: held.sort((a, b) => b - a).slice(0, held.length - share) };
    if (held.length === share) return { took: [], excess: [] };
    // Start somewhere different from the other instances: fewer locks tried in vain.
    const start = Math.floor(Math.random() * leases.shards);
    const candidates = Array.from({ length: leases.shards }, (_, i) => (start + i) % leases.shards).filter((x) => !leases.held().has(x));
    return { took: await leases.take(candidates, share - held.length), excess: [] };
  }

  /**
   * A change of the shards this instance holds: no attempt starts, those in flight finish
   * (for a while), what settled and the cursors are written, the window is dropped, the
   * excess shards are given back, and the window is made again from the cursors of the
   * shards now held.
   */
  private async reshard(excess: number[]): Promise<void> {
    this.resharding = true;
    try {
      const deadline = Date.now() + Math.min(this.policy.timeout, 5_000);
      while (this.inflight > 0 && Date.now() < deadline && this.ready) await this.idle(Math.min(50, deadline - Date.now()));
      await this.release();
      if (this.ready) {
        if (this.flushTimer) clearTimeout(this.flushTimer);
        this.flushTimer = null;
        await this.flushing;
        await this.flushLog(false);
      }
      this.dropWindow();
      if (excess.length) {
        await this.leases?.give(excess);
        this.log.info({ given: excess.length }, 'gave shards of the sink to another instance');
      }
    } finally {
      this.resharding = false;
    }
  }

  /** Every shard is gone (the lease connection failed, or a write was fenced): drop the window and join again. */
  private loseShards(): void {
    const leases = this.leases;
    this.leases = null;
    this.dropWindow();
    // Its client goes back to no pool (else the pool's end would wait for it forever).
    void leases?.release();
    this.kick();
  }

  /**
   * At a clean stop, what the window still holds unsent (queued, waiting, retrying in memory)
   * becomes delivery rows, so the cursors can pass everything: events delivered behind them
   * are written now instead of sent again by the next process. Nothing was sent for those
   * rows that their attempts do not record; the next process claims them, FIFO per order.
   */
  private settleHeldAsRows(): void {
    for (const line of [...this.orders.values()]) {
      const head = line[0]!;
      if (head.state === 'inflight') continue; // abandoned past the drain timeout: sent again from the log
      const last = head.history.at(-1);
      this.toException([head], null, 'pending', 0, last?.code, last?.message);
    }
  }

  /** Forgets the log's slots held in memory (none is written): the cursors stay where they are. */
  private dropWindow(): void {
    this.ready = false;
    this.owned = new Set();
    this.epoch++;
    for (const q of this.shardQueues) for (const slot of q) slot.state = 'done';
    this.shardQueues = [];
    this.orders.clear();
    this.localBlocks.clear();
    this.unwritten.clear();
    this.toFlush.length = 0;
    this.held = 0;
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.kind === 'log') this.queue.splice(i, 1);
  }

  private async loop(): Promise<void> {
    while (this.running) {
      if (!this.ready) {
        await this.takeOwnership();
        continue;
      }
      if (Date.now() >= this.nextBalance) {
        try {
          const change = await this.balance();
          if (change.took.length || change.excess.length) {
            await this.reshard(change.excess);
            continue;
          }
        } catch (err) {
          // Looked at again at the next balance; a lease connection that failed says so itself.
          this.log.debug({ err: String(err) }, 'could not look at the sink\'s shards');
        }
      }
      if (!this.leases?.fresh()) {
        // Not heard from the lease connection for most of the lease (this process was
        // frozen?): its shards may be another's by now. No attempt starts until it answers.
        await this.idle(50);
        continue;
      }
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
      if ((await this.readMore()) || (await this.refill(probing))) continue;
      if (!started) {
        const timedOut = await this.idle(this.options.pollInterval);
        // Retries come due with time, not with a wake-up: look again after every poll interval.
        if (timedOut) {
          this.exhausted = false;
          this.logExhausted = false;
          await this.pruneLocalBlocks();
        }
      }
    }
    await this.release();
  }

  // ---- the log ----

  /** Reads the log forward while the window has room; true when it found events. */
  private async readMore(): Promise<boolean> {
    if (this.logExhausted || this.held >= this.options.window) return false;
    // Queued work enough for now: read when it runs low (keeps the window for what matters).
    if (this.queue.length >= this.policy.concurrency) return false;
    const limit = Math.min(READ_BATCH, this.options.window - this.held);
    const wakes = this.wakes;
    const gen = this.flushGen;
    const from = this.readPos;
    const epoch = this.epoch;
    let got;
    try {
      got = await this.ledger.readLog(this.sink.name, from, limit, this.ownedFilter());
      this.reads.succeeded();
    } catch (err) {
      this.reads.failed(err);
      this.logExhausted = true;
      return false;
    }
    if (epoch !== this.epoch) return false; // the window was dropped meanwhile
    let admitted = 0;
    for (const e of got.entries) {
      if (e.seq <= this.readPos) continue; // handed over meanwhile
      this.readPos = e.seq;
      if (this.admit(e, e.blocked.has(this.sink.name), gen)) admitted++;
    }
    if (got.entries.length < limit) {
      this.readPos = Math.max(this.readPos, got.horizon);
      if (wakes === this.wakes) this.logExhausted = true;
    }
    this.scheduleFlush();
    return admitted > 0;
  }

  /** What this instance's writes are fenced by: no shards held, nothing can be written. */
  private fence(): ShardFence {
    return this.leases && this.leases.held().size > 0 ? this.leases.fence() : NO_SHARDS;
  }

  /** The shards to read and claim: null when this instance holds them all. */
  private ownedFilter(): number[] | null {
    return this.owned.size === this.cursors.length ? null : [...this.owned];
  }

  /** Takes an event into the window; false when its shard's cursor has passed it already. */
  private admit(entry: LogEntry, blockedInLedger: boolean, readGen: number): boolean {
    if (entry.seq <= this.cursors[entry.shard]!) return false;
    const slot: Slot = { entry, epoch: this.epoch, attempt: 0, state: 'waiting', history: [] };
    this.shardQueues[entry.shard]!.push(slot);
    this.held++;
    if (this.locallyBlocked(entry.orderKey, readGen, blockedInLedger) || blockedInLedger) {
      // Its order has an open delivery row: this event waits behind it, as a row too.
      this.toException([slot], null, 'pending', 0);
      return true;
    }
    const line = this.orders.get(entry.orderKey);
    if (line) line.push(slot);
    else {
      this.orders.set(entry.orderKey, [slot]);
      this.enqueue(slot);
    }
    return true;
  }

  private locallyBlocked(orderKey: string, readGen: number, blockedInLedger: boolean): boolean {
    const gen = this.localBlocks.get(orderKey);
    if (gen === undefined) return false;
    if (gen !== Number.POSITIVE_INFINITY && readGen >= gen && !blockedInLedger) {
      this.localBlocks.delete(orderKey);
      return false;
    }
    return true;
  }

  private enqueue(slot: Slot): void {
    slot.state = 'queued';
    this.queue.push({ kind: 'log', slot });
  }

  /** A slot settled for good (delivered, not applicable): the next of its order may go. */
  private settleSlot(slot: Slot, final: Extract<Final, { kind: 'outcome' }>): void {
    slot.final = final;
    slot.state = 'done';
    const line = this.orders.get(slot.entry.orderKey)!;
    line.shift();
    if (line.length === 0) this.orders.delete(slot.entry.orderKey);
    else if (this.localBlocks.has(slot.entry.orderKey)) this.toException(line.splice(0), null, 'pending', 0);
    else this.enqueue(line[0]!);
    this.advance(slot.entry.shard);
  }

  /**
   * Slots that become delivery rows: the first with this status and outcome, the rest of the
   * list (later events of its order) as rows waiting behind it, and so does every later event
   * of the order while any of them is open.
   */
  private toException(slots: Slot[], outcome: DeliveryOutcome | null, status: 'pending' | 'rejected', delayMs: number, code?: string, message?: string): void {
    const order = slots[0]!.entry.orderKey;
    const line = this.orders.get(order);
    if (line) {
      const rest = line.filter((x) => !slots.includes(x) && x.state !== 'inflight');
      this.orders.delete(order);
      slots = [...slots, ...rest];
    }
    slots.forEach((slot, i) => {
      slot.state = 'done';
      slot.final = i === 0 ? { kind: 'exception', outcome, status, delayMs, code, message } : { kind: 'exception', outcome: null, status: 'pending', delayMs: 0 };
    });
    this.localBlocks.set(order, Number.POSITIVE_INFINITY);
    this.unwritten.set(order, (this.unwritten.get(order) ?? 0) + slots.length);
    for (const shard of new Set(slots.map((x) => x.entry.shard))) this.advance(shard);
  }

  /** Moves the settled slots at the front of a shard's queue to the next flush. */
  private advance(shard: number): void {
    const q = this.shardQueues[shard]!;
    let n = 0;
    while (n < q.length && q[n]!.state === 'done') n++;
    if (n === 0) return;
    for (const slot of q.splice(0, n)) this.toFlush.push(slot);
    this.held -= n;
    this.scheduleFlush();
  }

  /** Where each shard's cursor may go now: before its first held slot, or up to what has been read. */
  private cursorTargets(): Array<{ shard: number; seq: number }> {
    const out: Array<{ shard: number; seq: number }> = [];
    this.shardQueues.forEach((q, shard) => {
      if (!this.owned.has(shard)) return;
      const target = Math.max(this.cursors[shard]!, q.length ? q[0]!.entry.seq - 1 : this.readPos);
      if (target > this.cursors[shard]!) out.push({ shard, seq: target });
    });
    return out;
  }

  private scheduleFlush(): void {
    if (this.flushTimer || this.flushing || !this.ready || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      this.flushing = this.flushLog(false).finally(() => {
        this.flushing = null;
        if (this.toFlush.length > 0 || this.cursorTargets().length > 0) this.scheduleFlush();
      });
    }, this.options.flushInterval);
  }

  /**
   * Writes settled slots and the cursors that pass them, in one statement. On failure they
   * are kept and written with the next flush; a crash before that sends them again (same key).
   */
  private async flushLog(final: boolean): Promise<void> {
    for (;;) {
      const cursors = this.cursorTargets();
      if (this.toFlush.length === 0 && cursors.length === 0) return;
      const batch = this.toFlush.splice(0);
      const flush: LogFlush = { sink: this.sink.name, outcomes: [], exceptions: [], attempts: [], cursors };
      for (const slot of batch) {
        const f = slot.final!;
        if (f.kind === 'outcome') {
          flush.outcomes.push({ seq: slot.entry.seq, shard: slot.entry.shard, status: f.status, attempts: slot.attempt, info: f.info, result: f.result, message: f.message });
          // Settled after quick retries: its history is kept, as for a delivery row.
          if (slot.history.length) for (const h of [...slot.history, { attempt: slot.attempt, outcome: f.status, info: f.info }]) flush.attempts.push({ seq: slot.entry.seq, ...h });
        } else {
          flush.exceptions.push({ entry: slot.entry, status: f.status, attempts: slot.attempt, delayMs: f.delayMs, code: f.code, message: f.message });
          for (const h of slot.history) flush.attempts.push({ seq: slot.entry.seq, ...h });
        }
      }
      const epoch = this.epoch;
      try {
        await this.ledger.flushLog(flush, this.fence());
        this.flushes.succeeded();
      } catch (err) {
        if (epoch !== this.epoch) return;
        if (err instanceof FencedError) {
          this.log.warn({ outcomes: batch.length }, 'another instance took shards of this sink meanwhile: nothing of this window was written; joining again (the new owners send what was not written, under the same keys)');
          this.loseShards();
          return;
        }
        this.flushes.failed(err, { outcomes: batch.length });
        this.toFlush.unshift(...batch);
        if (final && Date.now() > this.settleDeadline) {
          this.log.error({ outcomes: batch.length }, 'ledger unreachable at shutdown: outcomes not recorded; the events will be sent again under the same keys');
          return;
        }
        await sleep(500);
        if (!final && !this.running) return;
        continue;
      }
      if (epoch !== this.epoch) return; // written, but the window it came from is gone: the cursors are read again
      this.flushGen++;
      for (const c of cursors) this.cursors[c.shard] = c.seq;
      for (const slot of batch) {
        const f = slot.final!;
        if (f.kind === 'exception') {
          const order = slot.entry.orderKey;
          const left = (this.unwritten.get(order) ?? 1) - 1;
          if (left > 0) this.unwritten.set(order, left);
          else {
            this.unwritten.delete(order);
            if (this.localBlocks.get(order) === Number.POSITIVE_INFINITY) this.localBlocks.set(order, this.flushGen);
          }
        }
        if (f.outcome) this.hooks.onSettled?.(this.sink.name, f.outcome, this.asDelivery(slot), Date.now() - slot.entry.committedAt.getTime());
      }
      if (!final) return;
    }
  }

  /** Drops marks of orders whose rows are all settled (checked in the ledger), so their events go the quick way again. */
  private async pruneLocalBlocks(): Promise<void> {
    if (this.localBlocks.size === 0 || Date.now() - this.lastBlockPrune < 5_000) return;
    this.lastBlockPrune = Date.now();
    const gen = this.flushGen;
    const candidates = [...this.localBlocks].filter(([, g]) => g <= gen).map(([k]) => k).slice(0, 1_000);
    if (candidates.length === 0) return;
    try {
      const open = await this.ledger.openOrders(this.sink.name, candidates);
      for (const k of candidates) if (!open.has(k) && (this.localBlocks.get(k) ?? Infinity) <= gen) this.localBlocks.delete(k);
    } catch {
      // kept: they stay rows a little longer
    }
  }

  private asDelivery(slot: Slot): ClaimedDelivery {
    return { id: String(slot.entry.seq), eventId: slot.entry.eventId, sink: this.sink.name, attempt: Math.max(1, slot.attempt), event: slot.entry.event, committedAt: slot.entry.committedAt };
  }

  // ---- exceptions ----

  /**
   * Claims due exception rows when the queue runs low. After a claim that came back short,
   * wait for a wake-up or the poll timer instead of asking again after every attempt.
   */
  private async refill(probing: boolean): Promise<boolean> {
    if (this.exhausted) return false;
    if (probing ? this.inflight + this.queue.length > 0 : this.queue.length >= Math.ceil(this.policy.concurrency / 2)) return false;
    const want = probing ? 1 - this.inflight - this.queue.length : Math.min(2 * this.policy.concurrency - this.inflight - this.queue.length, this.options.claimBatch);
    if (want <= 0) return false;
    const wakes = this.wakes;
    try {
      if (!this.leases) return false;
      const claimed = await this.ledger.claim(this.sink.name, want, this.leaseMs(), this.ownedFilter(), this.fence());
      this.claims.succeeded();
      for (const delivery of claimed) this.queue.push({ kind: 'claim', delivery });
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
    const released: ClaimedDelivery[] = [];
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const w = this.queue[i]!;
      if (w.kind === 'claim') {
        released.push(w.delivery);
        this.queue.splice(i, 1);
      }
    }
    if (released.length === 0) return;
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

  private async attempt(work: Work): Promise<void> {
    // A queued slot can become a row before it starts (its order became an exception).
    if (work.kind === 'log' && work.slot.state !== 'queued') return;
    this.inflight++;
    const probe = this.paused !== null;
    const started = performance.now();
    const event = work.kind === 'log' ? work.slot.entry.event : work.delivery.event;
    if (work.kind === 'log') {
      work.slot.state = 'inflight';
      work.slot.attempt++;
    }
    let outcome: DeliveryOutcome;
    try {
      // Sinks bound each attempt by their own timeout; this signal only says "stop now".
      outcome = await this.sink.deliver(event, this.abort.signal);
    } catch (err) {
      // A sink throws only on a programmer error; keep the delivery and say so loudly.
      this.log.error({ err: String(err), eventId: event.id }, 'sink threw; delivery will be retried');
      outcome = { status: 'retry', code: 'SINK_ERROR', message: String(err), info: { durationMs: performance.now() - started } };
    }
    if (outcome.status === 'delivered') failpoint('dispatch.after-send');
    this.trackPause(outcome, probe);
    if (work.kind === 'log') this.settleLogAttempt(work.slot, outcome);
    else {
      this.pending.set(work.delivery.id, { delivery: work.delivery, outcome });
      this.enqueueSettle(this.toSettlement(work.delivery, outcome));
    }
    this.inflight--;
    this.kick();
  }

  private settleLogAttempt(slot: Slot, o: DeliveryOutcome): void {
    if (slot.epoch !== this.epoch) return; // dropped with its window: read and sent again by the owner
    if (o.status !== 'delivered' && o.status !== 'not_applicable') {
      slot.history.push({ attempt: slot.attempt, outcome: o.status, info: o.info, code: o.code, message: o.message });
    }
    switch (o.status) {
      case 'delivered':
        return this.settleSlot(slot, { kind: 'outcome', outcome: o, status: 'delivered', result: o.result, info: o.info });
      case 'not_applicable':
        return this.settleSlot(slot, { kind: 'outcome', outcome: o, status: 'not_applicable', message: o.reason });
      case 'rejected':
        return this.toException([slot], o, 'rejected', 0, o.code, o.message);
      case 'sink_failure':
        // Not the event's fault: it goes again, first, when the sink works.
        this.hooks.onSettled?.(this.sink.name, o, this.asDelivery(slot), 0);
        slot.state = 'queued';
        if (this.running) this.queue.unshift({ kind: 'log', slot });
        return;
      case 'retry': {
        const delay = o.afterMs ?? backoffMs(slot.attempt, this.policy.retry.initialBackoff, this.policy.retry.maxBackoff);
        if (slot.attempt <= this.options.quickRetries && delay <= QUICK_RETRY_MAX_MS) {
          // Kept in memory, so counted now (a retry that becomes a row is counted when written).
          this.hooks.onSettled?.(this.sink.name, o, this.asDelivery(slot), 0);
          slot.state = 'retry';
          setTimeout(() => {
            if (slot.state !== 'retry' || slot.epoch !== this.epoch) return;
            slot.state = 'queued';
            if (this.running) {
              this.queue.push({ kind: 'log', slot });
              this.kick();
            }
          }, delay).unref();
          return;
        }
        return this.toException([slot], o, 'pending', delay, o.code, o.message);
      }
    }
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
   * Group commit of exception outcomes. Once stopping, it gives up when the ledger stays
   * unreachable past the deadline: those deliveries keep their leases, come back when the
   * leases end, and are sent again under the same idempotency key.
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
        await this.ledger.settle(batch, this.fence());
        this.settles.succeeded();
      } catch (err) {
        if (err instanceof FencedError) {
          // Their rows' claims run out; the shards' owner sends them again under the same keys.
          this.log.warn({ outcomes: batch.length }, 'another instance took shards of this sink meanwhile: these outcomes were not recorded');
          for (const s of batch) this.pending.delete(s.deliveryId);
          continue;
        }
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
