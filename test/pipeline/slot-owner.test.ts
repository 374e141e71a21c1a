import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slotOwner } from '../../connectors/sources/postgres/ownership.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, deepMerge, spawnConnector, startSimulators, testConfig, writeConfig, type Connector, type Simulators } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Two `order-relay run` processes on one slot: the one holding the slot's advisory lock
 * streams, the other waits as a hot standby and takes over when the owner's session ends
 * (SIGKILL of the owner; pg_terminate_backend of its lock connection). Every event reaches
 * each API once.
 */

let db: TestDatabase;
let sims: Simulators;
const connectors: Connector[] = [];

beforeAll(async () => {
  [db, sims] = await Promise.all([createTestDatabase('slotowner'), startSimulators()]);
  await createOrderTables(db.pool);
});
afterAll(async () => {
  for (const c of connectors) c.child.kill('SIGKILL');
  await Promise.all(connectors.map((c) => c.exited));
  await sims?.close();
  await db?.drop();
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const PAID = (no: string) =>
  `INSERT INTO orders (order_no, status, buyer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
   VALUES ('${no}', 'PAID', '13800138000', '2088000000000042', 'm', 1, 'C', 'S', '1', '2026-12-01 10:00:00', 1, '10.00', '9.00')`;

describe('slot ownership: one instance streams, a standby takes over', () => {
  it('the standby streams within seconds of the owner being killed, and after its lock connection is terminated nothing is lost or doubled', async ({ onTestFailed }) => {
    const base = testConfig(db.url, sims, { source: { standbyPoll: '200ms' }, log: { level: 'info' } });
    const [portA, portB] = [await freePort(), await freePort()];
    const { path, config } = writeConfig(deepMerge(base, { admin: { listen: `127.0.0.1:${portA}` } }), sims.env);
    const { path: pathB } = writeConfig(deepMerge(base, { admin: { listen: `127.0.0.1:${portB}` } }), sims.env);
    const slot = (config.source as { slot: string }).slot;
    const a = spawnConnector(path, sims.env);
    connectors.push(a);
    onTestFailed(() => connectors.forEach((c, i) => console.error(`connector ${i} output:\n${c.output().slice(-6000)}`)));
    const owner = async () => slotOwner(db.pool, slot);
    const pidOf = (c: Connector) => c.child.pid!;
    await waitFor(async () => (await owner())?.endsWith(`:${pidOf(a)}`), 'the first instance to hold the slot lock', 60_000);
    await waitFor(async () => (await db.pool.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [slot])).rowCount === 1, 'the first instance to stream', 60_000);
    const b = spawnConnector(pathB, sims.env);
    connectors.push(b);
    await waitFor(() => /standby: another instance streams the slot/.test(b.output()), 'the second instance to stand by', 60_000);
    // A standby is ready (200) and says it is one; the owner's metrics say it owns the slot.
    const readyB = await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${portB}/readyz`).catch(() => undefined);
      return r ? { status: r.status, body: (await r.json()) as { checks: Array<{ name: string; ok: boolean; role?: string; detail: string }> } } : undefined;
    }, 'the standby\'s /readyz', 30_000);
    expect(readyB.status).toBe(200);
    expect(readyB.body.checks.find((c) => c.name === 'source:postgres')).toMatchObject({ ok: true, role: 'standby', detail: expect.stringContaining('standby') });
    const metric = async (port: number) => (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).match(/^order_relay_slot_owner\{source="postgres"\} (\d)$/m)?.[1];
    expect(await metric(portA)).toBe('1');
    expect(await metric(portB)).toBe('0');

    let n = 0;
    const insert = async (k: number) => {
      for (let i = 0; i < k; i++) await db.pool.query(PAID(`SO${++n}`));
    };
    await insert(20);
    await waitFor(() => sims.antchain.stats().effects === 20, 'the first 20 orders delivered', 60_000);
    expect(await owner()).toMatch(new RegExp(`:${pidOf(a)}$`));

    // The owner dies with changes still coming: the standby takes the lock and the slot.
    await insert(10);
    a.child.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(async () => (await owner())?.endsWith(`:${pidOf(b)}`), 'the standby to take the slot lock', 30_000, 50);
    await waitFor(
      async () => (await db.pool.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [slot])).rowCount === 1 && /streaming/.test(b.output()),
      'the standby to stream',
      30_000,
      50,
    );
    const failoverMs = Date.now() - killedAt;
    expect(failoverMs).toBeLessThan(5_000);
    await waitFor(async () => (await metric(portB)) === '1', 'the new owner\'s order_relay_slot_owner', 10_000);
    await insert(10);
    await waitFor(() => sims.antchain.stats().effects === 40 && sims.zhima.stats().effects === 40, 'all 40 orders delivered after the failover', 60_000);

    // An owner whose lock connection is cut stops streaming and acknowledging, then (alone
    // now) takes the lock again and goes on where the ledger is.
    await db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'order-relay-slot-owner %' AND datname = current_database()`);
    await waitFor(() => /lost the slot lock: stopped streaming and acknowledging/.test(b.output()), 'the owner to notice it lost the lock', 30_000);
    await insert(10);
    await waitFor(() => sims.antchain.stats().effects === 50 && sims.zhima.stats().effects === 50, 'all 50 orders delivered after the lock came back', 60_000);

    // One effect per event at each API (a repeat is absorbed and counted apart, never a second effect), in order.
    expect(sims.antchain.stats().effects).toBe(50);
    expect(sims.zhima.stats().effects).toBe(50);
    expect(sims.antchain.stats().violations).toEqual([]);
    expect(sims.zhima.stats().conflictingDuplicates).toBe(0);
    const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM order_relay.log`);
    expect(rows[0]!.n).toBe(50);
    console.log(`slot failover: ${failoverMs} ms from SIGKILL of the owner to the standby streaming`);
  }, 240_000);
});
