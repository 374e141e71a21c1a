import { z } from 'zod';
import { backoffShape } from '../../../src/config/sink-common.js';
import { duration, durationOrOff, identifier, size } from '../../../src/config/units.js';

export const postgresSourceSchema = z.strictObject({
  kind: z.literal('postgres'),
  /** Source database; defaults to `database.url`. Needs the REPLICATION attribute (or superuser). */
  url: z.string().min(1).optional(),
  slot: identifier().default('order_relay'),
  publication: identifier().default('order_relay'),
  /** Create the publication (for the configured tables) and the slot when they are missing. */
  create: z.boolean().default(true),
  /**
   * Write a `pg_logical_emit_message` this often while idle, so the slot advances even when
   * only unpublished tables (or other databases) are written. "off" disables it.
   */
  heartbeat: durationOrOff().default(30_000),
  /** Send a standby status update at least this often. */
  statusInterval: duration().default(10_000),
  reconnect: backoffShape(500, 30_000),
  /**
   * A standby (another instance holds the slot's lock) asks for the lock this often: the
   * longest it waits to take over once the owner's session has ended.
   */
  standbyPoll: duration().default(1_000),
  /**
   * An owner that stops answering (a frozen process, a long pause) loses the slot's lock after
   * this (PostgreSQL 14+: idle_session_timeout on the lock's session, pinged while it runs).
   */
  lease: duration().default(10_000),
  /** Changes per ledger transaction; a larger source transaction is fed in slices of this size. */
  maxBatchChanges: z.number().int().min(1).max(100_000).default(500),
  /** Bytes of decoded changes buffered before the socket is paused. */
  maxBufferBytes: size().default(32 * 1024 * 1024),
});

export type PostgresSourceConfig = z.output<typeof postgresSourceSchema>;
