import pg from 'pg';
import { instanceName, keepLease } from '../../../src/core/lease.js';

export { instanceName };

/**
 * Which instance streams a slot: the one holding a session advisory lock on the slot's
 * name, on a connection of its own to the source database. The others wait as hot
 * standbys and try again every `pollMs`; the lock goes with its session, so a killed
 * process, a lost host or a terminated backend (`pg_terminate_backend`) frees it at once.
 *
 * The slot's own `active` flag is not enough: it is free for a moment between a walsender
 * ending and the next one starting, and says nothing to an instance that is not streaming.
 */
export const SLOT_LOCK_APP = 'order-relay-slot-owner';

/** The two keys of the lock (`pg_try_advisory_lock(int, int)`), in SQL. */
export const slotLockKeys = `hashtext('order-relay:slot'), hashtext($1::text)`;

export interface SlotOwnership {
  /** Settles when the lock's connection fails: the slot is no longer ours. */
  lost: Promise<Error>;
  release(): Promise<void>;
}

/**
 * One try for the slot's lock: this process's ownership, or who holds it (`standby`). A
 * connection that fails rejects, for the caller to classify and retry as any other.
 */
export async function trySlot(url: string, slot: string, leaseMs: number): Promise<SlotOwnership | { standby: true; owner: string | undefined }> {
  const client = new pg.Client({ connectionString: url, application_name: `${SLOT_LOCK_APP} ${instanceName()}`.slice(0, 63) });
  let lostWith: ((err: Error) => void) | undefined;
  const lost = new Promise<Error>((resolve) => (lostWith = resolve));
  client.on('error', (err) => lostWith!(err));
  client.on('end', () => lostWith!(new Error('the slot lock connection ended')));
  let held = false;
  try {
    await client.connect();
    const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${slotLockKeys}) AS ok`, [slot]);
    held = rows[0]!.ok;
    if (!held) return { standby: true, owner: await slotOwner(client, slot).catch(() => undefined) };
    const stopLease = await keepLease(client, leaseMs, (err) => lostWith!(err));
    void lost.then(stopLease);
    return {
      lost,
      async release() {
        stopLease();
        await client.query(`SELECT pg_advisory_unlock(${slotLockKeys})`, [slot]).catch(() => {});
        await client.end().catch(() => {});
      },
    };
  } finally {
    if (!held) await client.end().catch(() => {});
  }
}

/** The instance holding the slot's lock (its connection's application_name), if any. */
export async function slotOwner(db: pg.ClientBase | pg.Pool, slot: string): Promise<string | undefined> {
  const { rows } = await db.query<{ app: string }>(
    `SELECT a.application_name AS app
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND (l.classid::int, l.objid::int) = (${slotLockKeys}) AND l.objsubid = 2`,
    [slot],
  );
  const app = rows[0]?.app;
  return app?.startsWith(`${SLOT_LOCK_APP} `) ? app.slice(SLOT_LOCK_APP.length + 1) : app;
}
