// The TypeScript sources as plain JavaScript, so the long-running process carries no
// TypeScript loader (tsx's loader thread and its heap cost about 20 MB of resident memory).
// Transpile only, file by file, with esbuild (the same transform tsx applies); type checking
// stays with `npm run typecheck`.
//
// Two kinds of build, same layout (dist/src/cli/main.js, dist/connectors/…):
// - `npm run build` (`node bin/compile.js --out dist`) writes dist/, with build.json naming
//   the sources it was made from. The production image holds dist/ and no sources; esbuild
//   and tsx are dev dependencies and are not installed there.
// - In a checkout without a current dist/, the first start compiles into
//   .build/<hash of every source file's path, size and mtime>, and again whenever they
//   change. A build is written to a temporary directory and renamed into place, so processes
//   starting together (the tests spawn many) never see half a build.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SOURCE_DIRS = ['src', 'connectors'];
const DEFAULT_ENTRY = 'src/cli/main.ts';

function sources() {
  const files = [];
  for (const dir of SOURCE_DIRS) {
    for (const entry of readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(join(entry.parentPath ?? entry.path, entry.name));
    }
  }
  return files.sort();
}

/** Which sources a build was made from: every file's path, size and mtime. */
function sourcesId(files) {
  const hash = createHash('sha256');
  for (const f of files) {
    const s = statSync(f);
    hash.update(`${relative(ROOT, f)}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

/** Transpiles `files` into a fresh directory `dir` (made beside it, then renamed into place). */
async function transpile(files, dir, stamp) {
  const { build } = await import('esbuild');
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await build({
    entryPoints: files,
    outdir: tmp,
    outbase: ROOT,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'inline',
    logLevel: 'silent',
  });
  writeFileSync(join(tmp, 'package.json'), '{"type":"module"}\n');
  if (stamp) writeFileSync(join(tmp, 'build.json'), `${JSON.stringify(stamp, null, 2)}\n`);
  writeFileSync(join(tmp, '.complete'), `${new Date().toISOString()}\n`);
  return tmp;
}

/**
 * The entry point in dist/ (`npm run build`), or undefined when there is none or it is not
 * current: where the sources are beside it (a checkout), it must have been built from them
 * as they are now. Without sources (the production image) dist/ is all there is.
 */
export function builtEntry(entry = DEFAULT_ENTRY) {
  const dist = join(ROOT, 'dist');
  const target = join(dist, entry.replace(/\.ts$/, '.js'));
  try {
    if (!existsSync(join(dist, '.complete')) || !existsSync(target)) return undefined;
    if (SOURCE_DIRS.some((d) => existsSync(join(ROOT, d)))) {
      const stamp = JSON.parse(readFileSync(join(dist, 'build.json'), 'utf8'));
      if (stamp.sources !== sourcesId(sources())) return undefined;
    }
    return target;
  } catch {
    return undefined;
  }
}

/**
 * The entry point compiled under .build/ for the sources as they are, compiling them first
 * if needed. Undefined when compiling is not possible here (no esbuild, a read-only
 * install): the caller then falls back to tsx.
 */
export async function compiledEntry(entry = DEFAULT_ENTRY) {
  if (process.env.ORDER_RELAY_NO_COMPILE) return undefined;
  try {
    const files = sources();
    const id = sourcesId(files);
    const buildRoot = join(ROOT, '.build');
    const dir = join(buildRoot, id);
    const target = join(dir, entry.replace(/\.ts$/, '.js'));
    if (existsSync(join(dir, '.complete'))) return target;

    mkdirSync(buildRoot, { recursive: true });
    const tmp = await transpile(files, dir);
    try {
      renameSync(tmp, dir);
    } catch {
      // Another process finished the same build first: use theirs.
      rmSync(tmp, { recursive: true, force: true });
    }
    if (!existsSync(join(dir, '.complete'))) return undefined;
    prune(buildRoot, id);
    return target;
  } catch {
    return undefined;
  }
}

/** `npm run build`: the sources into `out` (dist/), replacing what was there. */
export async function buildDist(out = join(ROOT, 'dist')) {
  const files = sources();
  const dir = resolve(out);
  const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
  const tmp = await transpile(files, dir, { version, sources: sourcesId(files), files: files.length, builtAt: new Date().toISOString() });
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return { dir, files: files.length };
}

/** Older builds go; a build some running process still uses stays readable until it exits. */
function prune(buildRoot, keep) {
  try {
    for (const name of readdirSync(buildRoot)) {
      if (name === keep || name.includes('.tmp-')) continue;
      const age = Date.now() - statSync(join(buildRoot, name)).mtimeMs;
      if (age > 10 * 60_000) rmSync(join(buildRoot, name), { recursive: true, force: true });
    }
  } catch {
    /* best effort */
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const i = process.argv.lastIndexOf('--out');
  const out = i > 0 ? process.argv[i + 1] : undefined;
  if (i > 0 && !out) {
    process.stderr.write('usage: node bin/compile.js [--out <dir>]   (default dist/)\n');
    process.exit(2);
  }
  try {
    const { dir, files } = await buildDist(out ? resolve(out) : undefined);
    process.stdout.write(`order-relay: ${files} sources compiled into ${relative(process.cwd(), dir) || '.'}\n`);
  } catch (err) {
    const missing = err && err.code === 'ERR_MODULE_NOT_FOUND' && /esbuild/.test(String(err.message));
    process.stderr.write(`order-relay build: ${missing ? 'esbuild is not installed (a dev dependency: npm ci without --omit=dev)' : err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
