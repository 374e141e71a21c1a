// No static imports: they would load (the config schema, every connector) before the first
// line here runs, and a signal in that time would kill the process by default.
interface StartupSignals {
  received: NodeJS.Signals[];
  handler: (signal: NodeJS.Signals) => void;
}

/** Commands that handle SIGTERM / SIGINT themselves (shut down cleanly); the others just stop. */
const HANDLES_SIGNALS = new Set(['run', 'backfill', 'demo', 'simulate']);

const command = process.argv.slice(2).find((a) => !a.startsWith('-'));
guardStartupSignals(HANDLES_SIGNALS.has(command ?? ''));

const { oneLine, program } = await import('./program.js');

// Every failure ends here: a non-zero exit and one line on stderr naming the command.
await program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`order-relay${command && program.commands.some((c) => c.name() === command) ? ` ${command}` : ''}: ${oneLine(err)}\n`);
  process.exit(1);
});

/**
 * Signals that arrive before the command has its own handler (bin/order-relay.js catches
 * them from its first line; a start through this file alone from here). For a command that
 * shuts down cleanly on a signal, they are kept and handed to its handler the moment it is
 * installed, so a SIGTERM in the first second of `run` is a clean stop (exit 0), not a death
 * by signal. Any other command stops as it would have without the guard.
 */
function guardStartupSignals(handedOver: boolean): void {
  const key = Symbol.for('order-relay.startup-signals');
  const global = globalThis as { [key]?: StartupSignals };
  const early: StartupSignals = global[key] ?? { received: [], handler: (signal) => early.received.push(signal) };
  const signals = ['SIGTERM', 'SIGINT'] as const;
  const stopByDefault = (signal: NodeJS.Signals) => {
    for (const s of signals) process.removeListener(s, early.handler);
    process.kill(process.pid, signal);
  };
  if (!handedOver) {
    const first = early.received[0];
    if (first) return stopByDefault(first);
    for (const s of signals) {
      process.removeListener(s, early.handler);
      process.once(s, stopByDefault);
    }
    return;
  }
  if (!global[key]) for (const s of signals) process.on(s, early.handler);
  // The command's handler: the first other SIGTERM / SIGINT listener. Once both of its
  // listeners are in place (the same tick), the early handler steps aside and the command
  // hears what arrived before it.
  let taken = false;
  const onNewListener = (event: string | symbol, listener: unknown) => {
    if (taken || (event !== 'SIGTERM' && event !== 'SIGINT') || listener === early.handler) return;
    taken = true;
    process.removeListener('newListener', onNewListener);
    queueMicrotask(() => {
      for (const s of signals) process.removeListener(s, early.handler);
      for (const signal of early.received.splice(0)) process.emit(signal, signal);
    });
  };
  process.on('newListener', onNewListener);
}
