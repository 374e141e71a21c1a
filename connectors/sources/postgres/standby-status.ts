/**
 * The Standby Status Update a replication client sends the walsender ('r' in CopyData):
 * written here rather than through pg-logical-replication's `acknowledge()`, which reports
 * the LSN it is given plus one (and a timestamp that is not microseconds since 2000).
 *
 * For a logical slot the server takes the flush position as `confirmed_flush_lsn`, and on the
 * next START_REPLICATION it skips every transaction whose commit record *starts* before it.
 * Under concurrent writers the next commit record often starts exactly where the stored one
 * ended, so the position reported must be the ledger checkpoint itself, never one byte more.
 */

/** Microseconds between the Unix epoch and 2000-01-01 00:00:00 UTC, the protocol's epoch. */
const PG_EPOCH_MICROS = 946_684_800_000_000n;

export function standbyStatusUpdate(lsn: bigint, nowMs: number = Date.now(), requestReply = false): Buffer {
  const msg = Buffer.alloc(34);
  msg.write('r', 0, 'latin1');
  msg.writeBigUInt64BE(lsn, 1); // written
  msg.writeBigUInt64BE(lsn, 9); // flushed: becomes confirmed_flush_lsn
  msg.writeBigUInt64BE(lsn, 17); // applied
  msg.writeBigInt64BE(BigInt(Math.floor(nowMs)) * 1000n - PG_EPOCH_MICROS, 25);
  msg.writeUInt8(requestReply ? 1 : 0, 33);
  return msg;
}
