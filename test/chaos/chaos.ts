/**
 * `npm run chaos`: tries to break exactly-once. A seeded stream of purchases, partial refunds,
 * full refunds and check-ins goes into Postgres while the connector (its own process) is
 * SIGKILLed (and now and then stopped by SIGTERM, as a deploy does) at random times, Postgres
 * is restarted, and the gateway simulators (their own processes) answer 5xx, business retry
 * codes, hang, record the effect and drop the connection, or corrupt their response
 * signatures. Orders that predate the slot are changed by the load while a `backfill` reads
 * them (stream and backfill write the same orders at once), and large transactions commit
 * concurrently with small ones (adjacent commit records). Then the faults stop, the
 * connector drains, and the invariants are checked against what the simulators recorded.
 *
 * Every random choice (load, fault schedule, simulator dice) comes from `--seed`; the
 * machine's scheduling still varies, so a replay reproduces the same plan, not the same
 * interleaving to the microsecond.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, type WriteStream } from 'node:fs';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { join } from 'node:path';
import pg from 'pg';
import { parse } from 'yaml';
import { eventId } from '../../src/core/ids.js';
import { deliveryAudit } from '../../src/ledger/queries-sql.js';
import type { LocalPostgres } from '../../src/sandbox/postgres.js';
import {
  CLI,
  connectorConfig,
  createOrderDatabase,
  createSlot,
  killAllChildren,
  ledgerExists,
  PROJECT,
  REPO,
  round,
  seededRandom,
  sleep,
  slotAndCheckpoint,
  spawnConnector,
  startServer,
  startSims,
  table,
  writeConfigFile,
  type AntchainStats,
  type ConnectorProcess,
  type Sims,
  type ZhimaStats,
} from '../bench/harness.js';
import { createTestProducer, startMockKafka, type MockKafka } from '../helpers/kafka.js';
import { SlotProbe, type SlotView } from './instances.js';

export interface ChaosOptions {
  seed: number;
  /** Seconds of load (faults happen during it). */
  duration: number;
  /** Restarts of the connector during the load: SIGKILLs, about a third of them SIGTERMs instead. */
  kills: number;
  /** Orders that exist before the slot; a `backfill` brings them in during the load. */
  preexisting: number;
  pgRestarts: number;
  /** Windows of simulator faults. */
  faultWindows: number;
  /** Load operations per second (purchases, payments, refunds, check-ins). */
  rate: number;
  /** Seconds to wait for the connector to drain after the load. */
  drainTimeout: number;
  /**
   * Self-test of the checker: break exactly-once on purpose and expect the run to fail.
   * `lost`: the Zhima simulator forgets its effects half-way (the ledger still says delivered).
   * `duplicate`: half-way, a second connector with another project name sends the same business
   * events under other keys.
   */
  sabotage?: 'lost' | 'duplicate';
  /**
   * Also stream orders through Kafka (librdkafka's mock cluster via kcat): a share of the
   * purchases, check-ins and refunds are produced as Debezium and plain-JSON records instead
   * of written to Postgres, and the consumer group's committed offsets are checked against
   * the ledger like the slot is.
   */
  kafka: boolean;
  /**
   * Connector processes on the same config and ledger (default 1). With more than one, each
   * restart picks a random one, the role it had (slot owner or standby) is recorded, and each
   * SIGKILL of the owner is timed until another process streams the slot (`failover_s`).
   */
  instances?: number;
  /**
   * Each connector process's output (at log level info), appended to `instance-<i>.log` in
   * this directory, a header line per spawn; without it only the tail of an unplanned exit is kept.
   */
  logDir?: string;
  log: (line: string) => void;
}

/** The issue's target for `failover_s` (max). */
export const FAILOVER_TARGET_S = 5;
/** A takeover not seen within this is counted in `failover_timeouts` (and fails the run). */
const FAILOVER_TIMEOUT_MS = 30_000;

/**
 * What a process was when it got its signal: holding the slot's lock (owner); up (a
 * connection to Postgres open) while another holds it (standby) or while none does (neither,
 * e.g. just after a Postgres restart); or still starting (no connection to Postgres yet:
 * compiling, loading, connecting).
 */
export type KillRole = 'owner' | 'standby' | 'neither' | 'starting';

export interface KillRecord {
  signal: 'SIGKILL' | 'SIGTERM';
  /** Index of the connector process (0…instances-1); each restart keeps its index. */
  instance: number;
  role: KillRole;
  /** Seconds into the load. */
  at_s: number;
  /** Owner killed: seconds until another process streamed the slot (null: not seen within the timeout, or no owner killed). */
  failover_s: number | null;
  /** Which process took the slot over: the standing-by one, or the killed one restarted. */
  taken_over_by?: 'standby' | 'restarted';
}

export interface FailoverStats {
  count: number;
  mean: number | null;
  max: number | null;
}

/** Whether kcat (for the mock Kafka cluster) is installed. */
export function kcatAvailable(): boolean {
  return spawnSync('kcat', ['-V'], { stdio: 'ignore' }).status === 0;
}

export const LONG: Omit<ChaosOptions, 'seed' | 'log' | 'kafka'> = { duration: 120, kills: 30, preexisting: 400, pgRestarts: 2, faultWindows: 10, rate: 80, drainTimeout: 180 };
/** The suite's variant: Postgres only (a Kafka group rejoin after each kill takes seconds). */
export const SHORT: Omit<ChaosOptions, 'seed' | 'log' | 'kafka'> = { duration: 14, kills: 4, preexisting: 60, pgRestarts: 1, faultWindows: 6, rate: 50, drainTimeout: 30 };

export interface ChaosReport {
  seed: number;
  ok: boolean;
  /** Connector restarts: SIGKILLs plus SIGTERMs. */
  kills: number;
  terms: number;
  /** `backfill` runs started (a failed one, e.g. during a Postgres restart, is run again) and whether one completed. */
  backfill_runs: number;
  backfill_done: boolean;
  /** Large transactions (more changes than a batch) committed concurrently with the small ones. */
  bulk_transactions: number;
  pg_restarts: number;
  fault_windows: number;
  /** Connector exits we did not cause (e.g. a ledger write failing while Postgres restarts); it was restarted. */
  unplanned_exits: number;
  orders: number;
  events_expected: number;
  deliveries_expected: number;
  effects: number;
  parked: number;
  lost: number;
  duplicates: number;
  order_violations: number;
  acked_beyond_ledger: number;
  /** Kafka records produced (0 without --kafka). */
  kafka_records: number;
  /** A key sent again with different content (REQUEST_ID_CONFLICT / conflicting out_biz_no). */
  key_conflicts: number;
  /**
   * (event, sink) pairs of the log whose records break the ledger model: the sink's cursor
   * passed it with neither an outcome nor an exception row, it has more than one record, or
   * it has one while still past the cursor (`deliveryAudit`; per sink in `ledger_audit`).
   */
  ledger_inconsistent: number;
  ledger_audit: Array<{ sink: string; pairs: number; delivered: number; unrecorded: number; repeated: number; ahead: number }>;
  slot_checks: number;
  /** Repeats of known keys the simulators answered idempotently (expected, harmless). */
  idempotent_repeats: number;
  /** Those repeats attributed to the connector restart before them (see ResendsPerKill). */
  resends_per_kill: ResendsPerKill;
  faults_injected: { antchain: Record<string, number>; zhima: Record<string, number> };
  parked_reasons: Record<string, number>;
  drained: boolean;
  seconds: number;
  examples: Record<string, string[]>;
  /** Connector processes run side by side. */
  instances: number;
  /** With several instances: restarts by signal and the role the process had. */
  kills_by_role?: Record<'SIGKILL' | 'SIGTERM', Record<KillRole, number>>;
  /**
   * With several instances: per SIGKILL of the slot owner, the time from the signal until
   * another live process streams the slot (pg_replication_slots.active_pid is a new walsender
   * whose client socket belongs to that process). Target: max <= `target_max`.
   */
  failover_s?: FailoverStats & { target_max: number; met: boolean; by_standby: number; by_restarted: number };
  /** The same after a SIGTERM of the owner (a deploy: it drains, then lets the slot go). */
  handover_s?: FailoverStats;
  /** Owner kills after which no other process streamed within FAILOVER_TIMEOUT_MS. */
  failover_timeouts?: number;
  /** Each restart, in order. */
  kill_log?: KillRecord[];
  /** The command that replays this run's plan. */
  replay: string;
}

