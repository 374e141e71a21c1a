/**
 * Shared plumbing for `npm run bench` and `npm run chaos`: a throw-away PostgreSQL, the two
 * gateway simulators and the connector, each simulator and the connector in its own process
 * (`order-relay simulate …`, `order-relay run -c …`), so the connector's memory can be read
 * from /proc and it can be SIGKILLed like a real deployment.
 *
 * Lives under test/ (not src/): it is tooling around the product, never shipped or imported
 * by it, and it is type-checked with the rest of the tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { ensurePublicationAndSlot } from '../../connectors/sources/postgres/index.js';
import { generateDemoKeys, writeDemoKeys } from '../../src/demo/keys.js';
import { silentLogger } from '../../src/log.js';
import { startPostgres, type LocalPostgres } from '../../src/sandbox/postgres.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(REPO, 'bin/order-relay.js');
const DEMO_CONFIG = join(REPO, 'config/demo.yaml');
const SCHEMA_SQL = join(REPO, 'config/schema.sql');

/** The demo config's project: part of every event id. */
export const PROJECT = (parse(readFileSync(DEMO_CONFIG, 'utf8')) as { project: string }).project;

// ---------------------------------------------------------------------------------------------
// Children: every process we start is killed when this process exits, whatever the reason.

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of children) c.kill('SIGKILL');
    });
  }
}

