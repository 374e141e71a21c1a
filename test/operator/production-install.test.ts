import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_EMBEDDED_POSTGRES } from '../../src/demo/demo.js';
import { REPO } from '../helpers/pipeline.js';

/**
 * The production install, as the Dockerfile's runtime stage makes it (no Docker here):
 * `npm run build` into dist/, then package.json, the lock file, bin/, config/ and dist/ in
 * a directory of their own with `npm ci --omit=dev` (offline, from npm's cache; where that
 * is not possible, the production packages of this checkout linked in). It must run from the
 * compiled code with neither tsx nor esbuild nor embedded-postgres installed.
 */

const DEV_ONLY = ['embedded-postgres', '@embedded-postgres', 'tsx', 'esbuild', '@esbuild'];
const NODE_OPTIONS = '--max-semi-space-size=4 --max-old-space-size=512'; // the Dockerfile's

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr }),
    );
  });
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
let work: string;
let app: string;
let installedBy: 'npm ci --omit=dev' | 'links';
/** What the installed production tree's node runs with: no tsx, no loader of any kind. */
const prodEnv = () => {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', NODE_OPTIONS, LOG_LEVEL: 'warn' };
  delete env.ORDER_RELAY_PG_BIN;
  return env;
};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'order-relay-prod-'));
  app = join(work, 'app');
  mkdirSync(app);
  for (const f of ['package.json', 'package-lock.json']) cpSync(join(REPO, f), join(app, f));
  for (const d of ['bin', 'config']) cpSync(join(REPO, d), join(app, d), { recursive: true });

  const built = await run(npm, ['run', 'build', '--', '--out', join(app, 'dist')], { cwd: REPO });
  expect(built.stderr).toBe('');
  expect(built.code).toBe(0);

  const ci = await run(npm, ['ci', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: app });
  if (ci.code === 0) installedBy = 'npm ci --omit=dev';
  else {
    // No network and no cache: the production packages of this checkout, as npm lists them.
    const listed = await run(npm, ['ls', '--omit=dev', '--all', '--parseable'], { cwd: REPO });
    const modules = join(REPO, 'node_modules');
    for (const path of listed.stdout.split('\n').filter((p) => p.startsWith(`${modules}/`))) {
      const name = path.slice(modules.length + 1);
      if (name.includes('/node_modules/')) continue; // nested: reached through its parent's link
      mkdirSync(join(app, 'node_modules', name, '..'), { recursive: true });
      if (!existsSync(join(app, 'node_modules', name))) symlinkSync(path, join(app, 'node_modules', name));
    }
    installedBy = 'links';
  }
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('production install', () => {
  it('npm lists no demo or build tool among the production dependencies', async () => {
    const listed = await run(npm, ['ls', '--omit=dev', '--all'], { cwd: REPO });
    expect(listed.stdout).toMatch(/kafkajs@/);
    for (const name of DEV_ONLY) expect(listed.stdout).not.toMatch(new RegExp(`[─ ]${name.replace('/', '\\/')}[@/]`));
    const manifest = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string>; scripts: Record<string, string> };
    for (const name of ['embedded-postgres', 'tsx', 'esbuild']) {
      expect(manifest.dependencies).not.toHaveProperty(name);
      expect(manifest.devDependencies).toHaveProperty(name);
    }
    expect(manifest.scripts.build).toMatch(/bin\/compile\.js/);
  });

  it(`installs without them (${'npm ci --omit=dev --offline'}, or the listed packages linked)`, () => {
    const installed = readdirSync(join(app, 'node_modules'));
    expect(installed).toContain('kafkajs');
    for (const name of DEV_ONLY) expect(installed, `${installedBy}: ${name}`).not.toContain(name);
    expect(existsSync(join(app, 'dist/src/cli/main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist/connectors/sources/kafka/lag.js'))).toBe(true);
    expect(JSON.parse(readFileSync(join(app, 'dist/build.json'), 'utf8'))).toMatchObject({ version: '0.1.0', files: expect.any(Number) });
  });

  it('runs from dist/: --help, --version and a command that loads its module lazily (keygen)', async () => {
    const help = await run(process.execPath, ['bin/order-relay.js', '--help'], { cwd: app, env: prodEnv() });
    expect(help.stderr).toBe('');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^\s+run\b/m);
    expect(help.stdout).toMatch(/^\s+demo\b/m);

    const version = await run(process.execPath, ['bin/order-relay.js', '--version'], { cwd: app, env: prodEnv() });
    expect(version.stdout.trim()).toBe('0.1.0');

    const keys = join(work, 'keys');
    const keygen = await run(process.execPath, ['bin/order-relay.js', 'keygen', '--out', keys], { cwd: app, env: prodEnv() });
    expect(keygen.stderr).toBe('');
    expect(keygen.code).toBe(0);
    expect(readdirSync(keys).length).toBeGreaterThan(3);
    // Nothing compiled at start: there was nothing to compile with.
    expect(existsSync(join(app, '.build'))).toBe(false);
  });

  it('the demo says in one line what it needs when embedded-postgres is not installed', async () => {
    const demo = pathToFileURL(join(app, 'dist/src/demo/demo.js')).href;
    const script = `const { checkDemoPostgres } = await import(${JSON.stringify(demo)});
      try { checkDemoPostgres(() => { throw new Error('no usable PostgreSQL binaries'); }, {}); console.log('found'); }
      catch (err) { console.log(err.message); }`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: app, env: prodEnv() });
    expect(r.stdout.trim()).toBe(NO_EMBEDDED_POSTGRES);
    // In this checkout (dev dependencies installed) the package is there: the finder's own error stands.
    const { checkDemoPostgres } = await import('../../src/demo/demo.js');
    expect(() => checkDemoPostgres(() => { throw new Error('binaries not executable'); }, {})).toThrow('binaries not executable');
  });

  it('without dist/ and without tsx, bin says in one line how to get a build', async () => {
    const bare = join(work, 'bare');
    mkdirSync(bare);
    for (const f of ['package.json', 'bin', 'config']) cpSync(join(app, f), join(bare, f), { recursive: true });
    symlinkSync(join(app, 'node_modules'), join(bare, 'node_modules'));
    const r = await run(process.execPath, ['bin/order-relay.js', '--help'], { cwd: bare, env: prodEnv() });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^order-relay: no compiled build in dist\/ .*npm run build/)]);
  });

  it('in a checkout, dist/ is used only while it matches the sources', async () => {
    const checkout = join(work, 'checkout');
    mkdirSync(checkout);
    for (const f of ['package.json', 'bin', 'src', 'connectors']) cpSync(join(REPO, f), join(checkout, f), { recursive: true, preserveTimestamps: true });
    symlinkSync(join(REPO, 'node_modules'), join(checkout, 'node_modules'));
    const compile = (await import(pathToFileURL(join(checkout, 'bin/compile.js')).href)) as {
      builtEntry(): string | undefined;
      buildDist(): Promise<{ dir: string; files: number }>;
    };
    expect(compile.builtEntry()).toBeUndefined();
    await compile.buildDist();
    expect(compile.builtEntry()).toBe(join(checkout, 'dist/src/cli/main.js'));
    // A source edited after the build: the build is not current any more (bin compiles into .build/ instead).
    const later = new Date(Date.now() + 5_000);
    utimesSync(join(checkout, 'src/cli/main.ts'), later, later);
    expect(compile.builtEntry()).toBeUndefined();
  });
});