/**
 * Requests sent again for an idempotency key the gateway had already applied (a valid request
 * the simulator answered idempotently: its `duplicates`), by the gateway's arrival time, put on
 * the planned connector restart before them: the ones arriving between restart k (the new
 * process's spawn) and restart k+1 belong to kill k, the last kill's run to the end of the
 * drain. A resend inside such a window is not always the kill's doing (a dropped answer or a
 * corrupted signature is retried under the same key by the same process, and a Postgres
 * restart or an unplanned exit can fall inside a window): `applied_before_kill` counts only the
 * keys whose effect was recorded before kill k's signal, what the restarted process could not
 * know had been applied.
 */
export interface ResendsPerKill {
  mean: number | null;
  max: number | null;
  /** One entry per kill, in order. */
  per_kill: Array<{ signal: 'SIGKILL' | 'SIGTERM'; resends: number; applied_before_kill: number }>;
  applied_before_kill: { mean: number | null; max: number | null };
  by_signal: Record<'SIGKILL' | 'SIGTERM', { kills: number; mean: number | null; max: number | null }>;
  /** Repeats before the first restart (faults alone: dropped answers, corrupted signatures). */
  before_first_kill: number;
  /** Every repeat the simulators counted (= idempotent_repeats). */
  total: number;
}

interface Restart {
  signal: 'SIGKILL' | 'SIGTERM';
  /** When the signal was sent. */
  killedAt: number;
  /** When the next process was spawned (the kill's window starts here). */
  restartedAt: number;
}

export function resendsPerKill(
  restarts: Restart[],
  repeats: Array<{ key: string; at: number }>,
  appliedAt: Map<string, number>,
): ResendsPerKill {
  const per = restarts.map((r) => ({ signal: r.signal, resends: 0, applied_before_kill: 0 }));
  let before = 0;
  for (const d of repeats) {
    // The last restart at or before the repeat's arrival.
    let k = -1;
    for (let i = 0; i < restarts.length && restarts[i]!.restartedAt <= d.at; i++) k = i;
    if (k < 0) {
      before++;
      continue;
    }
    per[k]!.resends++;
    const applied = appliedAt.get(d.key);
    if (applied !== undefined && applied < restarts[k]!.killedAt) per[k]!.applied_before_kill++;
  }
  const stats = (xs: number[]) => ({ mean: xs.length ? round(xs.reduce((a, b) => a + b, 0) / xs.length, 2) : null, max: xs.length ? Math.max(...xs) : null });
  const bySignal = (s: 'SIGKILL' | 'SIGTERM') => {
    const xs = per.filter((p) => p.signal === s).map((p) => p.resends);
    return { kills: xs.length, ...stats(xs) };
  };
  return {
    ...stats(per.map((p) => p.resends)),
    per_kill: per,
    applied_before_kill: stats(per.map((p) => p.applied_before_kill)),
    by_signal: { SIGKILL: bySignal('SIGKILL'), SIGTERM: bySignal('SIGTERM') },
    before_first_kill: before,
    total: repeats.length,
  };
}

// ---------------------------------------------------------------------------------------------
// The load: a small order system with a seeded customer base.

interface Order {
  no: string;
  state: 'created' | 'paid' | 'done';
  refunds: number;
  /** Invalid Alipay user id: Zhima parks its TRADE_SUCCESS; the order gets nothing more. */
  invalidUser: boolean;
}

const INSERT_ORDER = `INSERT INTO orders (order_no, status, buyer_phone, sharer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, cinema_address, schedule_id, seat_ids, show_start, show_end, ticket_count, original_amount, paid_amount, paid_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '2026-12-01 19:30:00', '2026-12-01 21:30:00', $12, $13, $14, CASE WHEN $2 = 'PAID' THEN now() END)`;

/**
 * A client checked out of a pool has no 'error' listener (pg-pool keeps one only while it is
 * idle): Postgres restarting between two of its statements would be an uncaught 'error'
 * event and end the harness. The failed statement rejects anyway. Returns the remover.
 */
function ignoreErrors(c: pg.PoolClient): () => void {
  const onError = () => {};
  c.on('error', onError);
  return () => c.removeListener('error', onError);
}

class Load {
  private readonly orders: Order[] = [];
  private readonly active: Order[] = [];
  private n = 0;
  ops = 0;
  errors = 0;
  bulks = 0;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly random: () => number,
  ) {}

  /**
   * Orders written before the slot exists (no stream sees them being created): some unpaid,
   * most paid, a few with a refund or already used. The open ones join the load, so the
   * stream changes them while the backfill reads them.
   */
  async seedExisting(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const no = `P${i + 1}`;
      const r = this.random();
      const order: Order = { no, state: r < 0.3 ? 'created' : r < 0.9 ? 'paid' : 'done', refunds: 0, invalidUser: false };
      await this.pool.query(INSERT_ORDER, this.orderParams(no, r < 0.3 ? 'CREATED' : r < 0.95 ? 'PAID' : 'USED', false));
      if (r >= 0.8 && r < 0.9) {
        order.refunds = 1;
        await this.pool.query(`INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count) VALUES ($1, $2, 'SUCCESS', 10.00, 1)`, [`${no}-r1`, no]);
      }
      this.orders.push(order);
      if (order.state !== 'done') this.active.push(order);
    }
  }

  /**
   * A transaction of many paid orders (more than one batch of changes), running while the
   * small operations go on: its commit record often lands right after a small one's.
   */
  private bulk(): void {
    const size = 50 + Math.floor(this.random() * 150);
    const first = this.n + 1;
    this.n += size;
    const params = Array.from({ length: size }, (_, i) => this.orderParams(`X${first + i}`, 'PAID', false));
    for (let i = 0; i < size; i++) this.orders.push({ no: `X${first + i}`, state: 'done', refunds: 0, invalidUser: false });
    this.bulks++;
    const run = (async () => {
      // Postgres may be restarting: a failed connect is a failed operation like any other.
      const c = await this.pool.connect().catch(() => null);
      if (!c) {
        this.errors++;
        return;
      }
      const done = ignoreErrors(c);
      try {
        await c.query('BEGIN');
        for (const p of params) await c.query(INSERT_ORDER, p);
        await c.query('COMMIT');
      } catch {
        await c.query('ROLLBACK').catch(() => {});
        this.errors++;
      } finally {
        done();
        c.release(true);
      }
    })();
    this.inFlight.add(run);
    void run.finally(() => this.inFlight.delete(run));
  }

  /** Waits for the large transactions still running. */
  async settle(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private orderParams(no: string, status: string, invalidUser: boolean): unknown[] {
    const r = this.random;
    const user = invalidUser ? '9999' + String(Math.floor(r() * 1e10)) : r() < 0.7 ? '2088' + String(1e11 + Math.floor(r() * 9e11)) : null;
    const tickets = 1 + Math.floor(r() * 4);
    return [
      no, status, '138' + String(1e7 + Math.floor(r() * 9e7)), r() < 0.3 ? '139' + String(1e7 + Math.floor(r() * 9e7)) : null, user,
      String(1300000 + Math.floor(r() * 500)), 1 + Math.floor(r() * 40), 'Cinema ' + Math.floor(r() * 40), 'No. 1 Chang\'an Ave', 'S' + Math.floor(r() * 1000),
      `${Math.floor(r() * 20)}-${Math.floor(r() * 30)}`, tickets, (45 * tickets).toFixed(2), (40 * tickets).toFixed(2),
    ];
  }

  /** One operation, chosen by the seeded PRNG; failures (Postgres restarting) just drop that order from the plan. */
  async step(): Promise<void> {
    const r = this.random();
    this.ops++;
    const paid = this.active.filter((o) => o.state === 'paid');
    const created = this.active.filter((o) => o.state === 'created');
    let order: Order | undefined;
    try {
      if (r < 0.012) {
        this.bulk();
        return;
      }
      if (r < 0.4 || this.active.length < 5) {
        // A purchase: most arrive unpaid and are paid later, some arrive paid; a few come with a
        // partial refund in the same transaction.
        const no = `X${++this.n}`;
        const invalidUser = this.random() < 0.02;
        order = { no, state: 'created', refunds: 0, invalidUser };
        this.orders.push(order);
        const kind = this.random();
        if (kind < 0.6 && !invalidUser) {
          await this.pool.query(INSERT_ORDER, this.orderParams(no, 'CREATED', false));
          this.active.push(order);
        } else if (kind < 0.9 || invalidUser) {
          await this.pool.query(INSERT_ORDER, this.orderParams(no, 'PAID', invalidUser));
          order.state = invalidUser ? 'done' : 'paid';
          if (!invalidUser) this.active.push(order);
        } else {
          const c = await this.pool.connect();
          const done = ignoreErrors(c);
          try {
            await c.query('BEGIN');
            await c.query(INSERT_ORDER, this.orderParams(no, 'PAID', false));
            await c.query(`INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count) VALUES ($1, $2, 'SUCCESS', 10.00, 1)`, [`${no}-r1`, no]);
            await c.query('COMMIT');
          } catch (err) {
            await c.query('ROLLBACK').catch(() => {});
            throw err;
          } finally {
            done();
            c.release();
          }
          order.state = 'paid';
          order.refunds = 1;
          this.active.push(order);
        }
        return;
      }
      if (r < 0.65 && created.length) {
        order = this.pick(created);
        await this.pool.query(`UPDATE orders SET status = 'PAID', paid_at = now(), updated_at = now() WHERE order_no = $1`, [order.no]);
        order.state = 'paid';
        return;
      }
      if (r < 0.78 && paid.length) {
        // A partial refund; sometimes first PENDING and settled by a later update.
        order = this.pick(paid);
        const id = `${order.no}-r${++order.refunds}`;
        const pending = this.random() < 0.25;
        await this.pool.query(`INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count) VALUES ($1, $2, $3, 10.00, 1)`, [id, order.no, pending ? 'PENDING' : 'SUCCESS']);
        if (pending) await this.pool.query(`UPDATE refunds SET status = 'SUCCESS' WHERE refund_id = $1`, [id]);
        if (order.refunds >= 3) order.state = 'done';
        return;
      }
      if (r < 0.9 && paid.length) {
        order = this.pick(paid);
        await this.pool.query(`UPDATE orders SET status = 'USED', updated_at = now() WHERE order_no = $1`, [order.no]);
        order.state = 'done';
        return;
      }
      if (paid.length) {
        order = this.pick(paid);
        await this.pool.query(`UPDATE orders SET status = 'REFUNDED', updated_at = now() WHERE order_no = $1`, [order.no]);
        order.state = 'done';
      }
    } catch {
      // Unknown outcome (the server went away): the final table contents decide what is expected.
      this.errors++;
      if (order) order.state = 'done';
    } finally {
      for (let i = this.active.length - 1; i >= 0; i--) if (this.active[i]!.state === 'done') this.active.splice(i, 1);
    }
  }

  get count(): number {
    return this.orders.length;
  }
}

