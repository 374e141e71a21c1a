import type pg from 'pg';
import type { BusinessEvent, Row } from '../core/events.js';
import { FencedError, type BadInput, type Checkpoint, type Fence } from '../core/source.js';
import type { AttemptInfo } from '../core/sink.js';
import { instanceName, keepLease } from '../core/lease.js';
import { storableText } from '../core/trust.js';
import { encodeAppend } from './append-encode.js';
import * as sql from './sql.js';

/** An event with the sinks that take it, ready to be stored. */
export interface EventToStore {
  event: BusinessEvent;
  sinks: string[];
  position: string;
  committedAt: string;
}

export interface AppendInput {
  source: string;
  events: EventToStore[];
  orders: Array<{ orderNo: string; row: Row }>;
  /** `rowKey`: the source row the input is (see `Classifier.rowKeyOf`); an unresolved row is parked once. */
  bad: Array<BadInput & { rowKey?: string | undefined }>;
  checkpoints: Checkpoint[];
  /**
   * Sinks whose dispatcher takes new events straight from the append (`AppendResult.handOver`):
   * for those, the append also says which new events wait behind an open delivery of their order.
   */
  handOver?: string[];
  /** Written only while this is still the name's epoch (see `claimOwner`). */
  fence?: Fence | undefined;
}

/** A new event as appended, for a dispatcher that takes it without reading the log. */
export interface LogEntry {
  seq: number;
  shard: number;
  eventId: string;
  orderKey: string;
  event: BusinessEvent;
  committedAt: Date;
  /** Sinks for which its order has an open delivery (an exception) it must wait behind. */
  blocked: ReadonlySet<string>;
  sinks: readonly string[];
}

export interface AppendResult {
  /** Events new to the ledger (the rest were already there: same id). */
  inserted: number;
  /** Of those, how many per event code. */
  stored: Record<string, number>;
  /** New deliveries per sink: the new events each sink takes. */
  deliveries: Record<string, number>;
  /**
   * The new events in seq order, and the highest seq taken before them: every event up to
   * `after` was committed before this append (appends take seqs under one lock).
   */
  appended: { after: number; entries: LogEntry[] };
  /** The sinks whose open deliveries the append looked up (`LogEntry.blocked` is complete for them). */
  handOver: string[];
}

/** An exception (a row in deliveries) claimed for an attempt. */
export interface ClaimedDelivery {
  id: string;
  eventId: string;
  sink: string;
  attempt: number;
  event: BusinessEvent;
  committedAt: Date;
}

/** How one attempt of an exception ended, as the ledger records it. */
export interface Settlement {
  eventId: string;
  sink: string;
  deliveryId: string;
  attempt: number;
  /** New status: pending (retry later), delivered, rejected (parked), not_applicable. */
  status: 'pending' | 'delivered' | 'rejected' | 'not_applicable';
  /** For `pending`: when to try again, in ms from now. */
  delayMs?: number;
  outcome: string;
  code?: string | undefined;
  message?: string | undefined;
  result?: Record<string, unknown> | undefined;
  info?: AttemptInfo | undefined;
}

/** What a sink settled from the log, written as its cursors pass (`flushLog`). */
export interface LogFlush {
  sink: string;
  outcomes: Array<{ seq: number; shard: number; status: 'delivered' | 'not_applicable'; attempts: number; info?: AttemptInfo | undefined; result?: Record<string, unknown> | undefined; message?: string | undefined }>;
  exceptions: Array<{
    entry: LogEntry;
    status: 'pending' | 'rejected';
    attempts: number;
    delayMs: number;
    code?: string | undefined;
    message?: string | undefined;
  }>;
  attempts: Array<{ seq: number; attempt: number; outcome: string; info?: AttemptInfo | undefined; code?: string | undefined; message?: string | undefined }>;
  cursors: Array<{ shard: number; seq: number }>;
}

/** A PostgreSQL integer array's text ('{1,2,3}'). */
function intList(text: string): number[] {
  return text.length <= 2 ? [] : text.slice(1, -1).split(',').map(Number);
}

/** A pool, or one client inside a transaction the caller controls (backfill pages). */
export type Queryable = pg.Pool | pg.PoolClient;

export interface LedgerOptions {
  attemptHistory?: number;
  /**
   * Where the prepared append and flush run, when not on `pool`: connections that keep one
   * generic plan per statement (plan_cache_mode = force_generic_plan).
   */
  prepared?: Queryable;
}

