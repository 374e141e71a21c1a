import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { doctor } from '../../src/cli/doctor.js';
import { parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { KEY_FILES } from '../../src/demo/keys.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { REPO } from '../helpers/pipeline.js';

type Service = {
  build?: string | { context: string; dockerfile?: string };
  image?: string;
  pull_policy?: string;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[]; disable?: boolean };
  ports?: string[];
};

const composeText = readFileSync(join(REPO, 'docker-compose.yml'), 'utf8');
const compose = parse(composeText) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
const services = compose.services;
const KEYS = new Set<string>(Object.values(KEY_FILES));
const words = (s: Service) => [...[s.command ?? []].flat(), ...[s.entrypoint ?? []].flat()].join(' ');

describe('docker-compose.yml', () => {
  it('parses and has PostgreSQL, Kafka (KRaft), both simulators and the connector, each with a health check', () => {
    for (const name of ['postgres', 'kafka', 'antchain-sim', 'zhima-sim', 'order-relay']) {
      expect(services[name], name).toBeDefined();
      expect(services[name]!.healthcheck?.test?.length, `${name} health check`).toBeGreaterThan(0);
    }
    expect(words(services.postgres!)).toContain('wal_level=logical');
    expect(services.kafka!.environment).toMatchObject({ KAFKA_PROCESS_ROLES: 'broker,controller' });
  });

  it('builds the order-relay image once, in the service every other one that runs it waits for', () => {
    const builders = Object.entries(services).filter(([, s]) => s.build);
    expect(builders.map(([name, s]) => [name, s.build, s.image])).toEqual([['keys', '.', 'order-relay:local']]);
    const users = Object.entries(services).filter(([, s]) => s.image === 'order-relay:local').map(([name]) => name);
    expect(users.sort()).toEqual(['antchain-sim', 'keys', 'order-relay', 'zhima-sim']);
    const waitsFor = (name: string, seen = new Set<string>()): Set<string> => {
      for (const dep of Object.keys(services[name]?.depends_on ?? {})) if (!seen.has(dep)) waitsFor(dep, seen.add(dep));
      return seen;
    };
    for (const name of users.filter((n) => n !== 'keys')) {
      // Reused by name: never pulled from a registry, never built again.
      expect(services[name]!.pull_policy, name).toBe('never');
      expect(waitsFor(name).has('keys'), `${name} waits for keys`).toBe(true);
    }
  });

  it('references only files that exist', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build) {
        const ctx = typeof s.build === 'string' ? s.build : s.build.context;
        const dockerfile = typeof s.build === 'string' ? 'Dockerfile' : (s.build.dockerfile ?? 'Dockerfile');
        expect(existsSync(join(REPO, ctx, dockerfile)), `${name}: ${ctx}/${dockerfile}`).toBe(true);
      }
      for (const v of s.volumes ?? []) {
        const [host] = v.split(':');
        if (host!.startsWith('.') || host!.startsWith('/')) expect(existsSync(join(REPO, host!)), `${name}: ${host}`).toBe(true);
        else expect(compose.volumes, `${name}: named volume ${host}`).toHaveProperty(host!);
      }
      for (const dep of Object.keys(s.depends_on ?? {})) expect(services, `${name} depends on ${dep}`).toHaveProperty(dep);
      // Key files the simulators and the connector read are the ones `keygen` writes.
      for (const m of words(s).matchAll(/\/keys\/([\w.]+)/g)) expect(KEYS.has(m[1]!), `${name}: /keys/${m[1]}`).toBe(true);
    }
    // Whatever the Dockerfile copies is in the repository.
    const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
    for (const m of dockerfile.matchAll(/^COPY\s+(?!--from=)(.+?)\s+\S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) expect(existsSync(join(REPO, src)), `Dockerfile COPY ${src}`).toBe(true);
    }
  });

  it('uses no environment variable that is not defined in it', () => {
    // ${VAR} in docker-compose.yml would come from the host: there are none ($$ escapes a shell's $).
    expect(composeText.replace(/\$\$/g, '').match(/\$\{?[A-Za-z_]/g)).toBeNull();
  });

  it('gives the connector a config that parses with the environment and files compose provides', () => {
    const s = services['order-relay']!;
    const args = [s.command ?? []].flat();
    const file = args[args.indexOf('-c') + 1]!;
    const text = readFileSync(join(REPO, file), 'utf8');
    const env = s.environment ?? {};
    for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)) expect(env, `${file} uses \${${m[1]}}`).toHaveProperty(m[1]!);
    const config = parseConfig(text, env, file);
    for (const m of text.matchAll(/file:\s*\/keys\/([\w.]+)/g)) expect(KEYS.has(m[1]!), `/keys/${m[1]}`).toBe(true);
    // Its admin listener is the published port and the one the health check asks.
    expect(config.admin.listen).toBe('0.0.0.0:9464');
    expect(s.ports).toContain('127.0.0.1:9464:9464');
    expect(s.healthcheck!.test!.join(' ')).toContain('http://127.0.0.1:9464/readyz');
    // Its database role and password are the ones grants.sql creates.
    const url = new URL(env.DATABASE_URL!);
    const grants = readFileSync(join(REPO, 'config/grants.sql'), 'utf8');
    expect(grants).toContain(`CREATE ROLE ${url.username} LOGIN REPLICATION`);
    expect(grants).toContain(`'${url.password}'`);
    expect(config.source?.publication).toBe('order_relay');
    expect(grants).toContain("SELECT format('CREATE PUBLICATION order_relay FOR TABLE %s'");
    // Its tables are the ones grants.sql takes when psql is given none.
    expect(grants).toContain(`\\set orders_table ${config.orders.table}`);
    expect(grants).toContain(`\\set refunds_table ${config.refunds!.table}`);
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  const stages = text.split(/^(?=FROM )/m).filter((s) => s.startsWith('FROM '));

  it('compiles in a build stage; the image gets the production dependencies and the compiled code only, as the node user', () => {
    expect(stages).toHaveLength(2);
    const [build, runtime] = stages as [string, string];
    expect(build).toMatch(/^FROM node:20[\w.-]* AS build$/m);
    expect(build).toMatch(/^RUN npm ci\b(?!.*--omit)/m);
    expect(build).toMatch(/^RUN npm run build$/m);
    expect(runtime).toMatch(/^FROM node:20[\w.-]*-slim$/m);
    expect(runtime).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(runtime).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
    // No sources, no TypeScript loader, no compiler in the image.
    for (const dir of ['src', 'connectors', 'tsconfig.json']) expect(runtime).not.toMatch(new RegExp(`^COPY .*\\b${dir}\\b`, 'm'));
    expect(runtime).toMatch(/^ENV NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=512"$/m);
    expect(runtime).toMatch(/^USER node$/m);
    expect(runtime).toMatch(/^ENTRYPOINT \["node", "bin\/order-relay.js"\]$/m);
  });
});