/**
 * Orders that live in Kafka only: every change is a record with the whole row, keyed by
 * order number (one partition per order, so its changes stay in order), half of them as
 * Debezium change events and half as plain JSON rows.
 */
export const KAFKA_TOPICS = { debezium: 'chaos.public.orders', json: 'chaos-orders-json' };

class KafkaLoad {
  private readonly active: Array<{ no: string; row: Record<string, unknown>; status: string; sent: boolean }> = [];
  /** Last status the broker acknowledged per order, and its Alipay user. */
  readonly final = new Map<string, { status: string; user: string | null }>();
  private n = 0;
  records = 0;
  errors = 0;

  constructor(
    private readonly producer: Producer,
    private readonly random: () => number,
  ) {}

  async step(): Promise<void> {
    const r = this.random;
    let order: { no: string; row: Record<string, unknown>; status: string; sent: boolean } | undefined;
    let next: string;
    if (r() < 0.45 || this.active.length < 3) {
      const no = `K${++this.n}`;
      const tickets = 1 + Math.floor(r() * 4);
      const row: Record<string, unknown> = {
        id: this.n, order_no: no, buyer_phone: '138' + String(1e7 + Math.floor(r() * 9e7)), sharer_phone: null,
        alipay_user_id: r() < 0.7 ? '2088' + String(1e11 + Math.floor(r() * 9e11)) : null, movie_id: String(1300000 + Math.floor(r() * 500)),
        cinema_id: 1 + Math.floor(r() * 40), cinema_name: 'Cinema K', cinema_address: null, cinema_location: null, schedule_id: 'S' + Math.floor(r() * 1000),
        seat_ids: '7-8', show_start: '2026-12-01 19:30:00', show_end: '2026-12-01 21:30:00', ticket_count: tickets,
        original_amount: (45 * tickets).toFixed(2), paid_amount: (40 * tickets).toFixed(2), paid_at: null, notes: null, updated_at: new Date().toISOString(),
      };
      order = { no, row, status: 'CREATED', sent: false };
      this.active.push(order);
      next = r() < 0.5 ? 'CREATED' : 'PAID';
    } else {
      order = this.active[Math.floor(r() * this.active.length)]!;
      next = order.status === 'CREATED' ? 'PAID' : r() < 0.5 ? 'USED' : 'REFUNDED';
    }
    const row: Record<string, unknown> = { ...order.row, status: next, updated_at: new Date().toISOString() };
    const debezium = Number(order.no.slice(1)) % 2 === 0;
    const value = debezium
      ? { before: null, after: row, op: order.sent ? 'u' : 'c', ts_ms: Date.now(), source: { schema: 'public', table: 'orders', ts_ms: Date.now() } }
      : row;
    try {
      await this.producer.send({ topic: debezium ? KAFKA_TOPICS.debezium : KAFKA_TOPICS.json, acks: -1, messages: [{ key: order.no, value: JSON.stringify(value) }] });
      this.records++;
      order.sent = true;
      order.row = row;
      order.status = next;
      this.final.set(order.no, { status: next, user: (row.alipay_user_id as string | null) ?? null });
      if (next === 'USED' || next === 'REFUNDED') this.active.splice(this.active.indexOf(order), 1);
    } catch {
      // Not acknowledged: it may or may not be in the topic. Stop changing this order.
      this.errors++;
      this.final.delete(order.no);
      this.active.splice(this.active.indexOf(order), 1);
      this.uncertain.add(order.no);
    }
  }

  /** Orders whose last send failed: their outcome is unknown, so they are not checked. */
  readonly uncertain = new Set<string>();
}

// ---------------------------------------------------------------------------------------------
// Expected events, from what the tables finally hold and the rules in config/demo.yaml.

interface Expected {
  id: string;
  orderNo: string;
  code: string;
  sinks: Array<'antchain' | 'zhima'>;
}

