import { describe, expect, it } from 'vitest';
import { isTransientDbError } from '../../src/core/db-errors.js';
import { classifyReplicationError, isPermanent } from '../../connectors/sources/postgres/errors.js';

/** An error as node-postgres raises it: the server's message and SQLSTATE (or a socket's errno code). */
function pgError(code: string | undefined, message: string): Error {
  return code === undefined ? new Error(message) : Object.assign(new Error(message), { code });
}

/** What a Postgres restart (pg_ctl restart -m fast), a crash or a lost network looks like to node-postgres. */
const transient: Array<[string | undefined, string]> = [
  ['57P01', 'terminating connection due to administrator command'],
  ['57P02', 'terminating connection because of crash of another server process'],
  ['57P03', 'the database system is starting up'],
  ['57P03', 'the database system is shutting down'],
  ['57P03', 'the database system is in recovery mode'],
  ['57P03', 'the database system is not yet accepting connections'],
  ['08006', 'connection failure'],
  ['08001', 'could not connect to server'],
  ['08003', 'connection does not exist'],
  ['53300', 'sorry, too many clients already'],
  ['ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'],
  ['ECONNRESET', 'read ECONNRESET'],
  ['EPIPE', 'write EPIPE'],
  ['ETIMEDOUT', 'connect ETIMEDOUT 10.0.0.5:5432'],
  [undefined, 'Connection terminated unexpectedly'],
  [undefined, 'Connection terminated'],
  [undefined, 'Connection terminated due to connection timeout'],
  [undefined, 'Client has encountered a connection error and is not queryable'],
  [undefined, 'timeout exceeded when trying to connect'],
];

/** Setup errors and bugs: retrying cannot fix them. */
const notTransient: Array<[string | undefined, string]> = [
  ['28P01', 'password authentication failed for user "relay"'],
  ['28000', 'no pg_hba.conf entry for host "10.0.0.9", user "relay", database "shop"'],
  ['3D000', 'database "shop" does not exist'],
  ['42P01', 'relation "order_relay.log" does not exist'],
  ['42501', 'permission denied for schema order_relay'],
  ['55000', 'logical decoding requires wal_level >= logical'],
  ['23505', 'duplicate key value violates unique constraint "sinks_pkey"'],
  ['ENOTFOUND', 'getaddrinfo ENOTFOUND db.example'],
  [undefined, 'ledger.shards is 8 in the config, but the ledger order_relay was made with 4'],
  [undefined, 'Connection terminated unexpectedly, and then some'],
];

describe('isTransientDbError: a server going away, starting up, shutting down, a connection lost', () => {
  it('is transient for every way a Postgres restart or a lost connection shows', () => {
    for (const [code, message] of transient) expect(isTransientDbError(pgError(code, message)), `${code} ${message}`).toBe(true);
  });

  it('is not transient for setup errors, bugs and non-errors', () => {
    for (const [code, message] of notTransient) expect(isTransientDbError(pgError(code, message)), `${code} ${message}`).toBe(false);
    for (const value of [undefined, null, 'ECONNRESET', 42, {}]) expect(isTransientDbError(value), String(value)).toBe(false);
  });

  it('looks into an AggregateError (every address refused) and a cause', () => {
    const refused = (host: string) => pgError('ECONNREFUSED', `connect ECONNREFUSED ${host}:5432`);
    expect(isTransientDbError(new AggregateError([refused('::1'), refused('127.0.0.1')], ''))).toBe(true);
    expect(isTransientDbError(new AggregateError([refused('::1'), pgError('28P01', 'password authentication failed')], ''))).toBe(false);
    expect(isTransientDbError(new Error('migration failed', { cause: pgError('57P01', 'terminating connection due to administrator command') }))).toBe(true);
  });

  it('the replication stream retries all of them and keeps the error as it was', () => {
    for (const [code, message] of transient) {
      const err = pgError(code, message);
      const failure = classifyReplicationError(err, 'order_relay', 'relay');
      expect(failure, `${code} ${message}`).toBe(err);
      expect(isPermanent(failure, false), `${code} ${message}`).toBe(false);
    }
  });
});
