import { hostname } from 'node:os';

/** This process as other instances and `status` see it: host and pid. */
export const instanceName = () => `${hostname()}:${process.pid}`;

/**
 * A lease on a session that holds an advisory lock: Postgres ends the session once it has been
 * idle for `leaseMs` (idle_session_timeout, PostgreSQL 14+; earlier servers keep the lock as
 * long as the session), and the pings keep it busy while this process runs. A frozen process
 * stops pinging and so loses the lock. A failed ping goes to `onLost`; an answered one to
 * `onAlive` (the holder knows when the lock was last known to be its own). Returns the stop.
 */
export async function keepLease(
  client: { query(text: string): Promise<unknown> },
  leaseMs: number,
  onLost: (err: Error) => void,
  onAlive?: () => void,
): Promise<() => void> {
  await client.query(`SET idle_session_timeout = ${Math.max(1, Math.round(leaseMs))}`).catch(() => {});
  const ping = setInterval(
    () =>
      void client.query('SELECT 1').then(
        () => onAlive?.(),
        (err: Error) => onLost(err),
      ),
    Math.max(100, Math.floor(leaseMs / 4)),
  );
  ping.unref();
  return () => clearInterval(ping);
}
