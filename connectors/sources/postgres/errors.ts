import { isTransientDbError } from '../../../src/core/db-errors.js';

/** The slot is streaming to another process: this instance waits as a hot standby. */
export class SlotInUseError extends Error {
  override readonly name = 'SlotInUseError';
  constructor(slot: string, detail: string) {
    super(`replication slot "${slot}" is in use by another connection (${detail}); waiting for it to be released`);
  }
}

/** The slot does not exist and `create` is off (or it vanished while we had a checkpoint). */
export class SlotMissingError extends Error {
  override readonly name = 'SlotMissingError';
  constructor(slot: string, hint: string) {
    super(`replication slot "${slot}" does not exist: ${hint}`);
  }
}

export class PublicationError extends Error {
  override readonly name = 'PublicationError';
}

/**
 * A prerequisite that retrying cannot bring about (wal_level, a privilege, a slot of another
 * plugin or database): `run` stops with one line naming it and the fix, as `doctor` words them.
 */
export class SetupError extends Error {
  override readonly name = 'SetupError';
  constructor(
    /** The prerequisite, as `doctor` names its check: "wal_level", "replication slot", … */
    readonly check: string,
    readonly detail: string,
    readonly fix: string,
  ) {
    super(`${check}: ${detail} — fix: ${fix}`);
  }
}

export function pgCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

export const WAL_LEVEL_FIX =
  "ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL (RDS/Aurora: rds.logical_replication = 1; Cloud SQL: cloudsql.logical_decoding = on)";

export function walLevelError(current: string): SetupError {
  return new SetupError('wal_level', `is "${current}"; logical decoding needs "logical"`, WAL_LEVEL_FIX);
}

export function replicationPrivilegeError(role: string, message: string): SetupError {
  return new SetupError(
    'replication privilege',
    `role "${role}" may not stream a slot (${message})`,
    `ALTER ROLE "${role}" WITH REPLICATION; (RDS: GRANT rds_replication TO "${role}";) see config/grants.sql`,
  );
}

/**
 * What a failure of the replication connection (or of setting it up) means. Permanent causes
 * become a SetupError (or SlotMissingError); a slot streaming elsewhere is SlotInUseError (we
 * are the standby); everything else (refused connections, a server restarting, 57P0x, network
 * errors) comes back as it is and is retried.
 */
export function classifyReplicationError(err: unknown, slot: string, role = '<role>'): Error {
  if (err instanceof SetupError || err instanceof SlotMissingError || err instanceof PublicationError || err instanceof SlotInUseError) return err;
  // A server restarting or a connection lost is never a setup problem, whatever it says.
  if (isTransientDbError(err)) return err instanceof Error ? err : new Error(String(err));
  const code = pgCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === '55006') return new SlotInUseError(slot, message);
  if (code === '42704' && /replication slot/.test(message)) return new SlotMissingError(slot, 'it was dropped while order-relay was running');
  if (code === '55000' && /wal_level/.test(message)) {
    // "logical decoding requires wal_level >= logical" (its quoting varies by version).
    return new SetupError('wal_level', `${message}: logical decoding needs wal_level "logical"`, WAL_LEVEL_FIX);
  }
  if (code === '55000' && /not created in this database/.test(message)) {
    return new SetupError('replication slot', `"${slot}" belongs to another database (${message})`, 'choose another source.slot name (slot names are cluster-wide)');
  }
  if (code === '55000' && /invalidated|can no longer|exceeded the maximum reserved size|wal_removed/i.test(message)) {
    return new SetupError(
      'replication slot',
      `"${slot}" is invalidated (${message}): the WAL it needed was removed`,
      `SELECT pg_drop_replication_slot('${slot}'); then run (re-creates it) and order-relay backfill`,
    );
  }
  if ((code === '42501' || code === '28000') && /replication|walsender/.test(message) && !/pg_hba/.test(message)) return replicationPrivilegeError(role, message);
  if (code === '28000' || code === '28P01') {
    return new SetupError('source database', `cannot connect: ${message}`, 'check database.url / source.url (user, password) and pg_hba.conf (a "replication" line for the stream)');
  }
  if (code === '3D000') return new SetupError('source database', `cannot connect: ${message}`, 'check the database name in database.url / source.url');
  if (code === '53400' && /replication slots/.test(message)) {
    return new SetupError('replication slot', `"${slot}" cannot be created: ${message}`, 'raise max_replication_slots (restart needed) or drop an unused slot');
  }
  return err instanceof Error ? err : new Error(message);
}

/** Whether `run` must stop on this classified failure instead of retrying. */
export function isPermanent(failure: Error, create: boolean): boolean {
  return failure instanceof SetupError || failure instanceof PublicationError || (failure instanceof SlotMissingError && !create);
}
