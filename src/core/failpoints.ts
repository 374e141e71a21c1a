/**
 * Crash points for the crash-safety tests: `ORDER_RELAY_FAILPOINTS="ingest.after-commit=2"`
 * makes the process SIGKILL itself the 2nd time it passes that point, exactly where a power
 * cut would hurt most. Unset (always, in production) it costs one Map lookup.
 *
 * Points: ingest.after-commit (ledger committed, source not yet acknowledged),
 * ingest.after-slice (a slice of a large transaction committed without checkpoint),
 * dispatch.after-send (the API answered, the outcome is not yet recorded).
 */
const armed = new Map<string, number>();
for (const item of (process.env.ORDER_RELAY_FAILPOINTS ?? '').split(',')) {
  const [name, count] = item.split('=');
  if (name?.trim()) armed.set(name.trim(), Number(count ?? 1) || 1);
}

export function failpoint(name: string): void {
  if (armed.size === 0) return;
  const left = armed.get(name);
  if (left === undefined) return;
  if (left <= 1) process.kill(process.pid, 'SIGKILL');
  else armed.set(name, left - 1);
}
