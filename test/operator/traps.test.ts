import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATEST_VERSION } from '../../src/ledger/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, deepMerge, REPO, testConfig } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';
import { operatorConfig, startSims } from './helpers.js';

/**
 * The traps of issue 16: `run` looping forever on a setup error retrying cannot fix, a
 * SIGTERM early in a start killing the process by the signal, no --version, noise on stderr.
 */

interface Child {
  pid: number;
  kill(signal: NodeJS.Signals): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
}

/** `order-relay <args>` as an operator starts it, stdout (JSON log) and stderr kept apart. */
function start(args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, [join(REPO, 'bin/order-relay.js'), ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { pid: child.pid!, kill: (s) => child.kill(s), exited, stdout: () => out, stderr: () => err };
}

/** Resolves with the exit, or rejects when the process is still running after `ms` (and kills it). */
async function exitWithin(c: Child, ms: number, what: string) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`${what}: still running after ${ms} ms; output:\n${c.stdout().slice(-3000)}\n${c.stderr()}`));
    }, ms);
  });
  try {
    return await Promise.race([c.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

function logLines(c: Child): Array<{ level: number; msg: string; err?: string; component?: string }> {
  return c.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
}

function withUser(url: string, user: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = '';
  return u.toString();
}

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
const roles: string[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase('traps');
  await createOrderTables(db.pool);
  sims = await startSims();
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
  if (roles.length) {
    const { default: pg } = await import('pg');
    const { inject } = await import('vitest');
    const admin = new pg.Client({ connectionString: inject('pgUrl') });
    await admin.connect();
    for (const r of roles) await admin.query(`DROP ROLE IF EXISTS ${r}`).catch(() => {});
    await admin.end();
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const slotExists = async (slot: string) => (await db.pool.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount === 1;
const schemaExists = async (schema: string) => (await db.pool.query('SELECT to_regnamespace($1) IS NOT NULL AS ok', [schema])).rows[0].ok as boolean;

describe('run stops on a setup error no retry can fix, with the cause and the fix', () => {
  it('a slot of another plugin under the configured name: exit 1, one stderr line naming it and how to fix it', async () => {
    const { path, config } = operatorConfig(db.url, sims);
    const slot = config.source!.slot;
    await db.pool.query(`SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, [slot]);
    try {
      const c = start(['run', '-c', path], sims.env);
      expect(await exitWithin(c, 20_000, 'run with a test_decoding slot')).toEqual({ code: 1, signal: null });
      expect(c.stderr()).toBe(
        `order-relay run: replication slot: "${slot}" uses plugin test_decoding, not pgoutput — fix: use another source.slot name, or drop it: SELECT pg_drop_replication_slot('${slot}');\n`,
      );
      // The JSON log says it once, at error, and tried once: no loop of warnings.
      const lines = logLines(c).filter((l) => l.component === 'source');
      expect(lines.filter((l) => l.level >= 40).map((l) => [l.level, l.msg])).toEqual([[50, 'stopping: retrying cannot fix this']]);
    } finally {
      await db.pool.query('SELECT pg_drop_replication_slot($1)', [slot]);
    }
  });

  it('a slot of the configured name in another database: exit 1, naming both databases', async () => {
    const { path, config } = operatorConfig(db.url, sims);
    const slot = config.source!.slot;
    const other = await createTestDatabase('traps_other');
    try {
      await other.pool.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      const c = start(['run', '-c', path], sims.env);
      expect(await exitWithin(c, 20_000, 'run with a slot of another database')).toEqual({ code: 1, signal: null });
      expect(c.stderr()).toBe(
        `order-relay run: replication slot: "${slot}" belongs to database "${other.name}", not "${db.name}" — fix: choose another source.slot name (slot names are cluster-wide)\n`,
      );
    } finally {
      await other.drop();
    }
  });

  it('a publication the role may not create (no CREATE on the database): exit 1 with the statement to run as the owner', async () => {
    const role = `traps_${randomBytes(3).toString('hex')}`;
    roles.push(role);
    await db.pool.query(`CREATE ROLE ${role} LOGIN REPLICATION; GRANT SELECT ON public.orders, public.refunds TO ${role}`);
    // The ledger as the suite's superuser; the source as the role, as config/grants.sql sets it up.
    const { path, config } = operatorConfig(db.url, sims, { ledger: { url: db.url }, source: { url: withUser(db.url, role) } });
    const publication = config.source!.publication;
    const c = start(['run', '-c', path], sims.env);
    expect(await exitWithin(c, 20_000, 'run without CREATE on the database')).toEqual({ code: 1, signal: null });
    expect(c.stderr()).toMatch(
      new RegExp(
        `^order-relay run: publication: "${publication}" does not exist and role "${role}" cannot create it \\(permission denied for database ${db.name}; needs CREATE on the database and ownership of the tables\\) — fix: as the tables' owner: CREATE PUBLICATION "${publication}" FOR TABLE public\\.orders, public\\.refunds; see config/grants\\.sql\\n$`,
      ),
    );
    expect(await slotExists(config.source!.slot)).toBe(false);
  });

  it('keeps retrying what can pass (the source refusing connections), and stops cleanly on SIGTERM', async () => {
    const { path } = operatorConfig(db.url, sims, { ledger: { url: db.url }, source: { url: 'postgres://postgres@127.0.0.1:9/none' } });
    const c = start(['run', '-c', path], sims.env);
    await waitFor(() => logLines(c).filter((l) => l.msg === 'replication connection lost; reconnecting').length >= 3, 'three reconnect attempts', 20_000);
    c.kill('SIGTERM');
    expect(await exitWithin(c, 20_000, 'run after SIGTERM')).toEqual({ code: 0, signal: null });
    expect(c.stderr()).toBe('');
  });
});

describe('SIGTERM early in a start is a clean stop', () => {
  it('while the config is being read (before `run` has a handler of its own): exit 0, nothing connected, nothing written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'order-relay-traps-'));
    dirs.push(dir);
    const raw = testConfig(db.url, sims, { ledger: { schema: 'early_stop' } });
    const fifo = join(dir, 'config.yaml');
    execFileSync('mkfifo', [fifo]);
    const c = start(['run', '-c', fifo], sims.env);
    // Opening the pipe for writing returns once the child opens it to read the config: the
    // child runs our code, and `run` has not installed its signal handler yet.
    const writer = await open(fifo, 'w');
    c.kill('SIGTERM');
    await writer.writeFile(stringify(raw));
    await writer.close();
    expect(await exitWithin(c, 20_000, 'run stopped while reading its config')).toEqual({ code: 0, signal: null });
    expect(c.stderr()).toBe('');
    expect(await schemaExists('early_stop')).toBe(false);
    expect(await slotExists((raw.source as { slot: string }).slot)).toBe(false);
  });

  it('while the ledger migrates: the migration commits whole, the source never starts, exit 0', async () => {
    const { path, config } = operatorConfig(db.url, sims, { ledger: { schema: 'migrating_stop' }, log: { level: 'info' } });
    const holder = await db.pool.connect();
    await holder.query(`SELECT pg_advisory_lock(hashtext('order_relay.migrate.migrating_stop'))`);
    let c: Child | undefined;
    try {
      c = start(['run', '-c', path], sims.env);
      await waitFor(async () => {
        const { rows } = await db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'order-relay-migrate' AND wait_event_type = 'Lock'`);
        return rows.length === 1;
      }, 'the migration waiting for the lock', 20_000);
      c.kill('SIGTERM');
      // The signal is taken now, not when the migration is done (a second one would exit 130).
      await waitFor(() => logLines(c!).some((l) => /^shutting down/.test(l.msg)), 'the shutdown line');
    } finally {
      await holder.query(`SELECT pg_advisory_unlock(hashtext('order_relay.migrate.migrating_stop'))`);
      holder.release();
    }
    expect(await exitWithin(c!, 20_000, 'run stopped during the migration')).toEqual({ code: 0, signal: null });
    expect(c!.stderr()).toBe('');
    const { rows } = await db.pool.query(`SELECT max(version)::int AS v FROM migrating_stop.schema_migrations`);
    expect(rows[0].v).toBe(LATEST_VERSION);
    expect(await slotExists(config.source!.slot)).toBe(false);
  });
});

describe('the command line', () => {
  it('refuses a secret written into the config, saying what to write instead; allowInlineSecrets: true runs with a warning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'order-relay-traps-'));
    dirs.push(dir);
    const inline = testConfig(db.url, sims, { ledger: { schema: 'inline_secret' }, sinks: { antchain: { accessSecret: sims.env.ANTCHAIN_ACCESS_SECRET } } });
    const refused = join(dir, 'refused.yaml');
    writeFileSync(refused, stringify(inline));
    const r = start(['run', '-c', refused], sims.env);
    expect(await exitWithin(r, 20_000, 'run with an inline secret')).toEqual({ code: 1, signal: null });
    expect(r.stderr()).toBe(
      `order-relay run: ${refused} is invalid: sinks.antchain.accessSecret: a secret written into the config file: reference it instead, as "\${ENV_VAR}", { env: NAME } or { file: /run/secrets/… } (or set allowInlineSecrets: true at the top level to accept it, with a warning)\n`,
    );
    const allowed = join(dir, 'allowed.yaml');
    writeFileSync(allowed, stringify(deepMerge(inline, { allowInlineSecrets: true })));
    const a = start(['run', '-c', allowed], sims.env);
    await waitFor(() => logLines(a).some((l) => l.component === 'config'), 'the warning', 20_000);
    a.kill('SIGTERM');
    expect(await exitWithin(a, 20_000, 'run with allowInlineSecrets')).toEqual({ code: 0, signal: null });
    expect(logLines(a).filter((l) => l.component === 'config').map((l) => [l.level, l.msg])).toEqual([
      [40, `sinks.antchain.accessSecret: a secret written into ${allowed} (accepted: allowInlineSecrets is true); move it to an environment variable or a file`],
    ]);
  });

  it('--version prints the package version', async () => {
    const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const c = start([flag]);
      expect(await exitWithin(c, 20_000, flag)).toEqual({ code: 0, signal: null });
      expect(c.stdout()).toBe(`${version}\n`);
    }
  });

  it('a run that streams and delivers writes nothing to stderr (no DeprecationWarning), and stops with exit 0', async () => {
    const { path, config } = operatorConfig(db.url, sims, { ledger: { schema: 'quiet_run' } });
    const c = start(['run', '-c', path], sims.env);
    await waitFor(async () => (await db.pool.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [config.source!.slot])).rowCount === 1, 'the slot streaming', 20_000);
    await db.pool.query(
      `INSERT INTO public.orders (order_no, status, buyer_phone, alipay_user_id, original_amount, paid_amount, ticket_count, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start)
       VALUES ('Q1', 'PAID', '13800138000', '2088000000000001', 50.00, 45.00, 1, 'M1', 1, 'C', 'S1', 'A1', now())`,
    );
    await waitFor(async () => {
      // Delivered from the log (an outcome as the cursor passed it) or as a delivery row.
      const n = await db.pool
        .query<{ n: number }>(`SELECT ((SELECT count(*) FROM quiet_run.outcomes WHERE status = 'delivered') + (SELECT count(*) FROM quiet_run.deliveries WHERE status = 'delivered'))::int AS n`)
        .then((r) => r.rows[0]!.n)
        .catch(() => 0);
      return n === 2;
    }, 'Q1 delivered to both sinks', 20_000);
    c.kill('SIGTERM');
    expect(await exitWithin(c, 20_000, 'run after SIGTERM')).toEqual({ code: 0, signal: null });
    expect(c.stderr()).toBe('');
  });
});