async function expectedEvents(pool: pg.Pool, kafka?: KafkaLoad): Promise<Map<string, Expected>> {
  const demo = parse(readFileSync(join(REPO, 'config/demo.yaml'), 'utf8')) as {
    orders: { statuses: Record<string, string[]> };
    refunds: { successStatuses: string[] };
    sinks: { zhima: { states: Record<string, string> }; antchain: { confirmType: string } };
  };
  const orders = (await pool.query<{ order_no: string; status: string; alipay_user_id: string | null }>(`SELECT order_no, status, alipay_user_id FROM orders`)).rows;
  const refunds = (await pool.query<{ refund_id: string; order_no: string; status: string }>(`SELECT refund_id, order_no, status FROM refunds`)).rows;
  const user = new Map(orders.map((o) => [o.order_no, o.alipay_user_id]));
  for (const [no, k] of kafka?.final ?? []) {
    orders.push({ order_no: no, status: k.status, alipay_user_id: k.user });
    user.set(no, k.user);
  }
  const out = new Map<string, Expected>();
  const add = (orderNo: string, code: string, refundId?: string) => {
    const id = eventId(refundId ? [PROJECT, orderNo, code, refundId] : [PROJECT, orderNo, code]);
    if (out.has(id)) return;
    const sinks: Array<'antchain' | 'zhima'> = [];
    if (code !== 'TRADE_CONFIRM' || demo.sinks.antchain.confirmType === 'TWO_STEP_MANUAL') sinks.push('antchain');
    const u = user.get(orderNo);
    if (u != null && u.trim() !== '' && demo.sinks.zhima.states[code]) sinks.push('zhima');
    out.set(id, { id, orderNo, code, sinks });
  };
  for (const o of orders) for (const code of demo.orders.statuses[o.status] ?? []) add(o.order_no, code);
  for (const r of refunds) {
    if (!demo.refunds.successStatuses.includes(r.status)) continue;
    add(r.order_no, 'TRADE_SUCCESS');
    add(r.order_no, 'REFUND_SUCCESS', r.refund_id);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The ledger's record of each (event, sink), read from the tables of schema version 3.

/** Where a cursor the dispatcher has not made yet starts (as `ensureCursors` would make it). */
const cursorStart = (s: string) => `coalesce((SELECT value::bigint FROM ${s}.settings WHERE key = 'cursor_start'), 0)`;

/** (event, sink) pairs of the log still past the sink's cursor of the event's shard. */
const pastCursors = (s: string) => /* sql */ `
  SELECT encode(l.id, 'hex') AS event_id, k.name AS sink
    FROM ${s}.log l
    JOIN ${s}.sinks k ON (l.sinks & (1 << k.bit)) <> 0
    LEFT JOIN ${s}.cursors c ON c.sink = k.name AND c.shard = l.shard
   WHERE l.seq > coalesce(c.seq, ${cursorStart(s)})`;

/**
 * Drained: how many of the expected event ids ($1, hex) the log holds, exception rows still
 * pending (retrying, or waiting behind one), and pairs still past their cursor (not yet
 * settled by the sink). A pair the cursor passed is an outcome or an exception row
 * (`deliveryAudit` checks that it has exactly one).
 */
const drainQuery = (s: string) => /* sql */ `
  SELECT (SELECT count(*) FROM unnest($1::text[]) AS x(id) JOIN ${s}.event_ids i ON i.id = decode(x.id, 'hex') JOIN ${s}.log l ON l.seq = i.seq)::int AS have,
         (SELECT count(*) FROM ${s}.deliveries WHERE status = 'pending')::int AS pending,
         (SELECT count(*) FROM (${pastCursors(s)}) p)::int AS past`;

interface LedgerState {
  /** delivered | not_applicable (outcomes or rows) | rejected | skipped | pending (a row, or past the cursor). */
  status: string;
  last_code: string | null;
  last_message: string | null;
  /** Which record says so. */
  record: 'outcome' | 'exception' | 'past the cursor';
}

/**
 * Each (sink, event id) the ledger has a record of: an exception row (deliveries) first, as
 * the delivery_states view prefers it, else the outcome the cursor wrote, else pending past
 * the cursor. An outcome keeps no message; one not applicable reads NOT_APPLICABLE, the code
 * a row of it carried (and the console shows).
 */
async function ledgerStates(pool: pg.Pool, s: string): Promise<Map<string, LedgerState>> {
  const out = new Map<string, LedgerState>();
  const past = (await pool.query<{ event_id: string; sink: string }>(pastCursors(s))).rows;
  for (const p of past) out.set(`${p.sink}/${p.event_id}`, { status: 'pending', last_code: null, last_message: null, record: 'past the cursor' });
  const outcomes = (
    await pool.query<{ event_id: string; sink: string; status: string; remote_code: string | null }>(
      `SELECT encode(l.id, 'hex') AS event_id, o.sink, o.status, o.remote_code FROM ${s}.outcomes o JOIN ${s}.log l ON l.seq = o.seq ORDER BY o.at`,
    )
  ).rows;
  for (const o of outcomes) {
    const code = o.status === 'not_applicable' ? (o.remote_code ?? 'NOT_APPLICABLE') : o.remote_code;
    out.set(`${o.sink}/${o.event_id}`, { status: o.status, last_code: code, last_message: null, record: 'outcome' });
  }
  const rows = (
    await pool.query<{ event_id: string; sink: string; status: string; last_code: string | null; last_message: string | null }>(
      `SELECT event_id, sink, status, last_code, last_message FROM ${s}.deliveries`,
    )
  ).rows;
  for (const d of rows) out.set(`${d.sink}/${d.event_id}`, { status: d.status, last_code: d.last_code, last_message: d.last_message, record: 'exception' });
  return out;
}

// ---------------------------------------------------------------------------------------------

/** Keeps one connector running; restarts it after an exit we did not cause. */
class Supervisor {
  proc: ConnectorProcess | null = null;
  unplanned: Array<{ code: number | null; signal: string | null; tail: string }> = [];
  /** Planned restarts, in order: when the signal went and when the next process was spawned. */
  restarts: Restart[] = [];
  private stopping = false;
  private killing = false;
  private restarting: Promise<void> | null = null;

  private readonly logFile: WriteStream | undefined;

  constructor(
    private readonly configPath: string,
    private readonly env: Record<string, string>,
    /** Where planned restarts are recorded (shared by the instances of a run). */
    readonly restartLog: Restart[] = [],
    /** A file the processes' output is appended to. */
    logPath?: string,
  ) {
    this.restarts = restartLog;
    this.logFile = logPath ? createWriteStream(logPath, { flags: 'a' }) : undefined;
  }

  /** The running process's pid, or undefined between an exit and the restart. */
  get pid(): number | undefined {
    const c = this.proc?.child;
    return c && c.exitCode === null && c.signalCode === null ? this.proc!.pid : undefined;
  }

  start(): void {
    const proc = spawnConnector(this.configPath, this.env, { extraEnv: { LOG_LEVEL: 'warn' } });
    this.proc = proc;
    if (this.logFile) {
      const file = this.logFile;
      file.write(`=== ${new Date().toISOString()} spawned pid ${proc.pid}\n`);
      proc.child.stdout!.on('data', (d: Buffer) => file.write(d));
      proc.child.stderr!.on('data', (d: Buffer) => file.write(d));
      void proc.exited.then((e) => file.write(`=== ${new Date().toISOString()} pid ${proc.pid} exited (${e.code ?? e.signal})\n`));
    }
    void proc.exited.then((e) => {
      if (this.stopping || this.killing || this.proc !== proc) return;
      this.unplanned.push({ code: e.code, signal: e.signal, tail: proc.output().slice(-1500) });
      this.restarting = sleep(300).then(() => {
        this.restarting = null;
        if (!this.stopping && this.proc === proc) this.start();
      });
    });
  }

  /**
   * SIGKILL (or, `graceful`, SIGTERM and a clean exit), then `check` while it is down, then a
   * restart after `downMs`. `onSignal` runs as the signal goes, with the process's pid.
   */
  async kill(downMs: number, check: () => Promise<void>, graceful = false, onSignal?: (killedAt: number, pid: number | undefined) => void): Promise<void> {
    await this.restarting;
    this.killing = true;
    const killedAt = Date.now();
    onSignal?.(killedAt, this.proc?.pid);
    try {
      if (graceful) await this.proc?.stop(10_000);
      else await this.proc?.kill();
      await check();
      await sleep(downMs);
    } finally {
      this.killing = false;
    }
    if (!this.stopping) {
      this.restarts.push({ signal: graceful ? 'SIGTERM' : 'SIGKILL', killedAt, restartedAt: Date.now() });
      this.start();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.restarting;
    await this.proc?.stop(5000);
    await new Promise<void>((resolve) => (this.logFile ? this.logFile.end(resolve) : resolve()));
  }
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const log = opts.log;
  const t0 = Date.now();
  const rSchedule = seededRandom(opts.seed ^ 0x5eed);
  const rLoad = seededRandom(opts.seed);
  let server: LocalPostgres | undefined;
  let sims: Sims | undefined;
  const sups: Supervisor[] = [];
  const instances = Math.max(1, Math.floor(opts.instances ?? 1));
  let probe: SlotProbe | undefined;
  let mock: MockKafka | undefined;
  let producer: Producer | undefined;
  let kafkaAdmin: ReturnType<Kafka['admin']> | undefined;
  const pools: pg.Pool[] = [];
  const onSigint = () => {
    killAllChildren();
    void server?.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  try {
    server = await startServer({ max_connections: '200' });
    sims = await startSims({ seed: opts.seed });
    const url = await createOrderDatabase(server.url, 'chaos');
    const slot = 'chaos_slot';
    const schema = 'ledger';
    const pool = new pg.Pool({ connectionString: url, max: 6 });
    pool.on('error', () => {});
    pools.push(pool);
    const load = new Load(pool, rLoad);
    await load.seedExisting(opts.preexisting);
    await createSlot(url, slot, 'chaos_pub');
    const slotConfirmed = async () =>
      BigInt((await pool.query<{ c: string }>(`SELECT (confirmed_flush_lsn - '0/0')::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0]!.c);
    const initialConfirmed = await slotConfirmed();

    if (opts.kafka) {
      mock = await startMockKafka();
      producer = await createTestProducer(mock.brokers);
      kafkaAdmin = new Kafka({ clientId: 'chaos-admin', brokers: mock.brokers, logLevel: logLevel.NOTHING }).admin();
      await kafkaAdmin.connect();
    }
    const kafkaConfig = mock
      ? {
          kafka: {
            kind: 'kafka',
            brokers: mock.brokers,
            groupId: 'chaos',
            sessionTimeout: '3s',
            heartbeatInterval: '500ms',
            rebalanceTimeout: '3s',
            maxWait: '250ms',
            maxBatchRecords: 200,
            topics: [
              { topic: KAFKA_TOPICS.debezium, format: 'debezium', table: 'public.orders' },
              { topic: KAFKA_TOPICS.json, format: 'json', table: 'public.orders' },
            ],
          },
        }
      : {};
    const raw = connectorConfig({
      dbUrl: url,
      sims,
      slot,
      publication: 'chaos_pub',
      ledgerSchema: schema,
      overrides: {
        source: { heartbeat: '1s', statusInterval: '500ms', maxBatchChanges: 40, reconnect: { initialBackoff: '100ms', maxBackoff: '1s' } },
        sinks: {
          antchain: { timeout: '1s', concurrency: 16, retry: { initialBackoff: '50ms', maxBackoff: '500ms' } },
          zhima: { timeout: '1s', concurrency: 16, retry: { initialBackoff: '50ms', maxBackoff: '500ms' } },
        },
        dispatcher: { pollInterval: '100ms', leaseMargin: '1s', drainTimeout: '1s' },
        ledger: { poolSize: 4 },
        // Kept in files: the takeovers' and the restarts' info lines too.
        ...(opts.logDir ? { log: { level: 'info' } } : {}),
        ...kafkaConfig,
      },
    });
    const configPath = writeConfigFile(raw);
    let saboteur: ConnectorProcess | undefined;
    if (opts.sabotage === 'duplicate') await createSlot(url, 'saboteur_slot', 'chaos_pub');

    // Slot safety: the slot must never be acknowledged past what the ledger holds.
    let slotChecks = 0;
    let ackedBeyond = 0;
    const ackExamples: string[] = [];
    const checkSlot = async (when: string) => {
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          const exists = await ledgerExists(pool, schema);
          const s = exists ? await slotAndCheckpoint(pool, slot, schema) : { confirmed: await slotConfirmed(), checkpoint: null };
          slotChecks++;
          // Before the first checkpoint nothing may have been acknowledged beyond the slot's start.
          // No slack: a slot one byte past the checkpoint skips a transaction whose commit record
          // starts there (PostgreSQL skips commits that start before confirmed_flush_lsn).
          const limit = s.checkpoint === null ? initialConfirmed : s.checkpoint;
          if (s.confirmed > limit) {
            ackedBeyond++;
            ackExamples.push(`${when}: confirmed_flush_lsn ${s.confirmed} > checkpoint ${s.checkpoint ?? 'none'}`);
          }
          if (kafkaAdmin) {
            // Kafka: the group's committed offset (the next record to read) never passes the
            // ledger's. Offsets first, then the ledger: it is written before any commit and only
            // moves forward, so this order cannot mistake a batch stored in between for a breach.
            const offsets = await kafkaAdmin.fetchOffsets({ groupId: 'chaos', topics: Object.values(KAFKA_TOPICS) });
            const stored = new Map<string, bigint>();
            if (exists) {
              const { rows } = await pool.query<{ stream: string; position: string }>(`SELECT stream, position FROM ${schema}.checkpoints WHERE source = 'kafka'`);
              for (const r of rows) stored.set(r.stream, BigInt(r.position));
            }
            for (const t of offsets) {
              for (const p of t.partitions) {
                const committed = BigInt(p.offset);
                if (committed < 0n) continue;
                const ledger = stored.get(`${t.topic}/${p.partition}`) ?? 0n;
                slotChecks++;
                if (committed > ledger) {
                  ackedBeyond++;
                  ackExamples.push(`${when}: Kafka ${t.topic}/${p.partition} committed offset ${committed} > ledger position ${ledger}`);
                }
              }
            }
          }
          return;
        } catch {
          await sleep(250);
        }
      }
    };

    // Planned restarts of every instance, in order (the resends are put on them).
    const restarts: Restart[] = [];
    if (opts.logDir) mkdirSync(opts.logDir, { recursive: true });
    for (let i = 0; i < instances; i++) sups.push(new Supervisor(configPath, sims.env, restarts, opts.logDir ? join(opts.logDir, `instance-${i}.log`) : undefined));
    for (const s of sups) s.start();
    const livePids = () => sups.map((s) => s.pid).filter((p): p is number => p !== undefined);
    // Who holds and who streams the slot, from Postgres (only with several instances: one
    // process is always the owner).
    if (instances > 1) probe = new SlotProbe(url, slot);
    const kafkaLoad = producer ? new KafkaLoad(producer, rLoad) : undefined;

    // The plan: kills spread over the run (one per slot of time), Postgres restarts, fault windows.
    type Action = { at: number; kind: 'kill' | 'pg'; downMs: number; graceful?: boolean };
    const actions: Action[] = [];
    const span = opts.duration * 1000;
    // Every third restart, counted from a seeded start, is a graceful SIGTERM (a deploy): the
    // rest, two thirds exactly, are SIGKILLs.
    const termFrom = Math.floor(rSchedule() * 3);
    for (let i = 0; i < opts.kills; i++) {
      const slotMs = span / opts.kills;
      const graceful = (i + termFrom) % 3 === 0;
      actions.push({ at: i * slotMs + (0.2 + 0.7 * rSchedule()) * slotMs, kind: 'kill', downMs: Math.round(50 + rSchedule() * 700), graceful });
    }
    for (let i = 0; i < opts.pgRestarts; i++) actions.push({ at: (0.15 + 0.7 * rSchedule()) * span, kind: 'pg', downMs: 0 });
    actions.sort((a, b) => a.at - b.at);
    // Simulator faults: a light background all along (so ambiguous outcomes happen at any
    // time), and windows of heavier faults; every kind comes up in turn, the second at random.
    const background = {
      antchain: { http5xxRate: 0.02, needRetryRate: 0.01, dropAfterCommitRate: 0.02 },
      zhima: { http5xxRate: 0.02, code20000Rate: 0.01, dropAfterCommitRate: 0.02, corruptSignatureRate: 0.01 },
    };
    const kinds = ['http5xx', 'retry', 'hang', 'drop', 'corrupt', 'latency'] as const;
    const windows = Array.from({ length: opts.faultWindows }, (_, i) => {
      const at = rSchedule() * span * 0.85;
      const len = 1500 + rSchedule() * 3500;
      const pickTarget = rSchedule();
      const target = pickTarget < 0.35 ? 'antchain' : pickTarget < 0.7 ? 'zhima' : 'both';
      const antchain: Record<string, number> = { ...background.antchain };
      const zhima: Record<string, number> = { ...background.zhima };
      for (const kind of [kinds[i % kinds.length]!, kinds[Math.floor(rSchedule() * kinds.length)]!]) {
        const v = round(0.05 + rSchedule() * 0.25, 2);
        if (kind === 'http5xx') (antchain.http5xxRate = v), (zhima.http5xxRate = v);
        if (kind === 'retry') (antchain.needRetryRate = v), (antchain.failedNeedRetryRate = v / 2), (zhima.code20000Rate = v);
        if (kind === 'hang') (antchain.hangRate = v / 3), (zhima.hangRate = v / 3);
        if (kind === 'drop') (antchain.dropAfterCommitRate = v), (zhima.dropAfterCommitRate = v);
        if (kind === 'corrupt') zhima.corruptSignatureRate = v;
        if (kind === 'latency') (antchain.latencyMs = 20), (antchain.jitterMs = 200), (zhima.latencyMs = 20), (zhima.jitterMs = 200);
      }
      return { at, len, target, antchain, zhima };
    });
    await sims.antchain.setFaults(background.antchain);
    await sims.zhima.setFaults(background.zhima);
    log(
      `chaos: seed ${opts.seed}; ${opts.duration} s of load at ${opts.rate} ops/s${opts.kafka ? ' (30% of them Kafka records)' : ''}; ${opts.preexisting} pre-existing orders and a backfill; ${opts.kills} connector restarts (SIGKILL, some SIGTERM), ${opts.pgRestarts} Postgres restarts, ${opts.faultWindows} simulator fault windows`,
    );

    const startedAt = Date.now();
    let loadDone = false;
    const loadLoop = (async () => {
      let issued = 0;
      while (Date.now() - startedAt < span) {
        const due = Math.floor(((Date.now() - startedAt) / 1000) * opts.rate);
        while (issued < due) {
          issued++;
          if (kafkaLoad && rLoad() < 0.3) await kafkaLoad.step();
          else await load.step();
        }
        await sleep(5);
      }
      loadDone = true;
    })();

    let kills = 0;
    let terms = 0;
    let pgRestarts = 0;
    const killLog: KillRecord[] = [];
    // Which instance each restart hits: its own PRNG, so the plan above (and the whole
    // single-instance run) is the same for a seed whatever --instances says.
    const rPick = seededRandom(opts.seed ^ 0x1457);
    let sigkillsLeft = actions.filter((a) => a.kind === 'kill' && !a.graceful).length;
    const sigkilledRoles = new Set<KillRole>();
    const scheduleLoop = (async () => {
      for (const a of actions) {
        const wait = startedAt + a.at - Date.now();
        if (wait > 0) await sleep(wait);
        if (a.kind === 'kill') {
          const signal = a.graceful ? 'SIGTERM' : 'SIGKILL';
          let target = 0;
          let role: KillRole = 'owner';
          let before: SlotView | null = null;
          let takeover: Promise<{ ms: number; pid: number } | null> | undefined;
          if (probe) {
            before = await probe.viewRetrying(livePids);
            const p = probe;
            const roleOf = (i: number): KillRole => {
              const pid = sups[i]!.pid;
              if (pid !== undefined && pid === before?.lockPid) return 'owner';
              if (pid === undefined || !p.connected(pid)) return 'starting';
              return before?.lockPid == null ? 'neither' : 'standby';
            };
            target = Math.floor(rPick() * instances);
            // A random instance each time, but the last SIGKILLs of the plan go to a role no
            // SIGKILL has hit yet (waiting up to 10 s for a process in it: the other may still
            // be starting), so every run kills both the owner and a standby.
            if (!a.graceful) {
              const missing = (['owner', 'standby'] as const).filter((r) => !sigkilledRoles.has(r));
              if (missing.length >= sigkillsLeft && !missing.includes(roleOf(target) as 'owner' | 'standby')) {
                const until = Date.now() + 10_000;
                for (;;) {
                  const has = missing.map((r) => sups.findIndex((_, i) => roleOf(i) === r)).find((i) => i >= 0);
                  if (has !== undefined) {
                    target = has;
                    break;
                  }
                  if (Date.now() > until) break;
                  await sleep(100);
                  before = (await probe.viewRetrying(livePids)) ?? before;
                }
              }
              sigkillsLeft--;
            }
            role = roleOf(target);
            if (!a.graceful) sigkilledRoles.add(role);
          }
          const at = Date.now();
          await sups[target]!.kill(
            a.downMs,
            () => checkSlot(`${a.graceful ? 'SIGTERM' : 'kill'} ${kills + 1}`),
            a.graceful,
            (killedAt, pid) => {
              if (probe && role === 'owner' && pid !== undefined) takeover = probe.awaitTakeover(killedAt, pid, before?.walsenderPid ?? null, livePids, FAILOVER_TIMEOUT_MS);
            },
          );
          kills++;
          if (a.graceful) terms++;
          // The next fault waits for the slot to be streamed again, so it times this takeover alone.
          const t = takeover ? await takeover : null;
          const rec: KillRecord = { signal, instance: target, role, at_s: round((at - startedAt) / 1000, 1), failover_s: t ? round(t.ms / 1000, 3) : null };
          if (t) rec.taken_over_by = t.pid === sups[target]!.pid ? 'restarted' : 'standby';
          killLog.push(rec);
          const who = probe ? ` instance ${target} (${role})${takeover ? (t ? `, slot streamed by the ${rec.taken_over_by} ${t.ms} ms after` : `, NO takeover within ${FAILOVER_TIMEOUT_MS / 1000} s`) : ''}` : '';
          log(`  t+${round((Date.now() - startedAt) / 1000, 1)}s ${signal} #${kills}${who} (down ${a.downMs} ms)`);
        } else {
          await server!.restart();
          pgRestarts++;
          log(`  t+${round((Date.now() - startedAt) / 1000, 1)}s Postgres restarted`);
          await checkSlot(`after Postgres restart ${pgRestarts}`);
        }
      }
    })();

    let windowsApplied = 0;
    const windowLoop = Promise.all(
      windows.map(async (w) => {
        await sleep(w.at);
        const targets = w.target === 'both' ? [sims!.antchain, sims!.zhima] : [w.target === 'antchain' ? sims!.antchain : sims!.zhima];
        for (const t of targets) await t.setFaults(t.kind === 'antchain' ? w.antchain : w.zhima).catch(() => {});
        windowsApplied++;
        await sleep(w.len);
        // Back to the background (a window's own keys to 0 first: latency, hang…).
        for (const t of targets) await t.clearFaults().then(() => t.setFaults(background[t.kind])).catch(() => {});
      }),
    );

    const sabotage = (async () => {
      if (!opts.sabotage) return;
      await sleep(span / 2);
      log(`  t+${round((Date.now() - startedAt) / 1000, 1)}s SABOTAGE: ${opts.sabotage}`);
      if (opts.sabotage === 'lost') await sims!.zhima.reset();
      else {
        const other = { ...raw, project: `${PROJECT}-other`, source: { ...(raw.source as object), slot: 'saboteur_slot' }, ledger: { ...(raw.ledger as object), schema: 'saboteur' } };
        saboteur = spawnConnector(writeConfigFile(other), sims!.env);
      }
    })();

    // A backfill of the pre-existing orders while the stream changes them: started a fifth
    // into the load, run again until it completes (a Postgres restart can fail it).
    let backfillRuns = 0;
    let backfillDone = false;
    let backfillTail = '';
    const backfillLoop = (async () => {
      if (opts.preexisting === 0) return;
      await sleep(span / 5);
      const deadline = Date.now() + span + opts.drainTimeout * 1000;
      while (!backfillDone && Date.now() < deadline) {
        backfillRuns++;
        // The connector under test: ORDER_RELAY_BENCH_CLI names another checkout's, as for spawnConnector.
        const child = spawn(process.execPath, [process.env.ORDER_RELAY_BENCH_CLI || CLI, 'backfill', '-c', configPath], { env: { ...process.env, ...sims!.env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-2000)));
        child.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-2000)));
        const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
        backfillTail = out;
        if (code === 0) backfillDone = true;
        else await sleep(500);
      }
      log(`  t+${round((Date.now() - startedAt) / 1000, 1)}s backfill ${backfillDone ? 'done' : 'NOT done'} after ${backfillRuns} run(s)`);
    })();

    const periodic = (async () => {
      while (!loadDone) {
        await sleep(2000);
        await checkSlot('periodic');
      }
    })();

    await Promise.all([loadLoop, scheduleLoop, windowLoop, periodic, sabotage]);
    await load.settle();
    await sims.antchain.clearFaults();
    await sims.zhima.clearFaults();
    log(
      `chaos: load done (${load.count} orders, ${load.ops} operations, ${load.errors} failed while Postgres restarted` +
        `${kafkaLoad ? `; ${kafkaLoad.records} Kafka records` : ''}); draining`,
    );

    // Drain: every expected event in the ledger and no delivery pending.
    const expected = await expectedEvents(pool, kafkaLoad);
    // Events an unacknowledged Kafka send may or may not have caused: neither expected nor unexpected.
    const tolerated = new Set<string>();
    for (const no of kafkaLoad?.uncertain ?? []) {
      for (const code of ['TRADE_SUCCESS', 'TRADE_CONFIRM', 'REFUND_SUCCESS']) tolerated.add(eventId([PROJECT, no, code]));
    }
    const drainDeadline = Date.now() + opts.drainTimeout * 1000;
    await backfillLoop;
    let drained = false;
    while (Date.now() < drainDeadline) {
      try {
        if (await ledgerExists(pool, schema)) {
          const { rows } = await pool.query<{ have: number; pending: number; past: number }>(drainQuery(schema), [[...expected.keys()]]);
          if (rows[0]!.have === expected.size && rows[0]!.pending === 0 && rows[0]!.past === 0) {
            drained = true;
            break;
          }
        }
      } catch {
        /* ledger briefly unavailable */
      }
      await sleep(500);
    }
    await checkSlot('after drain');
    await saboteur?.stop(3000);

    // --- invariants ------------------------------------------------------------------------------
    const [a, z] = await Promise.all([sims.antchain.stats<AntchainStats>(), sims.zhima.stats<ZhimaStats>()]);
    const delivery = await ledgerStates(pool, schema);
    const ledgerIds = new Set((await pool.query<{ id: string }>(`SELECT encode(id, 'hex') AS id FROM ${schema}.log`)).rows.map((r) => r.id));
    // Every (event, sink) pair of the log against its records: the cursor passed it with no
    // record, it has two records, or it has one while still past the cursor.
    const audit = (await pool.query<{ sink: string; pairs: number; delivered: number; unrecorded: number; repeated: number; ahead: number }>(deliveryAudit(schema))).rows;
    const ledgerInconsistent = audit.reduce((n, r) => n + r.unrecorded + r.repeated + r.ahead, 0);
    const effects = { antchain: new Set(a.effectKeys), zhima: new Set(z.effectKeys) };
    const examples: Record<string, string[]> = { lost: [], duplicates: [], order_violations: [], acked_beyond_ledger: ackExamples.slice(0, 5), key_conflicts: [], ledger_inconsistent: [] };
    for (const r of audit) {
      if (r.unrecorded + r.repeated + r.ahead > 0) examples.ledger_inconsistent!.push(`${r.sink}: ${r.pairs} pairs, ${r.unrecorded} passed by the cursor unrecorded, ${r.repeated} recorded twice, ${r.ahead} recorded but past the cursor`);
    }

    let deliveriesExpected = 0;
    let lost = 0;
    let parked = 0;
    const parkedReasons: Record<string, number> = {};
    for (const e of expected.values()) {
      for (const sink of e.sinks) {
        deliveriesExpected++;
        if (effects[sink].has(e.id)) continue;
        const d = delivery.get(`${sink}/${e.id}`);
        if (d && (d.status === 'rejected' || d.status === 'not_applicable') && (d.last_code || d.last_message)) {
          parked++;
          const reason = `${sink} ${d.status} ${d.last_code ?? ''}`.trim();
          parkedReasons[reason] = (parkedReasons[reason] ?? 0) + 1;
          continue;
        }
        lost++;
        if (examples.lost!.length < 5) examples.lost!.push(`${sink} ${e.code} order ${e.orderNo} (${e.id}): ledger ${ledgerIds.has(e.id) ? d ? `${d.record} ${d.status} ${d.last_code ?? ''}`.trim() : 'no record of the delivery (the log does not name the sink, or the cursor passed it unrecorded)' : 'has no event'}`);
      }
    }

    let duplicates = 0;
    for (const [sink, keys] of [['antchain', a.effectKeys], ['zhima', z.effectKeys]] as const) {
      const seen = new Set<string>();
      for (const k of keys) {
        if (seen.has(k)) {
          duplicates++;
          if (examples.duplicates!.length < 5) examples.duplicates!.push(`${sink}: key ${k} accepted twice`);
        }
        seen.add(k);
        if (!expected.has(k) && !tolerated.has(k)) {
          duplicates++;
          if (examples.duplicates!.length < 5) examples.duplicates!.push(`${sink}: key ${k} is no expected event (a business event under another key?)`);
        }
      }
    }
    for (const id of ledgerIds) {
      if (!expected.has(id) && !tolerated.has(id)) {
        duplicates++;
        if (examples.duplicates!.length < 5) examples.duplicates!.push(`ledger event ${id} is no expected event`);
      }
    }

    let orderViolations = 0;
    for (const v of a.violations) {
      if (v.reason !== 'ORDER_BEFORE_TRADE_SUCCESS') continue;
      orderViolations++;
      if (examples.order_violations!.length < 5) examples.order_violations!.push(`antchain ${v.code} of order ${v.orderNo} before its TRADE_SUCCESS`);
    }
    const bought = new Set<string>();
    for (const eff of z.effectsList) {
      const e = expected.get(eff.out_biz_no);
      if (!e) continue;
      if (e.code === 'TRADE_SUCCESS') bought.add(e.orderNo);
      else if (!bought.has(e.orderNo)) {
        orderViolations++;
        if (examples.order_violations!.length < 5) examples.order_violations!.push(`zhima ${e.code} of order ${e.orderNo} before its TRADE_SUCCESS`);
      }
    }
    const keyConflicts = a.violations.filter((v) => v.reason === 'REQUEST_ID_CONFLICT').length + z.conflictingDuplicates;

    // Repeats per restart (a figure, not an invariant): sink-qualified keys, the gateways' clocks.
    const appliedAt = new Map<string, number>([
      ...a.effectList.map((e) => [`antchain/${e.requestId}`, Date.parse(e.at)] as [string, number]),
      ...z.effectsList.map((e) => [`zhima/${e.out_biz_no}`, Date.parse(e.time)] as [string, number]),
    ]);
    const repeats = [
      ...a.duplicateRequests.map((d) => ({ key: `antchain/${d.key}`, at: Date.parse(d.at) })),
      ...z.duplicateRequests.map((d) => ({ key: `zhima/${d.key}`, at: Date.parse(d.at) })),
    ];
    const resends = resendsPerKill(restarts, repeats, appliedAt);
    if (resends.total !== a.duplicates + z.duplicates) log(`chaos: ${resends.total} repeats listed by the simulators, ${a.duplicates + z.duplicates} counted`);
    if (keyConflicts) examples.key_conflicts!.push(`antchain ${a.violations.filter((v) => v.reason === 'REQUEST_ID_CONFLICT').length}, zhima ${z.conflictingDuplicates}`);

    // Several instances: the roles killed and the takeovers' times.
    const multi: Pick<ChaosReport, 'kills_by_role' | 'failover_s' | 'handover_s' | 'failover_timeouts' | 'kill_log'> = {};
    if (probe) {
      const byRole = () => ({ owner: 0, standby: 0, neither: 0, starting: 0 });
      multi.kills_by_role = { SIGKILL: byRole(), SIGTERM: byRole() };
      for (const k of killLog) multi.kills_by_role[k.signal][k.role]++;
      const stats = (xs: number[]): FailoverStats => ({
        count: xs.length,
        mean: xs.length ? round(xs.reduce((x, y) => x + y, 0) / xs.length, 3) : null,
        max: xs.length ? Math.max(...xs) : null,
      });
      const ownerKills = (sig: 'SIGKILL' | 'SIGTERM') => killLog.filter((k) => k.signal === sig && k.role === 'owner');
      const killed = ownerKills('SIGKILL');
      const f = stats(killed.flatMap((k) => (k.failover_s === null ? [] : [k.failover_s])));
      multi.failover_s = {
        ...f,
        target_max: FAILOVER_TARGET_S,
        met: f.max !== null && f.max <= FAILOVER_TARGET_S,
        by_standby: killed.filter((k) => k.taken_over_by === 'standby').length,
        by_restarted: killed.filter((k) => k.taken_over_by === 'restarted').length,
      };
      multi.handover_s = stats(ownerKills('SIGTERM').flatMap((k) => (k.failover_s === null ? [] : [k.failover_s])));
      const timeouts = killLog.filter((k) => k.role === 'owner' && k.failover_s === null);
      multi.failover_timeouts = timeouts.length;
      if (timeouts.length) examples.failover = timeouts.slice(0, 5).map((k) => `${k.signal} of the owner (instance ${k.instance}) at t+${k.at_s}s: no other process streamed the slot within ${FAILOVER_TIMEOUT_MS / 1000} s`);
      multi.kill_log = killLog;
    }
    const ok =
      lost === 0 && duplicates === 0 && orderViolations === 0 && ackedBeyond === 0 && keyConflicts === 0 && ledgerInconsistent === 0 && drained &&
      kills === opts.kills && pgRestarts === opts.pgRestarts && (opts.preexisting === 0 || backfillDone) && (multi.failover_timeouts ?? 0) === 0;
    for (const k of Object.keys(examples)) if (examples[k]!.length === 0) delete examples[k];
    if (!drained) examples.drain = [`not drained within ${opts.drainTimeout} s`];
    if (opts.preexisting > 0 && !backfillDone) examples.backfill = [`no backfill run completed: ${backfillTail.split('\n').filter(Boolean).slice(-2).join(' | ').slice(0, 400)}`];
    const unplanned = sups.flatMap((s) => s.unplanned);
    if (unplanned.length) examples.unplanned_exits = unplanned.slice(0, 3).map((u) => `exit ${u.code ?? u.signal}: ${u.tail.split('\n').filter(Boolean).slice(-2).join(' | ').slice(0, 400)}`);
    return {
      seed: opts.seed,
      ok,
      kills,
      terms,
      backfill_runs: backfillRuns,
      backfill_done: backfillDone,
      bulk_transactions: load.bulks,
      pg_restarts: pgRestarts,
      fault_windows: windowsApplied,
      unplanned_exits: unplanned.length,
      orders: load.count,
      events_expected: expected.size,
      deliveries_expected: deliveriesExpected,
      effects: a.effects + z.effects,
      parked,
      lost,
      duplicates,
      order_violations: orderViolations,
      acked_beyond_ledger: ackedBeyond,
      key_conflicts: keyConflicts,
      ledger_inconsistent: ledgerInconsistent,
      ledger_audit: audit,
      kafka_records: kafkaLoad?.records ?? 0,
      slot_checks: slotChecks,
      idempotent_repeats: a.duplicates + z.duplicates,
      resends_per_kill: resends,
      faults_injected: { antchain: a.faultsInjected, zhima: z.faultsInjected },
      parked_reasons: parkedReasons,
      drained,
      seconds: round((Date.now() - t0) / 1000, 1),
      examples,
      instances,
      ...multi,
      replay:
        `npm run chaos -- --seed ${opts.seed} --duration ${opts.duration} --kills ${opts.kills} --preexisting ${opts.preexisting} --pg-restarts ${opts.pgRestarts} ` +
        `--fault-windows ${opts.faultWindows} --rate ${opts.rate} --drain-timeout ${opts.drainTimeout}${opts.kafka ? ' --kafka' : ' --no-kafka'}${instances > 1 ? ` --instances ${instances}` : ''}${opts.sabotage ? ` --sabotage ${opts.sabotage}` : ''}`,
    };
  } finally {
    process.removeListener('SIGINT', onSigint);
    await Promise.all(sups.map((s) => s.stop().catch(() => {})));
    await probe?.close();
    for (const p of pools) await p.end().catch(() => {});
    await producer?.disconnect().catch(() => {});
    await kafkaAdmin?.disconnect().catch(() => {});
    await mock?.stop().catch(() => {});
    await sims?.stop().catch(() => {});
    killAllChildren();
    await server?.stop().catch(() => {});
  }
}

