import { describe, expect, it } from 'vitest';
import { slotOwner } from '../../connectors/sources/postgres/ownership.js';
import { frozenInstanceFixture } from '../helpers/frozen.js';
import { spawnConnector, testConfig, writeConfig } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A slot owner frozen (SIGSTOP) with a batch in hand, past its lease: a standby takes the slot
 * and claims it in the ledger, the order moves on (PAID, then USED), then the frozen one is
 * resumed (SIGCONT) and tries to write its stale batch. The ledger refuses it: the order row
 * stays USED, every event reaches each API once.
 */

const f = frozenInstanceFixture();

describe('a frozen slot owner, resumed after another took over', () => {
  it('writes nothing: its stale batch is refused by the ledger, the order row keeps the new owner\'s state', async ({ onTestFailed }) => {
    const { server, sims, pool, connectors, insertPaid } = f;
    const base = testConfig(server.url, sims, { source: { standbyPoll: '200ms', lease: '1s' }, dispatcher: { lease: '1s' }, log: { level: 'info' } });
    const { path, config } = writeConfig(base, sims.env);
    const slot = (config.source as { slot: string }).slot;
    // A freezes the 2nd time a batch reaches its pipeline, before anything of it is written.
    const a = spawnConnector(path, { ...sims.env, ORDER_RELAY_FAILPOINTS: 'ingest.before=2:stop' });
    connectors.push(a);
    onTestFailed(() => connectors.forEach((c, i) => console.error(`connector ${i} output:\n${c.output().slice(-6000)}`)));
    await waitFor(async () => (await slotOwner(pool, slot))?.endsWith(`:${a.child.pid}`), 'A to own the slot', 60_000);
    // The lock comes before the slot: an order inserted before the slot exists is not streamed.
    await waitFor(async () => (await pool.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [slot])).rowCount === 1, 'A to stream the slot', 60_000);
    await insertPaid('Z1');
    await waitFor(() => sims.antchain.stats().effects === 1, 'Z1 delivered by A', 60_000);

    await insertPaid('Z2');
    await waitFor(() => /failpoint ingest\.before: stopping/.test(a.output()), 'A frozen with Z2\'s batch in hand', 30_000);
    const b = spawnConnector(path, sims.env);
    connectors.push(b);
    await waitFor(async () => (await slotOwner(pool, slot))?.endsWith(`:${b.child.pid}`), 'B to take the slot once A\'s lease ran out', 30_000, 50);
    await waitFor(() => sims.antchain.stats().effects === 2 && sims.zhima.stats().effects === 2, 'Z2 delivered by B', 60_000);
    // The order moves on under B: its ledger row is USED now.
    await pool.query(`UPDATE orders SET status = 'USED' WHERE order_no = 'Z2'`);
    const orderRow = async () => (await pool.query<{ status: string }>(`SELECT row->>'status' AS status FROM order_relay.orders WHERE order_no = 'Z2'`)).rows[0]?.status;
    await waitFor(async () => (await orderRow()) === 'USED', 'B to store Z2 as USED', 60_000);
    const checkpoint = async () => (await pool.query<{ p: string }>(`SELECT position AS p FROM order_relay.checkpoints WHERE source = 'postgres' AND stream = 'slot'`)).rows[0]?.p;
    const before = await checkpoint();

    // A wakes up with its stale batch (Z2 as PAID) and tries to write it.
    a.child.kill('SIGCONT');
    await waitFor(() => /fenced: another instance owns the slot now/.test(a.output()), 'A to be refused', 30_000);
    expect(await orderRow()).toBe('USED');
    expect(await checkpoint()).toBe(before);
    expect((await slotOwner(pool, slot))?.endsWith(`:${b.child.pid}`)).toBe(true);
    // B goes on; nothing was doubled or lost.
    await insertPaid('Z3');
    const codes = async () => (await pool.query<{ c: string }>(`SELECT string_agg(code || ':' || order_key, ',' ORDER BY seq) AS c FROM order_relay.log`)).rows[0]?.c;
    await waitFor(async () => (await codes()) === 'TRADE_SUCCESS:Z1,TRADE_SUCCESS:Z2,TRADE_CONFIRM:Z2,TRADE_SUCCESS:Z3', 'Z2\'s confirm and Z3 in the log', 60_000).catch(async (err) => {
      throw new Error(`${String(err)}; log: ${await codes()}; effects antchain ${sims.antchain.stats().effects}, zhima ${sims.zhima.stats().effects}`);
    });
    await waitFor(() => sims.antchain.stats().effects === 4 && sims.zhima.stats().effects === 4, 'Z2\'s confirm and Z3 delivered', 60_000).catch((err) => {
      throw new Error(`${String(err)}; effects antchain ${sims.antchain.stats().effects}, zhima ${sims.zhima.stats().effects}`);
    });
    expect(sims.antchain.stats().violations).toEqual([]);
    expect(sims.zhima.stats().conflictingDuplicates).toBe(0);
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM order_relay.log`);
    expect(rows[0]!.n).toBe(4);
  }, 240_000);
});
