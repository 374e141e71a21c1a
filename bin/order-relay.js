#!/usr/bin/env node
// A SIGTERM or Ctrl-C while the process starts (compiling, loading modules and the config)
// must not kill it half-way: from this first line on, signals are remembered, and the
// command's own handler gets them as soon as it exists (src/cli/main.ts).
const startupSignals = { received: [], handler: (signal) => startupSignals.received.push(signal) };
globalThis[Symbol.for('order-relay.startup-signals')] = startupSignals;
process.on('SIGTERM', startupSignals.handler);
process.on('SIGINT', startupSignals.handler);

// Compiled JavaScript, never a TypeScript loader where it can be helped: dist/ from
// `npm run build` (all the production image holds: esbuild and tsx are dev dependencies);
// in a checkout without a current dist/, the sources compiled on first start (and again
// whenever they change, bin/compile.js); where that cannot be written, tsx.
const { builtEntry, compiledEntry } = await import('./compile.js');
const entry = builtEntry() ?? (await compiledEntry());
if (entry) {
  await import(entry);
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write('order-relay: no compiled build in dist/ and no esbuild or tsx to run the sources: run `npm run build` where the dev dependencies are installed (npm ci), or install them\n');
    process.exit(1);
  }
  register();
  await import('../src/cli/main.ts');
}
