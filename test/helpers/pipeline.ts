import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { startAntchainSimulator } from '../../src/sandbox/antchain-simulator.js';
import { startZhimaSimulator } from '../../src/sandbox/zhima-simulator.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const KEYS = fileURLToPath(new URL('../../../shared/spec/keys/', import.meta.url));

export async function createOrderTables(pool: pg.Pool, identity: 'DEFAULT' | 'FULL' = 'DEFAULT'): Promise<void> {
  await pool.query(readFileSync(join(REPO, 'config/schema.sql'), 'utf8'));
  await pool.query(`ALTER TABLE public.orders REPLICA IDENTITY ${identity}; ALTER TABLE public.refunds REPLICA IDENTITY ${identity}`);
}

export interface Simulators {
  antchain: Awaited<ReturnType<typeof startAntchainSimulator>>;
  zhima: Awaited<ReturnType<typeof startZhimaSimulator>>;
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startSimulators(): Promise<Simulators> {
  const accessKey = 'ACtest' + randomBytes(4).toString('hex');
  const accessSecret = randomBytes(16).toString('hex');
  const antchain = await startAntchainSimulator({ accessKey, accessSecret });
  const zhima = await startZhimaSimulator({
    appId: '2021000000000001',
    appPublicKeyPem: readFileSync(join(KEYS, 'app_public.pem'), 'utf8'),
    gatewayPrivateKeyPem: readFileSync(join(KEYS, 'gateway_private_pkcs1.pem'), 'utf8'),
  });
  return {
    antchain,
    zhima,
    env: { ANTCHAIN_ACCESS_KEY: accessKey, ANTCHAIN_ACCESS_SECRET: accessSecret },
    async close() {
      await Promise.all([antchain.close(), zhima.close()]);
    },
  };
}

/** A connector config for tests: the demo's rules, the given database and simulators, fast timings. */
export function testConfig(dbUrl: string, sims: Simulators, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const demo = parseConfigText(readFileSync(join(REPO, 'config/demo.yaml'), 'utf8'));
  const suffix = randomBytes(3).toString('hex');
  const base = {
    ...demo,
    database: { url: dbUrl },
    ledger: { schema: 'order_relay' },
    source: { kind: 'postgres', slot: `s_${suffix}`, publication: `p_${suffix}`, heartbeat: 'off', statusInterval: '1s', reconnect: { initialBackoff: '100ms', maxBackoff: '1s' } },
    sinks: {
      antchain: { ...(demo.sinks as Record<string, Record<string, unknown>>).antchain, endpoint: sims.antchain.url, accessKey: { env: 'ANTCHAIN_ACCESS_KEY' }, timeout: '2s', retry: { initialBackoff: '50ms', maxBackoff: '500ms' } },
      zhima: {
        ...(demo.sinks as Record<string, Record<string, unknown>>).zhima,
        endpoint: sims.zhima.url,
        privateKey: { file: join(KEYS, 'app_private_pkcs8.pem') },
        alipayPublicKey: { file: join(KEYS, 'gateway_public.pem') },
        timeout: '2s',
        retry: { initialBackoff: '50ms', maxBackoff: '500ms' },
      },
    },
    dispatcher: { pollInterval: '100ms', leaseMargin: '1s', drainTimeout: '5s' },
    admin: { listen: 'off' },
    log: { level: 'warn' },
  };
  return deepMerge(base, overrides);
}

/** The demo config as plain data; its ${ENV} references are replaced below by test values. */
function parseConfigText(text: string): Record<string, unknown> {
  return parse(text) as Record<string, unknown>;
}

export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
      ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
      : v;
  }
  return out;
}

/** Writes the config to a temp file; returns its path and the parsed, validated config. */
export function writeConfig(raw: Record<string, unknown>, env: Record<string, string>): { path: string; config: Config } {
  const dir = mkdtempSync(join(tmpdir(), 'order-relay-test-'));
  const path = join(dir, 'config.yaml');
  const text = stringify(raw);
  writeFileSync(path, text);
  return { path, config: parseConfig(text, { ...process.env, ...env }) };
}

export interface Connector {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

/** Runs `order-relay run` in a child process, as an operator would. */
export function spawnConnector(configPath: string, env: Record<string, string>): Connector {
  const child = spawn(process.execPath, [join(REPO, 'bin/order-relay.js'), 'run', '-c', configPath], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, output: () => out };
}

/** The slot's confirmed position and the ledger's checkpoint, as LSN numbers. */
export async function slotAndCheckpoint(pool: pg.Pool, slot: string, schema = 'order_relay'): Promise<{ confirmed: bigint; checkpoint: bigint }> {
  const { rows } = await pool.query<{ confirmed: string | null; checkpoint: string | null }>(
    `SELECT (SELECT (confirmed_flush_lsn - '0/0')::text FROM pg_replication_slots WHERE slot_name = $1) AS confirmed,
            (SELECT (position::pg_lsn - '0/0')::text FROM ${schema}.checkpoints WHERE source = 'postgres' AND stream = 'slot') AS checkpoint`,
    [slot],
  );
  return { confirmed: BigInt(rows[0]?.confirmed ?? 0), checkpoint: BigInt(rows[0]?.checkpoint ?? 0) };
}