export function renderReport(r: ChaosReport): string {
  const inv = (v: number) => (v === 0 ? 'ok' : 'BROKEN');
  const rows: Array<[string, string | number, string]> = [
    ['seed', r.seed, ''],
    ['connector restarts (SIGKILL + SIGTERM)', `${r.kills - r.terms} + ${r.terms}`, ''],
    ['backfill during the load', `${r.backfill_done ? 'done' : 'NOT done'} (${r.backfill_runs} run(s))`, r.backfill_done || r.backfill_runs === 0 ? '' : 'BROKEN'],
    ['large concurrent transactions', r.bulk_transactions, ''],
    ['pg_restarts', r.pg_restarts, ''],
    ['simulator fault windows', r.fault_windows, ''],
    ['unplanned connector exits (restarted)', r.unplanned_exits, ''],
    ['orders', r.orders, ''],
    ['Kafka records', r.kafka_records, ''],
    ['events_expected', r.events_expected, ''],
    ['deliveries_expected', r.deliveries_expected, ''],
    ['effects (distinct keys accepted)', r.effects, ''],
    ['parked (with reason)', r.parked, ''],
    ['idempotent repeats answered by the simulators', r.idempotent_repeats, ''],
    [
      'resends per restart, mean / max (of keys applied before the kill)',
      `${r.resends_per_kill.mean ?? '-'} / ${r.resends_per_kill.max ?? '-'} (${r.resends_per_kill.applied_before_kill.mean ?? '-'} / ${r.resends_per_kill.applied_before_kill.max ?? '-'})`,
      '',
    ],
    ['slot checks', r.slot_checks, ''],
    ['lost', r.lost, inv(r.lost)],
    ['duplicates', r.duplicates, inv(r.duplicates)],
    ['order_violations', r.order_violations, inv(r.order_violations)],
    ['acked_beyond_ledger', r.acked_beyond_ledger, inv(r.acked_beyond_ledger)],
    ['key_conflicts', r.key_conflicts, inv(r.key_conflicts)],
    ['ledger_inconsistent (pairs unrecorded, recorded twice, or ahead of the cursor)', r.ledger_inconsistent, inv(r.ledger_inconsistent)],
    ['drained', String(r.drained), r.drained ? 'ok' : 'BROKEN'],
  ];
  if (r.instances > 1) {
    const role = (x: Record<KillRole, number>) => `${x.owner} / ${x.standby} / ${x.starting}${x.neither ? ` (+${x.neither} up while no process held the slot)` : ''}`;
    const f = r.failover_s!;
    rows.splice(
      2,
      0,
      ['connector instances', r.instances, ''],
      ['SIGKILLs of the slot owner / a standby / a process still starting', role(r.kills_by_role!.SIGKILL), ''],
      ['SIGTERMs of the slot owner / a standby / a process still starting', role(r.kills_by_role!.SIGTERM), ''],
      [
        `failover_s mean / max (SIGKILL of the owner -> another process streams the slot; target max <= ${f.target_max} s)`,
        `${f.mean ?? '-'} / ${f.max ?? '-'} (${f.count}: ${f.by_standby} by the standby, ${f.by_restarted} by the restarted one)`,
        f.max === null ? '' : f.met ? 'ok' : 'OVER TARGET',
      ],
      ['handover_s mean / max (SIGTERM of the owner -> another process streams)', `${r.handover_s!.mean ?? '-'} / ${r.handover_s!.max ?? '-'} (${r.handover_s!.count})`, ''],
      ['owner kills with no takeover within 30 s', r.failover_timeouts!, inv(r.failover_timeouts!)],
    );
  }
  const lines = [table(['', 'value', 'invariant'], rows)];
  if (r.kill_log?.length) {
    lines.push(
      `restarts: ${r.kill_log.map((k, i) => `#${i + 1} ${k.signal === 'SIGTERM' ? 'TERM' : 'KILL'} i${k.instance} ${k.role}${k.failover_s !== null ? ` ${k.failover_s}s${k.taken_over_by === 'restarted' ? '(r)' : ''}` : ''}`).join(', ')}`,
    );
  }
  const rk = r.resends_per_kill;
  lines.push(
    `resends per restart (repeats of applied keys arriving between restart k and k+1; before the first: ${rk.before_first_kill}): ` +
      `${rk.per_kill.map((p, i) => `#${i + 1} ${p.signal === 'SIGTERM' ? 'TERM' : 'KILL'} ${p.resends}${p.applied_before_kill !== p.resends ? ` (${p.applied_before_kill})` : ''}`).join(', ') || 'no restarts'}; ` +
      `SIGKILL mean ${rk.by_signal.SIGKILL.mean ?? '-'} max ${rk.by_signal.SIGKILL.max ?? '-'}, SIGTERM mean ${rk.by_signal.SIGTERM.mean ?? '-'} max ${rk.by_signal.SIGTERM.max ?? '-'}`,
  );
  lines.push(`faults injected: antchain ${JSON.stringify(r.faults_injected.antchain)}; zhima ${JSON.stringify(r.faults_injected.zhima)}`);
  if (Object.keys(r.parked_reasons).length) lines.push(`parked: ${JSON.stringify(r.parked_reasons)}`);
  for (const [k, v] of Object.entries(r.examples)) lines.push(`${k}: ${v.join('; ')}`);
  lines.push(`${r.ok ? 'PASS' : 'FAIL'}: seed ${r.seed}, ${r.seconds} s${r.ok ? '' : ` — replay with: ${r.replay}`}`);
  return lines.join('\n');
}
