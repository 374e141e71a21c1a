#!/usr/bin/env node
// A SIGTERM or Ctrl-C while the process starts (compiling, loading modules and the config)
// must not kill it half-way: from this first line on, signals are remembered, and the
// command's own handler gets them as soon as it exists (src/cli/main.ts).
const startupSignals = { received: [], handler: (signal) => startupSignals.received.push(signal) };
globalThis[Symbol.for('order-relay.startup-signals')] = startupSignals;
process.on('SIGTERM', startupSignals.handler);
process.on('SIGINT', startupSignals.handler);

// `npx order-relay …` from a checkout, no build step: the sources are compiled to JavaScript
// on first start (and again whenever they change); where that cannot be written, they run
// through tsx instead.
const { compiledEntry } = await import('./compile.js');
const entry = await compiledEntry();
if (entry) {
  await import(entry);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