/**
 * The durable record (see `sql.ts` for the model). Every state change is one statement or
 * one short transaction, so a crash between any two calls leaves the ledger consistent.
 */
export function createLedger<Q extends Queryable = pg.Pool>(pool: Q, schema: string, options: LedgerOptions = {}) {
  const s = schema;
  const hot = options.prepared ?? pool;
  const lockClass = hash32(`order-relay:${schema}`);
  const history = options.attemptHistory ?? 20;
  const named = (name: string, text: string, values: unknown[]): pg.QueryConfig => ({ name: `order_relay.${s}.${name}`, text, values });
  const appendText = sql.append(s, false);
  const appendHandOverText = sql.append(s, true);
  const readText = sql.readLog(s);
  const flushText = sql.flushLog(s);
  const settleText = sql.settleExceptions(s);

  // Sink names to bits of the log's `sinks` mask: registered once, never renumbered. On a
  // client inside the caller's transaction a registration joins that transaction and holds
  // other writers until it commits: register first (`sinkBit`), as backfill does.
  let bits: Map<string, number> | null = null;
  async function sinkBits(names: readonly string[]): Promise<Map<string, number>> {
    if (bits && names.every((n) => bits!.has(n))) return bits;
    for (let tries = 0; ; tries++) {
      const known = new Map((await pool.query<{ name: string; bit: number }>(sql.loadSinks(s))).rows.map((r) => [r.name, r.bit]));
      const missing = names.filter((n) => !known.has(n));
      if (missing.length === 0) return (bits = known);
      try {
        for (const name of missing) await pool.query(sql.registerSink(s), [name]);
      } catch (err) {
        // Two processes registering at once may pick the same bit: look again.
        if ((err as { code?: string }).code !== '23505' || tries > 5) throw err;
      }
    }
  }

  // The shard count is fixed when the ledger is made.
  let shardsKnown: number | null = null;
  async function shardCount(): Promise<number> {
    if (shardsKnown !== null) return shardsKnown;
    const { rows } = await pool.query<{ value: string }>(sql.ledgerSetting(s), ['shards']);
    return (shardsKnown = Number(rows[0]!.value));
  }

  /** Throws FencedError unless every checkpoint with an `expected` position finds exactly that one stored; under the append lock. */
  async function checkExpected(db: pg.ClientBase | Queryable, source: string, checkpoints: readonly Checkpoint[]): Promise<void> {
    const expecting = checkpoints.filter((c) => c.expected !== undefined);
    if (expecting.length === 0) return;
    const { rows } = await db.query<{ stream: string; position: string }>(sql.checkpointsOf(s), [source, expecting.map((c) => c.stream)]);
    const stored = new Map(rows.map((r) => [r.stream, r.position]));
    for (const c of expecting) {
      const now = stored.get(c.stream) ?? null;
      if (now !== c.expected) {
        throw new FencedError({ name: `${source}:${c.stream}`, epoch: 0 }, null, `${source} ${c.stream}: the ledger holds position ${now ?? '(none)'}, this writer read ${c.expected ?? '(none)'}: another instance wrote the stream since (a rebalance); this write was refused`);
      }
    }
  }

  /** Throws FencedError unless `fence` is still its name's epoch; in the append's transaction, after its lock. */
  async function checkFence(db: pg.ClientBase | Queryable, fence: Fence): Promise<void> {
    const { rows } = await db.query<{ epoch: string }>(sql.fenceCheck(s), [fence.name]);
    const current = rows[0] ? Number(rows[0].epoch) : null;
    if (current !== fence.epoch) throw new FencedError(fence, current);
  }

  /**
   * Serialises an append now and returns the function that writes it: the caller can
   * prepare the next batch while the previous one is still being written.
   */
  function prepareAppend(input: AppendInput): () => Promise<AppendResult> {
    const names = [...new Set(input.events.flatMap((e) => e.sinks))];
    // The seq before the batch is known only under the append lock: it is the first value.
    const serialise = (b: Map<string, number>) => {
      const params = encodeAppend(input, b);
      const handOver = input.handOver?.length ? input.handOver : null;
      return handOver ? named('append_handover', appendHandOverText, [...params, handOver]) : named('append', appendText, params);
    };
    // Bits are known after the first batch: serialise now, off the write's critical path.
    const ready = bits && names.every((n) => bits!.has(n)) ? serialise(bits) : null;
    type Raw = { inserted: number; seqs: string; shards: string; blocked: string[] };
    return async () => {
      const query = ready ?? serialise(await sinkBits(names));
      const lock = sql.appendLock(lockClass, s);
      let raw: Raw;
      let prev: number;
      const seqBefore = (r: pg.QueryResult<{ prev: string; is_called: boolean }>) => (r.rows[0]!.is_called ? Number(r.rows[0]!.prev) : 0);
      if ('release' in hot) {
        // A client in the caller's transaction (a backfill page): the lock holds until its commit.
        const results = (await hot.query(lock)) as unknown as Array<pg.QueryResult<{ prev: string; is_called: boolean }>>;
        if (input.fence) await checkFence(hot, input.fence);
        await checkExpected(hot, input.source, input.checkpoints);
        prev = seqBefore(results[1]!);
        query.values![1] = prev;
        raw = (await hot.query<Raw>(query)).rows[0]!;
      } else {
        const client = await hot.connect();
        // pg-pool drops its error listener from a checked-out client: a connection terminated
        // between two of these statements (a Postgres restart) would be an uncaught 'error'
        // event and kill the process. The failed statement rejects; the client is discarded.
        let broken: Error | undefined;
        const onError = (err: Error) => (broken = err);
        client.on('error', onError);
        try {
          const results = (await client.query(`BEGIN; ${lock}`)) as unknown as Array<pg.QueryResult<{ prev: string; is_called: boolean }>>;
          if (input.fence) await checkFence(client, input.fence);
          await checkExpected(client, input.source, input.checkpoints);
          prev = seqBefore(results[2]!);
          query.values![1] = prev;
          raw = (await client.query<Raw>(query)).rows[0]!;
          await client.query('COMMIT');
        } catch (err) {
          broken ??= err instanceof Error ? err : new Error(String(err));
          await client.query('ROLLBACK').catch(() => {});
          throw err;
        } finally {
          client.removeListener('error', onError);
          client.release(broken);
        }
      }
      const stored: Record<string, number> = {};
      const deliveries: Record<string, number> = {};
      const blocked = new Map<number, Set<string>>();
      for (const b of raw.blocked) {
        const [seq, sink] = b.split(' ') as [string, string];
        const set = blocked.get(Number(seq));
        if (set) set.add(sink);
        else blocked.set(Number(seq), new Set([sink]));
      }
      const none: ReadonlySet<string> = new Set();
      const seqs = intList(raw.seqs);
      const shards = intList(raw.shards);
      const entries = seqs.map((seq, i): LogEntry => {
        const e = input.events[seq - prev - 1]!;
        stored[e.event.code] = (stored[e.event.code] ?? 0) + 1;
        for (const sink of e.sinks) deliveries[sink] = (deliveries[sink] ?? 0) + 1;
        return { seq, shard: shards[i]!, eventId: e.event.id, orderKey: e.event.orderKey, event: e.event, committedAt: new Date(e.committedAt), blocked: blocked.get(seq) ?? none, sinks: e.sinks };
      });
      return { inserted: raw.inserted, stored, deliveries, appended: { after: prev, entries }, handOver: input.handOver ?? [] };
    };
  }

  return {
    schema,
    pool,
    lockClass,

    async loadCheckpoints(source: string): Promise<Checkpoint[]> {
      const { rows } = await pool.query<Checkpoint>(sql.loadCheckpoints(s), [source]);
      return rows;
    },

    async loadOrders(orderNos: string[]): Promise<Map<string, Row>> {
      const map = new Map<string, Row>();
      if (orderNos.length === 0) return map;
      const { rows } = await pool.query<{ order_no: string; row: Row }>(sql.loadOrders(s), [orderNos]);
      for (const r of rows) map.set(r.order_no, r.row);
      return map;
    },

    /** Events, order rows, parked input and checkpoints: one transaction. */
    append(input: AppendInput): Promise<AppendResult> {
      return prepareAppend(input)();
    },

    prepareAppend,

    sinkBit: async (sink: string) => (await sinkBits([sink])).get(sink)!,

    /** Takes the next epoch of `name` for this process (`holder`): appends fenced by older ones are refused from now on. */
    async claimOwner(name: string, holder: string): Promise<Fence> {
      const { rows } = await pool.query<{ epoch: string }>(sql.claimOwner(s), [name, holder]);
      return { name, epoch: Number(rows[0]!.epoch) };
    },

    /**
     * This process's lease connection for delivering `sink` (see sql.ts, SHARD_KEY): it joins
     * the sink's members at once, then takes and gives shards (`take`, `give`). Every shard
     * it holds is lost together when that connection fails (`lost` settles), or when it
     * stays silent past `leaseMs` (a frozen process: the server ends the session). Two
     * dispatchers of one shard would both read the log from the same cursors and send
     * everything twice; the epochs taken with each shard fence every write (`ShardFence`).
     */
    async shardLeases(sink: string, leaseMs = 10_000, holder = instanceName()): Promise<ShardLeases> {
      if ('release' in pool) throw new Error('shardLeases needs a pool, not a client in a transaction');
      const bit = await sinkBits([sink]).then((b) => b.get(sink)!);
      const shards = await shardCount();
      const base = sql.shardKeyBase(bit);
      const client = await (pool as pg.Pool).connect();
      let lost!: (err: Error) => void;
      const lostP = new Promise<Error>((r) => (lost = r));
      const onError = (err: Error) => lost(err);
      client.on('error', onError);
      let aliveAt = Date.now();
      let stopLease = () => {};
      try {
        await client.query(`SET application_name = '${`${SHARD_LEASE_APP} ${holder}`.slice(0, 63).replaceAll("'", "''")}'`);
        await client.query(sql.joinMembers, [lockClass, sql.MEMBER_KEY + bit]);
        stopLease = await keepLease(client, leaseMs, lost, () => (aliveAt = Date.now()));
      } catch (err) {
        client.removeListener('error', onError);
        await endClient(client, err as Error);
        throw err;
      }
      client.once('end', () => lost(new Error('the connection holding the shards ended')));
      void lostP.then(() => stopLease());
      const held = new Map<number, number>();
      let fenceCache: ShardFence | null = null;
      return {
        shards,
        lost: lostP,
        held: () => held,
        fresh: () => Date.now() - aliveAt < leaseMs * 0.75,
        fence() {
          fenceCache ??= { names: [...held.keys()].map((k) => sql.shardOwnerName(sink, k)), epochs: [...held.values()] };
          return fenceCache;
        },
        async members() {
          const { rows } = await client.query<{ n: number }>(sql.countMembers, [lockClass, sql.MEMBER_KEY + bit]);
          aliveAt = Date.now();
          return rows[0]!.n;
        },
        async take(candidates: readonly number[], max: number) {
          const want = candidates.filter((x) => !held.has(x) && x >= 0 && x < shards);
          if (want.length === 0 || max <= 0) return [];
          const { rows } = await client.query<{ shard: number }>(sql.tryShards, [lockClass, base, want, max]);
          const got = rows.map((r) => r.shard);
          if (got.length === 0) return [];
          // Locked first, then the epochs: a write fenced by the old owner's epochs is refused from here on.
          const claimed = await client.query<{ name: string; epoch: string }>(sql.claimOwners(s), [got.map((x) => sql.shardOwnerName(sink, x)), holder]);
          const epochs = new Map(claimed.rows.map((r) => [r.name, Number(r.epoch)]));
          for (const x of got) held.set(x, epochs.get(sql.shardOwnerName(sink, x))!);
          fenceCache = null;
          aliveAt = Date.now();
          return got;
        },
        async give(list: readonly number[]) {
          const mine = list.filter((x) => held.has(x));
          if (mine.length === 0) return;
          for (const x of mine) held.delete(x);
          fenceCache = null;
          await client.query(sql.giveShards, [lockClass, base, mine]);
        },
        async release() {
          stopLease();
          held.clear();
          fenceCache = null;
          client.removeListener('error', onError);
          // A connection already dying (its session ended by the lease) still emits 'error':
          // unheard, that would end the process.
          client.on('error', () => {});
          // Its session ends with the client, and every lock with it.
          await endClient(client);
        },
      };
    },

    /** Which instance holds each shard of `sink` (its lease connection's holder name), by shard. */
    async shardHolders(sink: string): Promise<Map<number, string>> {
      // Read only (status): a sink never registered has no holders.
      const bit = (await pool.query<{ name: string; bit: number }>(sql.loadSinks(s))).rows.find((r) => r.name === sink)?.bit;
      if (bit === undefined) return new Map();
      const { rows } = await pool.query<{ shard: number; app: string }>(sql.shardHolders, [lockClass, sql.shardKeyBase(bit)]);
      return new Map(rows.map((r) => [r.shard, r.app.startsWith(`${SHARD_LEASE_APP} `) ? r.app.slice(SHARD_LEASE_APP.length + 1) : r.app]));
    },

    /** A sink's cursors (made when missing), one per shard. */
    async cursors(sink: string): Promise<number[]> {
      await pool.query(sql.ensureCursors(s), [sink]);
      const { rows } = await pool.query<{ shard: number; seq: string }>(sql.loadCursors(s), [sink]);
      return rows.map((r) => Number(r.seq));
    },

    /**
     * Up to `limit` events for `sink` after `after`, in seq order; `horizon`: with fewer
     * than asked, every event up to it has been seen.
     */
    async readLog(sink: string, after: number, limit: number, shards: readonly number[] | null = null): Promise<{ entries: LogEntry[]; horizon: number }> {
      const bit = await sinkBits([sink]).then((b) => b.get(sink)!);
      const { rows } = await hot.query<{ horizon: string | null; rows: Array<{ seq: number; shard: number; id: string; order_key: string; committed_at: string; payload: BusinessEvent; blocked: boolean }> }>(
        named('read_log', readText, [after, 1 << bit, limit, sink, shards]),
      );
      const r = rows[0]!;
      const entries = r.rows.map((x): LogEntry => ({
        seq: Number(x.seq),
        shard: x.shard,
        eventId: x.id,
        orderKey: x.order_key,
        event: x.payload,
        committedAt: new Date(x.committed_at),
        blocked: x.blocked ? new Set([sink]) : new Set(),
        sinks: [sink],
      }));
      return { entries, horizon: Math.max(Number(r.horizon ?? 0), entries.at(-1)?.seq ?? 0) };
    },

    /** Outcomes, exceptions and cursors of one sink: one statement. FencedError when `fence` is no longer this process's. */
    async flushLog(f: LogFlush, fence?: ShardFence): Promise<void> {
      const o = f.outcomes;
      const e = f.exceptions;
      const a = f.attempts;
      const text = (x: string | undefined | null) => (x == null ? null : storableText(x));
      const { rows } = await hot.query<{ fenced_ok: boolean }>(
        named('flush_log', flushText, [
          f.sink,
          o.map((x) => x.seq),
          o.map((x) => x.status),
          o.map((x) => x.attempts),
          o.map((x) => x.info?.requestId ?? null),
          o.map((x) => x.info?.httpStatus ?? null),
          o.map((x) => text(x.info?.remoteCode)),
          o.map((x) => (x.result === undefined ? null : JSON.stringify(x.result))),
          e.map((x) => x.entry.eventId),
          e.map((x) => x.entry.seq),
          e.map((x) => x.entry.orderKey),
          e.map((x) => x.status),
          e.map((x) => x.attempts),
          e.map((x) => Math.round(x.delayMs)),
          e.map((x) => text(x.code)),
          e.map((x) => text(x.message)),
          e.map((x) => x.entry.event.code),
          e.map((x) => x.entry.event.orderNo ?? null),
          e.map((x) => x.entry.committedAt.toISOString()),
          e.map((x) => JSON.stringify(x.entry.event)),
          a.map((x) => x.seq),
          a.map((x) => x.attempt),
          a.map((x) => x.outcome),
          a.map((x) => x.info?.requestId ?? null),
          a.map((x) => x.info?.httpStatus ?? null),
          a.map((x) => text(x.info?.remoteCode)),
          a.map((x) => text(x.info?.remoteSubCode)),
          a.map((x) => text(x.info?.remoteMessage ?? x.message)),
          a.map((x) => (x.info ? Math.round(x.info.durationMs) : null)),
          f.cursors.map((c) => c.shard),
          f.cursors.map((c) => c.seq),
          o.map((x) => x.shard),
          o.map((x) => text(x.message)),
          fence?.names ?? null,
          fence?.epochs ?? null,
        ]),
      );
      if (rows[0]?.fenced_ok === false) throw shardsFenced(f.sink, fence);
    },

    /** Of these orders, those with an open delivery (an exception) for the sink. */
    async openOrders(sink: string, orderKeys: string[]): Promise<Set<string>> {
      const { rows } = await pool.query<{ order_key: string }>(sql.openOrders(s), [sink, orderKeys]);
      return new Set(rows.map((r) => r.order_key));
    },

    /** Due exceptions of `sink` (of `shards` only, when given), leased for `leaseMs`; none once `fence` is stale. */
    async claim(sink: string, limit: number, leaseMs: number, shards: readonly number[] | null = null, fence?: ShardFence): Promise<ClaimedDelivery[]> {
      const { rows } = await pool.query<{ id: string; event_id: string; sink: string; attempt: number; payload: BusinessEvent; committed_at: Date }>(
        sql.claimExceptions(s),
        [sink, limit, leaseMs, shards ? await shardCount() : null, shards, fence?.names ?? null, fence?.epochs ?? null],
      );
      return rows
        .map((r) => ({ id: r.id, eventId: r.event_id, sink: r.sink, attempt: r.attempt, event: r.payload, committedAt: r.committed_at }))
        .sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
    },

    /** Records outcomes of exception attempts; returns how many were applied (stale ones are not). */
    async settle(settlements: Settlement[], fence?: ShardFence): Promise<number> {
      if (settlements.length === 0) return 0;
      const col = <T>(f: (x: Settlement) => T): T[] => settlements.map(f);
      const params: unknown[] = [
        col((x) => x.eventId),
        col((x) => x.sink),
        col((x) => x.deliveryId),
        col((x) => x.attempt),
        col((x) => x.status),
        col((x) => x.delayMs ?? null),
        col((x) => x.outcome),
        col((x) => (x.code == null ? null : storableText(x.code))),
        col((x) => (x.message == null ? null : storableText(x.message))),
        col((x) => (x.result === undefined ? null : JSON.stringify(x.result))),
        col((x) => x.info?.requestId ?? null),
        col((x) => x.info?.httpStatus ?? null),
        col((x) => x.info?.remoteCode ?? null),
        col((x) => x.info?.remoteSubCode ?? null),
        col((x) => x.info?.remoteMessage ?? null),
        col((x) => (x.info ? Math.round(x.info.durationMs) : null)),
        fence?.names ?? null,
        fence?.epochs ?? null,
      ];
      const prune = settlements.filter((x) => x.attempt > history);
      const r = prune.length
        ? await pool.query<{ n: number; fenced_ok: boolean }>(sql.settleExceptionsAndPrune(s), [...params, prune.map((x) => x.sink), prune.map((x) => x.deliveryId), prune.map((x) => x.attempt - history)])
        : await hot.query<{ n: number; fenced_ok: boolean }>(named('settle', settleText, params));
      if (r.rows[0]?.fenced_ok === false) throw shardsFenced(settlements[0]!.sink, fence);
      return r.rows[0]!.n;
    },

    /** Hands back claims whose attempt never started: no attempt is counted. */
    async release(claims: ReadonlyArray<Pick<ClaimedDelivery, 'eventId' | 'sink' | 'attempt'>>): Promise<void> {
      if (claims.length === 0) return;
      await pool.query(sql.releaseExceptions(s), [claims.map((c) => c.eventId), claims.map((c) => c.sink), claims.map((c) => c.attempt)]);
    },

  };
}

