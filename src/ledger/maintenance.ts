import type pg from 'pg';
import { FailureRun } from '../dispatch/outage.js';
import type { Logger } from '../log.js';
import * as sql from './maintenance-sql.js';
import { PARTITION_WIDTH, SEQ_CEILING } from './maintenance-sql.js';

/**
 * Ledger maintenance: rotation of the log's partitions and retention of settled history.
 *
 * Rotation. The log and outcomes are partitioned by seq ranges 2^32 wide. The open (newest)
 * partition is closed when it has events and was opened longer than `rotateEvery` ago, or
 * when half its seqs are used: under the append lock, the next range's tables are made and
 * the sequence jumps to its start. So a partition's rows are all older than its close.
 *
 * Retention, every step bounded and none of them a row-by-row delete of the log:
 * - a partition pair (log_pN, outcomes_pN) is dropped when it was closed longer than
 *   `retention` ago and every cursor has passed its highest seq (its row in log_partitions
 *   stays, with dropped_at);
 * - finished deliveries (delivered, not applicable, skipped) untouched for `retention`,
 *   with their attempts; pending and parked ones stay, however old;
 * - parked input resolved longer than `retention` ago;
 * - order rows not changed for `retention` (a later change of the order reads the source row);
 * - event ids of dropped partitions closed longer than `idRetention` ago.
 *
 * Several instances may run it at once: rotation re-checks under the append lock, a drop
 * locks its partition's row.
 */

export interface MaintenanceOptions {
  pool: pg.Pool;
  schema: string;
  /** The ledger's advisory lock class (`ledger.lockClass`). */
  lockClass: number;
  /** ledger.retention, ms. */
  retentionMs: number;
  /** ledger.idRetention, ms (at least retentionMs). */
  idRetentionMs: number;
  logger: Logger;
}

export interface PartitionRef {
  lo: number;
  hi: number;
  log: string;
  outcomes: string;
}

export type MaintenanceStep = 'rotate' | 'drop' | 'deliveries' | 'parked_inputs' | 'orders' | 'event_ids';

export interface MaintenanceReport {
  startedAt: Date;
  durationMs: number;
  /** Partitions opened by this run. */
  created: Array<PartitionRef & { reason: 'age' | 'half used' }>;
  /** Partition pairs dropped by this run. `maxSeq`: its highest seq (null: it was empty). */
  dropped: Array<PartitionRef & { maxSeq: number | null }>;
  /** Past retention but kept: cursors (or sinks with none yet) behind its highest seq. */
  held: Array<PartitionRef & { maxSeq: number; behind: Array<{ sink: string; shard: number | null; seq: number | null }> }>;
  deleted: { deliveries: number; attempts: number; parkedInputs: number; orders: number; eventIds: number };
  /** Steps that failed this run (the others ran). `lockTimeout`: gave up waiting for a lock; tried again next run. */
  errors: Array<{ step: MaintenanceStep; message: string; lockTimeout: boolean }>;
}

export interface Maintenance {
  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void>;
  /** One run now (after the one in progress, if any). Never rejects: failures are in the report. */
  runOnce(): Promise<MaintenanceReport>;
  /** How often the open partition is closed (clamp(retention / 10, 1 s, 1 day)) and how often it runs. */
  readonly rotateEveryMs: number;
  readonly intervalMs: number;
}

const SECOND = 1_000;
const DAY = 86_400_000;
/** How long rotation and a drop wait for their locks before giving up until the next run. */
export const LOCK_TIMEOUT_MS = 2_000;
/** Delete statements per step per run: a run's work is bounded; the rest waits for the next one. */
const MAX_BATCHES = 20;
/** Lock timeouts in a row before they are logged as a failure (one alone is expected under load). */
const QUIET_LOCK_TIMEOUTS = 3;

export const rotateEveryMs = (retentionMs: number) => Math.min(DAY, Math.max(SECOND, Math.floor(retentionMs / 10)));
export const maintenanceIntervalMs = (retentionMs: number) => Math.min(rotateEveryMs(retentionMs), 60 * SECOND);