/** Kills every tracked child by its pid (used on Ctrl-C before postgres is stopped). */
export function killAllChildren(): void {
  for (const c of children) c.kill('SIGKILL');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { seededRandom } from '../../src/core/random.js';

// ---------------------------------------------------------------------------------------------
// Keys and simulators

export interface Keys {
  dir: string;
  accessKey: string;
  accessSecret: string;
  appPrivate: string;
  appPublic: string;
  gatewayPrivate: string;
  gatewayPublic: string;
}

/** Throw-away credentials in a temp dir (the demo's generator): nothing from outside the repo. */
export function makeKeys(): Keys {
  const dir = mkdtempSync(join(tmpdir(), 'order-relay-keys-'));
  const k = generateDemoKeys();
  writeDemoKeys(dir, k);
  return {
    dir,
    accessKey: k.antchainAccessKey,
    accessSecret: k.antchainAccessSecret,
    appPrivate: join(dir, 'app_private.pem'),
    appPublic: join(dir, 'app_public.pem'),
    gatewayPrivate: join(dir, 'gateway_private.pem'),
    gatewayPublic: join(dir, 'gateway_public.pem'),
  };
}

export type SimKind = 'antchain' | 'zhima';

export interface AntchainStats {
  requests: number;
  effects: number;
  duplicates: number;
  violations: Array<{ requestId: string; orderNo?: string; code: string; reason: string }>;
  rejectedSignatures: number;
  invalidRequests: number;
  faultsInjected: Record<string, number>;
  effectList: Array<{ requestId: string; code: string; orderNo?: string; at: string }>;
  effectKeys: string[];
  /** Every repeat counted in `duplicates`: request_id and arrival time (ISO-8601). */
  duplicateRequests: Array<{ key: string; at: string }>;
}

export interface ZhimaStats {
  requests: number;
  effects: number;
  effectKeys: string[];
  effectsList: Array<{ out_biz_no: string; biz_state_code: string; user_id: string; time: string }>;
  duplicates: number;
  conflictingDuplicates: number;
  rejectedSignatures: number;
  invalidRequests: number;
  faultsInjected: Record<string, number>;
  /** Every repeat counted in `duplicates`: out_biz_no and arrival time (ISO-8601). */
  duplicateRequests: Array<{ key: string; at: string }>;
}

export interface SimProcess {
  kind: SimKind;
  /** Gateway URL for the connector config. */
  url: string;
  pid: number;
  stats<T = AntchainStats | ZhimaStats>(): Promise<T>;
  setFaults(patch: Record<string, number>): Promise<void>;
  clearFaults(): Promise<void>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

const NO_FAULTS: Record<SimKind, Record<string, number>> = {
  antchain: { latencyMs: 0, jitterMs: 0, http5xxRate: 0, needRetryRate: 0, failedNeedRetryRate: 0, hangRate: 0, dropAfterCommitRate: 0 },
  zhima: { latencyMs: 0, jitterMs: 0, http5xxRate: 0, code20000Rate: 0, hangRate: 0, dropAfterCommitRate: 0, corruptSignatureRate: 0 },
};

/** `order-relay simulate <kind>` in its own process; admin calls go over `/__sim/*`. */
export async function spawnSimulator(kind: SimKind, keys: Keys, options: { seed?: number; nodeArgs?: string[] } = {}): Promise<SimProcess> {
  const args = [...(options.nodeArgs ?? []), CLI, 'simulate', kind, '--port', '0', '--seed', String(options.seed ?? 1)];
  if (kind === 'antchain') args.push('--access-key', keys.accessKey);
  else args.push('--app-id', '2021000000000001', '--app-public-key', keys.appPublic, '--gateway-private-key', keys.gatewayPrivate);
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ANTCHAIN_ACCESS_SECRET: keys.accessSecret, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${kind} simulator did not start within 20s: ${err}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line && out.includes('\n')) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${kind} simulator exited (${code}): ${err}`));
    });
  });
  child.stdout!.resume();
  const base = new URL(url).origin;
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${base}${path}`, {
      method,
      ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${kind} simulator ${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as unknown;
  };
  return {
    kind,
    url,
    pid: child.pid!,
    stats: <T>() => call('GET', '/__sim/stats') as Promise<T>,
    setFaults: async (patch) => void (await call('POST', '/__sim/faults', patch)),
    clearFaults: async () => void (await call('POST', '/__sim/faults', NO_FAULTS[kind])),
    reset: async () => void (await call('POST', '/__sim/reset', {})),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(t);
    },
  };
}

export interface Sims {
  antchain: SimProcess;
  zhima: SimProcess;
  keys: Keys;
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startSims(options: { seed?: number } = {}): Promise<Sims> {
  const keys = makeKeys();
  const [antchain, zhima] = await Promise.all([spawnSimulator('antchain', keys, options), spawnSimulator('zhima', keys, options)]);
  return {
    antchain,
    zhima,
    keys,
    env: { ANTCHAIN_ACCESS_KEY: keys.accessKey, ANTCHAIN_ACCESS_SECRET: keys.accessSecret },
    async stop() {
      await Promise.all([antchain.stop(), zhima.stop()]);
      rmSync(keys.dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Postgres

export async function startServer(settings: Record<string, string> = {}): Promise<LocalPostgres> {
  return startPostgres({
    preferSystem: true,
    settings: { max_replication_slots: '32', max_wal_senders: '32', max_wal_size: '4GB', checkpoint_timeout: '30min', ...settings },
  });
}

export function databaseUrl(serverUrl: string, name: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A new database with the sample order tables; returns its URL. */
export async function createOrderDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = databaseUrl(serverUrl, name);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(readFileSync(SCHEMA_SQL, 'utf8'));
  } finally {
    await c.end();
  }
  return url;
}

/** Creates the publication (orders + refunds) and a pgoutput slot, as the connector would. */
export async function createSlot(url: string, slot: string, publication: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await ensurePublicationAndSlot(c, { slot, publication, tables: ['public.orders', 'public.refunds'], create: true }, silentLogger());
  } finally {
    await c.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Connector config and process

export interface ConnectorSpec {
  dbUrl: string;
  sims: Sims;
  slot: string;
  publication: string;
  ledgerSchema: string;
  /** Deep-merged over the generated config. */
  overrides?: Record<string, unknown>;
}

export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** The demo's classification rules and sinks, pointed at our database and simulators. */
export function connectorConfig(spec: ConnectorSpec): Record<string, unknown> {
  const demo = parse(readFileSync(DEMO_CONFIG, 'utf8')) as Record<string, unknown>;
  const sinks = demo.sinks as Record<string, Record<string, unknown>>;
  const base: Record<string, unknown> = {
    ...demo,
    database: { url: spec.dbUrl },
    ledger: { schema: spec.ledgerSchema },
    source: { kind: 'postgres', slot: spec.slot, publication: spec.publication, heartbeat: 'off', statusInterval: '1s', reconnect: { initialBackoff: '100ms', maxBackoff: '1s' } },
    sinks: {
      antchain: { ...sinks.antchain, endpoint: spec.sims.antchain.url, accessKey: { env: 'ANTCHAIN_ACCESS_KEY' }, accessSecret: { env: 'ANTCHAIN_ACCESS_SECRET' } },
      zhima: {
        ...sinks.zhima,
        endpoint: spec.sims.zhima.url,
        privateKey: { file: spec.sims.keys.appPrivate },
        alipayPublicKey: { file: spec.sims.keys.gatewayPublic },
      },
    },
    admin: { listen: 'off' },
    log: { level: 'warn' },
  };
  return deepMerge(base, spec.overrides ?? {});
}

const tempDirs: string[] = [];

/** Writes a connector config into a temp dir that is removed when this process exits. */
export function writeConfigFile(raw: Record<string, unknown>, dir?: string): string {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'order-relay-run-'));
  if (!dir) {
    if (tempDirs.length === 0) process.once('exit', () => tempDirs.forEach((t) => rmSync(t, { recursive: true, force: true })));
    tempDirs.push(d);
  }
  const path = join(d, 'config.yaml');
  writeFileSync(path, stringify(raw));
  return path;
}

export interface Memory {
  /** Highest VmHWM (peak resident set) read from /proc, MiB. */
  peakMb: number;
  /** Last VmRSS read, MiB. */
  lastMb: number;
}

export interface ConnectorProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  memory: Memory;
  output(): string;
  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful drain); SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

function readStatusKb(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** `order-relay run -c <config>` as an operator runs it; memory sampled from /proc every 100 ms. */
export function spawnConnector(configPath: string, env: Record<string, string>, options: { nodeArgs?: string[]; extraEnv?: Record<string, string> } = {}): ConnectorProcess {
  // ORDER_RELAY_BENCH_CLI: another checkout's bin/order-relay.js as the connector under test
  // (an A/B of two versions with the same harness, simulators and Postgres).
  const cli = process.env.ORDER_RELAY_BENCH_CLI || CLI;
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), cli, 'run', '-c', configPath], {
    env: { ...process.env, ...env, ...(options.extraEnv ?? {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  const pid = child.pid!;
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const memory: Memory = { peakMb: 0, lastMb: 0 };
  const sample = () => {
    const hwm = readStatusKb(pid, 'VmHWM');
    const rss = readStatusKb(pid, 'VmRSS');
    if (hwm !== undefined) memory.peakMb = Math.max(memory.peakMb, hwm / 1024);
    if (rss !== undefined) memory.lastMb = rss / 1024;
  };
  const sampler = setInterval(sample, 100);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      clearInterval(sampler);
      resolve({ code, signal });
    }),
  );
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    pid,
    exited,
    memory,
    output: () => out,
    async kill() {
      if (alive()) {
        sample();
        child.kill('SIGKILL');
      }
      await exited;
    },
    async stop(graceMs = 10_000) {
      if (!alive()) return;
      sample();
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Ledger and slot probes

export async function slotAndCheckpoint(pool: pg.Pool | pg.Client, slot: string, schema: string): Promise<{ confirmed: bigint; checkpoint: bigint | null }> {
  // The acknowledged side first, then the ledger, in two statements: the ledger only moves
  // forward and is written before anything is acknowledged, so this order can only
  // under-report. (In one statement the ledger is read at the statement's snapshot and the
  // slot after it, and a batch committed in between looked like an acknowledgement ahead
  // of the ledger.)
  const slotRow = await pool.query<{ confirmed: string | null }>(
    `SELECT (confirmed_flush_lsn - '0/0')::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const cp = await pool.query<{ checkpoint: string | null }>(
    `SELECT (position::pg_lsn - '0/0')::text AS checkpoint FROM ${schema}.checkpoints WHERE source = 'postgres' AND stream = 'slot'`,
  );
  const confirmed = slotRow.rows[0]?.confirmed;
  const checkpoint = cp.rows[0]?.checkpoint;
  return { confirmed: BigInt(confirmed ?? 0), checkpoint: checkpoint == null ? null : BigInt(checkpoint) };
}

/** Whether the ledger schema exists yet (the connector migrates it at start). */
export async function ledgerExists(pool: pg.Pool, schema: string): Promise<boolean> {
  const { rows } = await pool.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [`${schema}.checkpoints`]);
  return rows[0]!.ok;
}

/** Whether a walsender is streaming from the slot (pg_replication_slots.active). */
export async function slotActive(pool: pg.Pool | pg.Client, slot: string): Promise<boolean> {
  const { rows } = await pool.query<{ a: boolean }>(`SELECT active AS a FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  return rows[0]?.a === true;
}

export interface LedgerSize {
  /** Sum of pg_total_relation_size (heap, indexes, TOAST and its index, FSM/VM) of every table with storage. */
  bytes: number;
  /** Bytes per table (schema-qualified name), biggest first. */
  tables: Record<string, number>;
  /** pg_total_relation_size of the partitioned parents themselves: no storage, 0 on PostgreSQL 15 (not in `bytes`). */
  partitionedParentBytes: number;
}

/**
 * The ledger's on-disk size without knowing its table names: every ordinary table (relkind
 * 'r') in the schema, and every leaf partition of a partitioned table (relkind 'p') of the
 * schema, wherever the partition lives; each relation once (a partition in the schema is both
 * an 'r' there and a leaf of its parent). The parents are left out of the sum: they have no
 * storage (their pg_total_relation_size is 0 on 15, checked in `partitionedParentBytes`), and
 * their leaves' sizes already include the leaves' indexes and TOAST.
 */
export async function ledgerSize(pool: pg.Pool | pg.Client, schema: string): Promise<LedgerSize> {
  const { rows } = await pool.query<{ name: string; kind: string; bytes: string }>(
    `WITH own AS (
       SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
     ), rels AS (
       SELECT oid FROM own
       UNION
       SELECT t.relid FROM own, pg_partition_tree(own.oid) t WHERE own.relkind = 'p'
     )
     SELECT c.oid::regclass::text AS name, c.relkind::text AS kind, pg_total_relation_size(c.oid)::text AS bytes
       FROM rels JOIN pg_class c ON c.oid = rels.oid
      ORDER BY pg_total_relation_size(c.oid) DESC, 1`,
    [schema],
  );
  const tables: Record<string, number> = {};
  let bytes = 0;
  let partitionedParentBytes = 0;
  for (const r of rows) {
    if (r.kind === 'p') partitionedParentBytes += Number(r.bytes);
    else if (r.kind === 'r') {
      bytes += Number(r.bytes);
      tables[r.name] = Number(r.bytes);
    }
  }
  return { bytes, tables, partitionedParentBytes };
}

export async function currentLsn(pool: pg.Pool | pg.Client): Promise<bigint> {
  const { rows } = await pool.query<{ l: string }>(`SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS l`);
  return BigInt(rows[0]!.l);
}

// ---------------------------------------------------------------------------------------------
// Workload SQL

export const ORDER_COLUMNS =
  'order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, cinema_address, schedule_id, seat_ids, show_start, show_end, ticket_count, original_amount, paid_amount, paid_at';

/**
 * Orders `prefix1..prefixN` in transactions of `txnRows` rows, committed before the connector
 * starts (the WAL is pre-generated, so the connector is measured, not the inserts).
 * `statusSql` is an SQL expression of `g` (the row number).
 */
export async function insertOrdersBulk(
  url: string,
  options: {
    prefix: string; from: number; to: number; txnRows: number; statusSql: string; alipaySql?: string;
    /** SQL condition on `g`: those orders also get one SUCCESS refund row `<order>-r` in the same transaction. */
    refundSql?: string;
    onProgress?: (done: number) => void;
  },
): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`SET synchronous_commit = off`);
    const alipay = options.alipaySql ?? `'2088' || lpad(g::text, 12, '0')`;
    for (let lo = options.from; lo <= options.to; lo += options.txnRows) {
      const hi = Math.min(options.to, lo + options.txnRows - 1);
      const orders = `INSERT INTO orders (${ORDER_COLUMNS})
         SELECT $1 || g, ${options.statusSql}, '138' || lpad((g % 100000000)::text, 8, '0'), ${alipay}, (1300000 + g % 500)::text,
                1 + g % 40, 'Cinema ' || (g % 40), 'No. ' || (g % 999) || ' Chang''an Ave', 'S' || (g % 1000), (g % 20) || '-' || (g % 30),
                '2026-12-01 19:30:00', '2026-12-01 21:30:00', 1 + g % 4, 45.00 * (1 + g % 4), 40.00 * (1 + g % 4), now()
           FROM generate_series($2::int, $3::int) g`;
      await c.query(
        options.refundSql
          ? `WITH o AS (${orders} RETURNING 1)
             INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count)
             SELECT $1 || g || '-r', $1 || g, 'SUCCESS', 40.00 * (1 + g % 4), 1 + g % 4 FROM generate_series($2::int, $3::int) g WHERE ${options.refundSql}`
          : orders,
        [options.prefix, lo, hi],
      );
      options.onProgress?.(hi - options.from + 1);
    }
  } finally {
    await c.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Misc

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// CPU accounting: where the machine's cores went during a phase.

const TICKS_PER_S = 100; // USER_HZ on Linux

function statTimes(pid: number): { comm: string; ppid: number; self: number; children: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const f = text.slice(close + 2).split(' ');
    // Fields after "(comm) ": state=0 ppid=1 … utime=11 stime=12 cutime=13 cstime=14
    return { comm, ppid: Number(f[1]), self: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system, all threads) a live process has used so far; 0 when it is gone. */
export function processCpuSeconds(pid: number): number {
  const t = statTimes(pid);
  return t ? t.self / TICKS_PER_S : 0;
}

function machineBusySeconds(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + cpu[7]!;
  return busy / TICKS_PER_S;
}

/**
 * CPU seconds used so far by each named process, by our Postgres server (its postmaster and
 * backends, found by data directory), and by the whole machine (`machine`), so that other
 * work on the same cores shows up as `others` in a delta.
 */
export function cpuSeconds(pids: Record<string, number | undefined>, pgDataDir?: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    const t = pid ? statTimes(pid) : undefined;
    out[name] = t ? t.self / TICKS_PER_S : 0;
  }
  let postmaster = 0;
  const all: Array<{ pid: number; t: NonNullable<ReturnType<typeof statTimes>> }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const t = statTimes(pid);
    if (t?.comm !== 'postgres') continue;
    all.push({ pid, t });
    if (pgDataDir && !postmaster) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmd.includes(pgDataDir) && t.ppid !== 0) postmaster = pid;
      } catch {
        /* gone */
      }
    }
  }
  // Our postmaster with what it collected from exited backends, and its live children; the
  // walsenders (logical decoding of the whole WAL) apart from the backends running SQL.
  let pgTicks = 0;
  let walsender = 0;
  for (const { pid, t } of all) {
    if (pid === postmaster) pgTicks += t.self + t.children;
    else if (t.ppid === postmaster) {
      pgTicks += t.self;
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('walsender')) walsender += t.self;
      } catch {
        /* gone */
      }
    }
  }
  out.postgres = pgTicks / TICKS_PER_S;
  out.pg_walsender = walsender / TICKS_PER_S;
  out.machine = machineBusySeconds();
  return out;
}

export function cpuDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const d = Object.fromEntries(Object.keys(after).map((k) => [k, round((after[k] ?? 0) - (before[k] ?? 0), 2)]));
  const ours = Object.entries(d).filter(([k]) => k !== 'machine' && k !== 'pg_walsender').reduce((a, [, v]) => a + v, 0);
  d.others = round(Math.max(0, (d.machine ?? 0) - ours), 2);
  return d;
}