/** The application_name of a lease connection: this prefix, then the holder (host:pid). */
export const SHARD_LEASE_APP = 'order-relay-shards';

/** The epochs of the shards a process holds (see `ShardLeases`): its writes land only while they are current. */
export interface ShardFence {
  names: string[];
  epochs: number[];
}

/** One process's hold on a sink's delivery shards (`Ledger.shardLeases`). */
export interface ShardLeases {
  /** Shards of the ledger. */
  shards: number;
  /** Settles when the lease connection fails: no shard is ours any more. */
  lost: Promise<Error>;
  /** Shards held, with the epoch each was taken at. */
  held(): ReadonlyMap<number, number>;
  /** Whether the lease was confirmed recently enough to start an attempt (a process that was frozen is not, until it hears from its connection). */
  fresh(): boolean;
  fence(): ShardFence;
  /** Processes delivering this sink now (this one included). */
  members(): Promise<number>;
  /** Takes up to `max` of these shards that no one holds; the ones taken. */
  take(candidates: readonly number[], max: number): Promise<number[]>;
  give(shards: readonly number[]): Promise<void>;
  release(): Promise<void>;
}

function shardsFenced(sink: string, fence: ShardFence | undefined): FencedError {
  return new FencedError({ name: `shards of ${sink} (${fence?.names.length ?? 0} held)`, epoch: fence?.epochs[0] ?? 0 }, null);
}

/** A client that held a session lock goes back to no pool: its session ends, and the lock with it. */
async function endClient(client: pg.PoolClient, err?: Error): Promise<void> {
  client.release(err ?? true);
}

export type Ledger = ReturnType<typeof createLedger<pg.Pool>>;

/** FNV-1a over UTF-16 code units, as a non-negative int32. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & 0x7fffffff;
}
