// Compiles the TypeScript sources to plain JavaScript once per source version, so the
// long-running process carries no TypeScript loader (tsx's loader thread and its heap cost
// about 20 MB of resident memory). Transpile only, file by file, with esbuild (the same
// transform tsx applies); type checking stays with `npm run typecheck`.
//
// Builds live under .build/<hash of every source file's path, size and mtime>. A build is
// written to a temporary directory and renamed into place, so processes starting together
// (the tests spawn many) never see half a build. Returns the compiled entry point, or
// undefined when compiling is not possible here (read-only install): the caller then falls
// back to tsx.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SOURCE_DIRS = ['src', 'connectors'];

function sources() {
  const files = [];
  for (const dir of SOURCE_DIRS) {
    for (const entry of readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(join(entry.parentPath ?? entry.path, entry.name));
    }
  }
  return files.sort();
}

export async function compiledEntry(entry = 'src/cli/main.ts') {
  if (process.env.ORDER_RELAY_NO_COMPILE) return undefined;
  try {
    const files = sources();
    const hash = createHash('sha256');
    for (const f of files) {
      const s = statSync(f);
      hash.update(`${relative(ROOT, f)}\0${s.size}\0${s.mtimeMs}\n`);
    }
    const id = hash.digest('hex').slice(0, 16);
    const buildRoot = join(ROOT, '.build');
    const dir = join(buildRoot, id);
    const target = join(dir, entry.replace(/\.ts$/, '.js'));
    if (existsSync(join(dir, '.complete'))) return target;

    const { build } = await import('esbuild');
    const tmp = join(buildRoot, `${id}.tmp-${process.pid}`);
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
    writeFileSync(join(tmp, '.complete'), `${new Date().toISOString()}\n`);
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
