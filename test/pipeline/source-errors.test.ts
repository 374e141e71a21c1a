import { describe, expect, it } from 'vitest';
import { classifyReplicationError, isPermanent, SetupError, SlotInUseError, SlotMissingError } from '../../connectors/sources/postgres/errors.js';

/** An error as node-postgres raises it: the server's message and SQLSTATE. */
function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

const permanent = (err: unknown, create = true) => {
  const failure = classifyReplicationError(err, 'order_relay', 'relay');
  return { failure, permanent: isPermanent(failure, create) };
};

describe('replication errors: which end `run`, which are retried', () => {
  it('wal_level below logical is permanent, with doctor\'s fix (both spellings of the server message)', () => {
    for (const message of ['logical decoding requires wal_level >= logical', 'logical decoding requires "wal_level" >= "logical"']) {
      const { failure, permanent: stop } = permanent(pgError('55000', message));
      expect(stop).toBe(true);
      expect(failure).toBeInstanceOf(SetupError);
      expect(failure.message).toBe(
        `wal_level: ${message}: logical decoding needs wal_level "logical" — fix: ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL (RDS/Aurora: rds.logical_replication = 1; Cloud SQL: cloudsql.logical_decoding = on)`,
      );
    }
  });

  it('a slot of another database, an invalidated slot, a role without REPLICATION, bad credentials are permanent', () => {
    const cases: Array<[Error, RegExp]> = [
      [pgError('55000', 'replication slot "order_relay" was not created in this database'), /^replication slot: "order_relay" belongs to another database .* — fix: choose another source\.slot name/],
      [pgError('55000', 'can no longer get changes from replication slot "order_relay"'), /^replication slot: "order_relay" is invalidated .* — fix: SELECT pg_drop_replication_slot\('order_relay'\); then run \(re-creates it\) and order-relay backfill$/],
      [pgError('28000', 'must be superuser or replication role to start walsender'), /^replication privilege: role "relay" may not stream a slot .* — fix: ALTER ROLE "relay" WITH REPLICATION;/],
      [pgError('42501', 'permission denied to use replication slots'), /^replication privilege: /],
      [pgError('28P01', 'password authentication failed for user "relay"'), /^source database: cannot connect: password authentication failed .* — fix: check database\.url/],
      [pgError('3D000', 'database "shop" does not exist'), /^source database: cannot connect: database "shop" does not exist — fix: /],
    ];
    for (const [err, message] of cases) {
      const { failure, permanent: stop } = permanent(err);
      expect(stop, err.message).toBe(true);
      expect(failure.message).toMatch(message);
    }
  });

  it('a slot in use is the standby\'s wait; refused connections and restarting servers are retried', () => {
    const inUse = permanent(pgError('55006', 'replication slot "order_relay" is active for PID 4242'));
    expect(inUse.failure).toBeInstanceOf(SlotInUseError);
    expect(inUse.permanent).toBe(false);
    const transient = [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      pgError('57P03', 'the database system is starting up'),
      pgError('57P01', 'terminating connection due to administrator command'),
      pgError('53300', 'number of requested standby connections exceeds max_wal_senders (currently 10)'),
      new Error('Connection terminated unexpectedly'),
    ];
    for (const err of transient) expect(permanent(err), err.message).toEqual({ failure: err, permanent: false });
  });

  it('a slot dropped while running is re-created when allowed, and ends `run` otherwise', () => {
    const dropped = pgError('42704', 'replication slot "order_relay" does not exist');
    expect(permanent(dropped).failure).toBeInstanceOf(SlotMissingError);
    expect(permanent(dropped, true).permanent).toBe(false);
    expect(permanent(dropped, false).permanent).toBe(true);
  });
});