/** Whether the open partition is due to be closed; null when not. */
export function rotationDue(p: { lo: number; hi: number; ageMs: number; hasRows: boolean; lastSeq: number }, rotateEvery: number): 'age' | 'half used' | null {
  if (p.lastSeq - p.lo >= (p.hi - p.lo) / 2) return 'half used';
  if (p.hasRows && p.ageMs >= rotateEvery) return 'age';
  return null;
}

/** The range after [lo, hi), or an error when it would pass SEQ_CEILING. */
export function nextRange(hi: number): { lo: number; hi: number } {
  const next = { lo: hi, hi: hi + PARTITION_WIDTH };
  if (!Number.isSafeInteger(next.hi) || next.hi > SEQ_CEILING) {
    throw new Error(
      `refusing to rotate the log: a partition [${next.lo}, ${next.hi}) would pass seq 2^52 (${SEQ_CEILING}); seqs must stay below 2^53 to be exact ` +
        `in JavaScript. The open partition keeps taking appends up to ${hi - 1}, but nothing older than it can be dropped until the ledger is renumbered`,
    );
  }
  return next;
}

const ref = (lo: number): PartitionRef => ({ lo, hi: lo + PARTITION_WIDTH, log: sql.logPartitionName(lo), outcomes: sql.outcomesPartitionName(lo) });

function seqOf(text: string | null): number | null {
  if (text === null) return null;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`seq ${text} is not exact as a JS number`);
  return n;
}

const isLockTimeout = (err: unknown) => (err as { code?: string }).code === '55P03';
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Runs `fn` in a transaction on one client; a client that failed is discarded, not returned to the pool. */
async function transaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // As in the ledger's append: pg-pool removes its listener on checkout, and a backend
  // terminated between statements would otherwise be an uncaught 'error' event.
  let broken: Error | undefined;
  const onError = (err: Error) => (broken = err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: unknown) => (broken ??= e instanceof Error ? e : new Error(String(e))));
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