describe('config/production.yaml', () => {
  const text = readFileSync(join(REPO, 'config/production.yaml'), 'utf8');

  it('parses once its environment variables are set', () => {
    const env = { DATABASE_URL: 'postgres://u@h/db', ANTCHAIN_ACCESS_KEY: 'AK' };
    expect(() => parseConfig(text, env, 'production.yaml')).not.toThrow();
  });

  it('documents every option of the config schema', () => {
    const keys = new Set<string>();
    const walk = (schema: unknown, depth: number): void => {
      const def = (schema as { _zod?: { def?: Record<string, unknown> } })?._zod?.def;
      if (!def || depth > 12) return;
      switch (def.type) {
        case 'object':
          for (const [k, v] of Object.entries(def.shape as Record<string, unknown>)) {
            keys.add(k);
            walk(v, depth + 1);
          }
          return;
        case 'optional': case 'nullable': case 'default': case 'prefault': case 'readonly':
          return walk(def.innerType, depth + 1);
        case 'pipe':
          walk(def.in, depth + 1);
          return walk(def.out, depth + 1);
        case 'union':
          for (const o of def.options as unknown[]) walk(o, depth + 1);
          return;
        case 'record':
          return walk(def.valueType, depth + 1);
        case 'array':
          return walk(def.element, depth + 1);
      }
    };
    walk(configSchema, 0);
    const undocumented = [...keys].filter((k) => !new RegExp(`(^|[\\s{,#])${k}:`, 'm').test(text));
    expect(keys.size).toBeGreaterThan(100);
    expect(undocumented).toEqual([]);
  });
});

// config/grants.sql uses psql meta-commands; run it where psql exists (CI installs Debian's PostgreSQL).
const psql = findPsql();
let grantsDb: TestDatabase | undefined;
// The role grants.sql creates is cluster-wide: every test of it is in this file, one after another.
const grantsDbs: TestDatabase[] = [];
afterAll(async () => {
  if (grantsDb) grantsDbs.push(grantsDb);
  if (!grantsDbs.length) return;
  for (const d of grantsDbs) {
    await d.pool.query(`DROP PUBLICATION IF EXISTS order_relay; REASSIGN OWNED BY order_relay TO CURRENT_USER; DROP OWNED BY order_relay`).catch(() => {});
    await d.drop();
  }
  const admin = await createTestDatabase('grants_cleanup');
  await admin.pool.query('DROP ROLE IF EXISTS order_relay').catch(() => {});
  await admin.drop();
});

