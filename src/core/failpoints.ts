/**
 * Crash points for the crash-safety tests: `ORDER_RELAY_FAILPOINTS="ingest.after-commit=2"`
 * makes the process SIGKILL itself the 2nd time it passes that point, exactly where a power
 * cut would hurt most; `name=N:hang` makes the Nth pass wait forever instead, so a test can
 * look at the server's state and then kill the process itself; `name=N:stop` SIGSTOPs it
 * there (a zombie to be, once the test sends SIGCONT). Unset (always, in
 * production) it costs one Map lookup.
 *
 * Points: ingest.before (a source batch reached the pipeline, nothing of it is written),
 * ingest.after-commit (ledger committed, source not yet acknowledged),
 * ingest.after-slice (a slice of a large transaction committed without checkpoint),
 * dispatch.after-send (the API answered, the outcome is not yet recorded).
 */
const armed = new Map<string, { left: number; hang: boolean; stop: boolean }>();
for (const item of (process.env.ORDER_RELAY_FAILPOINTS ?? '').split(',')) {
  const [name, spec = '1'] = item.split('=');
  if (!name?.trim()) continue;
  const [count, mode] = spec.split(':');
  armed.set(name.trim(), { left: Number(count) || 1, hang: mode === 'hang', stop: mode === 'stop' });
}

const forever = new Promise<never>(() => {});

/** Passes `name`; on its armed pass, SIGKILLs the process (or, armed with `:hang`, never returns). */
export function failpoint(name: string): void | Promise<never> {
  if (armed.size === 0) return;
  const point = armed.get(name);
  if (point === undefined) return;
  if (point.left > 1) {
    point.left--;
    return;
  }
  armed.delete(name);
  if (point.hang) {
    process.stderr.write(`failpoint ${name}: hanging\n`);
    return forever;
  }
  if (point.stop) {
    // Frozen on the spot (a long GC pause, a suspended VM) until the test sends SIGCONT.
    process.stderr.write(`failpoint ${name}: stopping\n`);
    process.kill(process.pid, 'SIGSTOP');
    return;
  }
  process.kill(process.pid, 'SIGKILL');
}