export function startMaintenance(options: MaintenanceOptions): Maintenance {
  const { pool, schema: s, lockClass } = options;
  const log = options.logger.child({ component: 'ledger-maintenance' });
  const retentionMs = Math.max(1, Math.floor(options.retentionMs));
  const idRetentionMs = Math.max(retentionMs, Math.floor(options.idRetentionMs));
  if (idRetentionMs !== Math.floor(options.idRetentionMs)) {
    log.warn({ retentionMs, idRetentionMs: options.idRetentionMs }, 'idRetention is shorter than retention; keeping event ids as long as payloads');
  }
  const rotateEvery = rotateEveryMs(retentionMs);
  const intervalMs = maintenanceIntervalMs(retentionMs);

  const steps: Record<MaintenanceStep, { run: FailureRun; lockTimeouts: number }> = {
    rotate: { run: new FailureRun(log, 'ledger maintenance: rotating the log partition'), lockTimeouts: 0 },
    drop: { run: new FailureRun(log, 'ledger maintenance: dropping log partitions past retention'), lockTimeouts: 0 },
    deliveries: { run: new FailureRun(log, 'ledger maintenance: deleting finished deliveries'), lockTimeouts: 0 },
    parked_inputs: { run: new FailureRun(log, 'ledger maintenance: deleting resolved parked input'), lockTimeouts: 0 },
    orders: { run: new FailureRun(log, 'ledger maintenance: deleting old order rows'), lockTimeouts: 0 },
    event_ids: { run: new FailureRun(log, 'ledger maintenance: deleting event ids past idRetention'), lockTimeouts: 0 },
  };
  /** Where the sweep of `orders` goes on (a block number); from the start after a restart. */
  let ordersFrom = 0;
  /** Per held partition, who held it when last said: said again only when that changes. */
  const heldSaid = new Map<number, string>();

  async function rotate(report: MaintenanceReport): Promise<void> {
    await transaction(pool, async (c) => {
      await c.query(sql.lockTimeout(LOCK_TIMEOUT_MS));
      // The append lock: no append is between its nextval and its commit while we hold it.
      await c.query(sql.appendLock(lockClass));
      const { rows } = await c.query<{ lo: string; hi: string; age_ms: number; last_value: string; is_called: boolean; has_rows: boolean }>(sql.openPartition(s));
      const open = rows[0];
      if (!open) throw new Error(`${s}.log_partitions has no open partition`);
      const lo = seqOf(open.lo)!;
      const hi = seqOf(open.hi)!;
      const lastSeq = open.is_called ? seqOf(open.last_value)! : lo;
      const reason = rotationDue({ lo, hi, ageMs: open.age_ms, hasRows: open.has_rows, lastSeq }, rotateEvery);
      if (!reason) return;
      const next = nextRange(hi);
      await c.query(sql.rotate(s, lo, next.lo, next.hi));
      report.created.push({ ...ref(next.lo), reason });
    });
    for (const p of report.created) {
      log.info({ partition: p.log, outcomes: p.outcomes, lo: p.lo, hi: p.hi, reason: p.reason, rotateEveryMs: rotateEvery }, 'log partition created; the one before it is closed');
    }
  }

  async function drop(report: MaintenanceReport): Promise<void> {
    const { rows } = await pool.query<{ lo: string; hi: string }>(sql.partitionsPastRetention(s), [retentionMs]);
    let failure: unknown;
    for (const r of rows) {
      const lo = seqOf(r.lo)!;
      try {
        await transaction(pool, async (c) => {
          await c.query(sql.lockTimeout(LOCK_TIMEOUT_MS));
          const locked = await c.query(sql.lockPartitionForDrop(s), [lo, retentionMs]);
          if (locked.rowCount === 0) return; // dropped meanwhile by another instance
          const max = seqOf((await c.query<{ max: string | null }>(sql.partitionMaxSeq(s, lo))).rows[0]!.max);
          if (max !== null) {
            const behind = (await c.query<{ sink: string; shard: number | null; seq: string | null }>(sql.cursorsBehind(s), [max])).rows;
            if (behind.length > 0) {
              report.held.push({ ...ref(lo), maxSeq: max, behind: behind.map((b) => ({ sink: b.sink, shard: b.shard, seq: seqOf(b.seq) })) });
              return;
            }
          }
          await c.query(sql.dropPartition(s, lo));
          report.dropped.push({ ...ref(lo), maxSeq: max });
        });
      } catch (err) {
        // One partition that cannot be dropped now (a lock) does not keep the next from being looked at.
        failure ??= err;
      }
    }
    for (const p of report.dropped) {
      heldSaid.delete(p.lo);
      log.info({ partition: p.log, outcomes: p.outcomes, lo: p.lo, hi: p.hi, maxSeq: p.maxSeq, retentionMs }, 'log partition dropped: past retention, every cursor past it');
    }
    for (const h of report.held) {
      const sinks = [...new Set(h.behind.map((b) => b.sink))].sort();
      const key = sinks.join(',');
      if (heldSaid.get(h.lo) === key) continue;
      heldSaid.set(h.lo, key);
      log.warn(
        { partition: h.log, lo: h.lo, maxSeq: h.maxSeq, sinks, behind: h.behind.slice(0, 8) },
        'log partition past retention is kept: these sinks have not settled all its events (a paused or stopped sink, or one removed from the config whose cursors are still in the ledger)',
      );
    }
    if (failure) throw failure;
  }

  /** Repeats a bounded delete until a batch comes back short or the run's share is used. */
  async function batches(run: () => Promise<number>): Promise<number> {
    let total = 0;
    for (let i = 0; i < MAX_BATCHES; i++) {
      const n = await run();
      total += n;
      if (n < sql.BATCH_ROWS) break;
    }
    return total;
  }

  async function deliveries(report: MaintenanceReport): Promise<void> {
    report.deleted.deliveries += await batches(async () => {
      const r = (await pool.query<{ deliveries: number; attempts: number }>(sql.deleteSettledDeliveries(s), [retentionMs, sql.BATCH_ROWS])).rows[0]!;
      report.deleted.attempts += r.attempts;
      return r.deliveries;
    });
  }

  async function parkedInputs(report: MaintenanceReport): Promise<void> {
    report.deleted.parkedInputs += await batches(async () => (await pool.query<{ n: number }>(sql.deleteResolvedParkedInputs(s), [retentionMs, sql.BATCH_ROWS])).rows[0]!.n);
  }

  /** A sweep of `orders` by block ranges, on from where the last run stopped; at most one pass per run. */
  async function orders(report: MaintenanceReport): Promise<void> {
    const blocks = Number((await pool.query<{ blocks: string }>(sql.orderBlocks(s))).rows[0]!.blocks);
    if (ordersFrom >= blocks) ordersFrom = 0;
    const start = ordersFrom;
    let swept = 0;
    for (let i = 0; i < MAX_BATCHES && blocks > 0; i++) {
      const to = ordersFrom + sql.ORDER_SWEEP_BLOCKS;
      const n = (await pool.query<{ n: number }>(sql.deleteOldOrders(s), [retentionMs, ordersFrom, to, sql.BATCH_ROWS])).rows[0]!.n;
      report.deleted.orders += n;
      if (n >= sql.BATCH_ROWS) continue; // more in this range
      swept += sql.ORDER_SWEEP_BLOCKS;
      ordersFrom = to >= blocks ? 0 : to;
      if (swept >= blocks || ordersFrom === start) break;
    }
  }

  async function eventIds(report: MaintenanceReport): Promise<void> {
    const { rows } = await pool.query<{ lo: string; hi: string }>(sql.partitionsPastIdRetention(s), [idRetentionMs]);
    let budget = MAX_BATCHES;
    for (const r of rows) {
      for (;;) {
        if (budget-- <= 0) return;
        const n = (await pool.query<{ n: number }>(sql.deleteEventIds(s), [r.lo, r.hi, sql.BATCH_ROWS])).rows[0]!.n;
        report.deleted.eventIds += n;
        if (n < sql.BATCH_ROWS) break;
      }
      await pool.query(sql.markIdsDropped(s), [r.lo]);
    }
  }

  async function step(name: MaintenanceStep, report: MaintenanceReport, fn: (r: MaintenanceReport) => Promise<void>): Promise<void> {
    const st = steps[name];
    try {
      await fn(report);
      st.lockTimeouts = 0;
      st.run.succeeded();
    } catch (err) {
      const lockTimeout = isLockTimeout(err);
      report.errors.push({ step: name, message: message(err), lockTimeout });
      if (lockTimeout && ++st.lockTimeouts < QUIET_LOCK_TIMEOUTS) {
        log.debug({ step: name, lockTimeoutMs: LOCK_TIMEOUT_MS }, 'ledger maintenance gave up waiting for a lock; trying again next run');
        return;
      }
      st.run.failed(err, { step: name, schema: s });
    }
  }

  async function runNow(): Promise<MaintenanceReport> {
    const startedAt = new Date();
    const report: MaintenanceReport = {
      startedAt,
      durationMs: 0,
      created: [],
      dropped: [],
      held: [],
      deleted: { deliveries: 0, attempts: 0, parkedInputs: 0, orders: 0, eventIds: 0 },
      errors: [],
    };
    try {
      // Each step on its own: one failing (a lock, a refused rotation) does not stop the others.
      await step('rotate', report, rotate);
      await step('drop', report, drop);
      await step('deliveries', report, deliveries);
      await step('parked_inputs', report, parkedInputs);
      await step('orders', report, orders);
      await step('event_ids', report, eventIds);
    } catch (err) {
      // Only a bug in the steps' own bookkeeping gets here; never into the caller.
      report.errors.push({ step: 'rotate', message: message(err), lockTimeout: false });
    }
    report.durationMs = Date.now() - startedAt.getTime();
    return report;
  }

  let chain: Promise<unknown> = Promise.resolve();
  const runOnce = (): Promise<MaintenanceReport> => {
    const p = chain.then(runNow, runNow);
    chain = p.catch(() => {});
    return p;
  };

  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const tick = async () => {
    timer = null;
    await runOnce();
    if (stopped) return;
    timer = setTimeout(() => void tick(), intervalMs);
    timer.unref();
  };
  void tick();
  log.debug({ retentionMs, idRetentionMs, rotateEveryMs: rotateEvery, intervalMs }, 'ledger maintenance started');

  return {
    rotateEveryMs: rotateEvery,
    intervalMs,
    runOnce,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await chain;
    },
  };
}
