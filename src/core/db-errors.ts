/**
 * Which database failures are transient: the server went away, is starting up or shutting
 * down, or the connection was lost (what a `pg_ctl restart -m fast`, a failover or a network
 * blip looks like to node-postgres). What failed is one statement or one transaction, so
 * nothing half-done remains, and the same work succeeds later: every path that meets one of
 * these (the sources storing a batch, start-up, the dispatcher, maintenance, the ownership
 * locks) retries it. Anything else (a refused login, a missing database, a privilege, a
 * bug) is not transient here; each caller decides what that means.
 */

/** SQLSTATEs of a server going away, not ready yet, or out of connection slots. */
const TRANSIENT_SQLSTATES = new Set([
  '57P01', // admin_shutdown: "terminating connection due to administrator command" (fast/smart shutdown, pg_terminate_backend)
  '57P02', // crash_shutdown: "terminating connection because of crash of another server process"
  '57P03', // cannot_connect_now: "the database system is starting up / shutting down / in recovery mode / not yet accepting connections"
  '57P05', // idle_session_timeout (PostgreSQL 14+)
  '53300', // too_many_connections: a restart storm of reconnecting clients
  '40001', // serialization_failure: retry the transaction
  '40P01', // deadlock_detected: one side was rolled back; retry it
]);

/** Socket errors of a server that is not there (yet) or a connection that broke. */
const TRANSIENT_SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/**
 * node-postgres and pg-pool raise these without a code: the socket closed (during the
 * handshake or afterwards), a client used after its connection failed, a connect timeout.
 */
const TRANSIENT_MESSAGES = [
  /^Connection terminated( unexpectedly| due to connection timeout)?$/,
  /^Client has encountered a connection error and is not queryable$/,
  /^timeout exceeded when trying to connect$/,
  /^Query read timeout$/,
];

/** Whether retrying `err` later can succeed: see the module comment. */
export function isTransientDbError(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 4) return false;
  const { code, message, errors, cause } = err as { code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  if (typeof code === 'string') {
    // Class 08: connection exceptions (08006 connection_failure, 08001 cannot establish, 08003, 08004, …).
    if (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_SOCKET_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code)) return true;
  }
  if (typeof message === 'string' && TRANSIENT_MESSAGES.some((re) => re.test(message))) return true;
  // An AggregateError (a host with several addresses, all refused) or a wrapped cause.
  if (Array.isArray(errors) && errors.length > 0 && errors.every((e) => isTransientDbError(e, depth + 1))) return true;
  return cause !== undefined && cause !== err && isTransientDbError(cause, depth + 1);
}