const runGrants = (url: string, vars: Record<string, string>) =>
  execFileSync(psql!, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', ...Object.entries(vars).flatMap(([k, v]) => ['-v', `${k}=${v}`]), '-d', url, '-f', join(REPO, 'config/grants.sql')], { stdio: 'pipe' });

describe('config/grants.sql', () => {
  it.skipIf(!psql)('gives the connector role exactly what doctor checks for', async () => {
    grantsDb = await createTestDatabase('grants');
    await grantsDb.pool.query(readFileSync(join(REPO, 'config/schema.sql'), 'utf8'));
    execFileSync(psql!, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', grantsDb.url, '-f', join(REPO, 'config/grants.sql')], { stdio: 'pipe' });
    const url = new URL(grantsDb.url);
    url.username = 'order_relay';
    url.password = 'order-relay-local-only';
    const config = parseConfig(readFileSync(join(REPO, 'config/compose.yaml'), 'utf8'), {
      DATABASE_URL: url.toString(), KAFKA_BROKERS: 'localhost:9', ANTCHAIN_ENDPOINT: 'http://127.0.0.1:9/x', ZHIMA_ENDPOINT: 'http://127.0.0.1:9/x',
    });
    const checks = new Map((await doctor({ ...config, kafka: undefined } as typeof config, { offline: true })).map((c) => [c.name, c]));
    for (const name of ['source database', 'wal_level', 'replication privilege', 'table public.orders', 'table public.refunds', 'replica identity public.orders', 'publication']) {
      expect(checks.get(name)?.status, `${name}: ${checks.get(name)?.detail}`).toBe('ok');
    }
    expect(checks.get('ledger schema')).toMatchObject({ status: 'warn', detail: 'order_relay does not exist yet' });
  });

  it.skipIf(!psql)('takes the table names as psql variables, and adds what is missing when run again', async () => {
    const db = await createTestDatabase('grants_named');
    grantsDbs.push(db);
    await db.pool.query(`CREATE SCHEMA sales;
      CREATE TABLE sales.ticket_orders (id bigserial PRIMARY KEY, order_no text NOT NULL, status text);
      CREATE TABLE sales.ticket_refunds (refund_id text PRIMARY KEY, order_no text NOT NULL);
      CREATE TABLE sales.box_office (order_no text PRIMARY KEY, status text)`);
    const granted = async () =>
      (
        await db.pool.query<{ publication: string[]; select: string[]; usage: boolean; replication: boolean }>(
          `SELECT ARRAY(SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'order_relay' ORDER BY 1) AS publication,
                  ARRAY(SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = 'sales' AND c.relkind = 'r' AND has_table_privilege('order_relay', c.oid, 'SELECT') ORDER BY 1) AS select,
                  has_schema_privilege('order_relay', 'sales', 'USAGE') AS usage,
                  (SELECT rolreplication FROM pg_roles WHERE rolname = 'order_relay') AS replication`,
        )
      ).rows[0]!;
    runGrants(db.url, { orders_table: 'sales.ticket_orders', refunds_table: 'sales.ticket_refunds' });
    expect(await granted()).toEqual({
      publication: ['sales.ticket_orders', 'sales.ticket_refunds'],
      select: ['sales.ticket_orders', 'sales.ticket_refunds'],
      usage: true,
      replication: true,
    });
    // Again, with another orders table and no refunds table (an empty value): it joins the publication.
    runGrants(db.url, { orders_table: 'sales.box_office', refunds_table: '' });
    expect(await granted()).toMatchObject({
      publication: ['sales.box_office', 'sales.ticket_orders', 'sales.ticket_refunds'],
      select: ['sales.box_office', 'sales.ticket_orders', 'sales.ticket_refunds'],
    });
    // A table that does not exist stops it with PostgreSQL's message, before anything is granted.
    expect(() => runGrants(db.url, { orders_table: 'sales.nope' })).toThrow(/relation "sales.nope" does not exist/);
  });
});

function findPsql(): string | undefined {
  if (spawnSync('psql', ['--version'], { stdio: 'ignore' }).status === 0) return 'psql';
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  for (const v of readdirSync(root).sort().reverse()) if (existsSync(join(root, v, 'bin/psql'))) return join(root, v, 'bin/psql');
  return undefined;
}
