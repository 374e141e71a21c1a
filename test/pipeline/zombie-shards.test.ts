import { describe, expect, it } from 'vitest';
import { frozenInstanceFixture } from '../helpers/frozen.js';
import { spawnConnector, testConfig, writeConfig } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A connector frozen (SIGSTOP) with an API's answer in hand, past its lease: another instance
 * takes its delivery shards (and the slot), sends what was not recorded again under the same
 * keys and records it; then the frozen one is resumed (SIGCONT). Nothing it writes lands:
 * one outcome per (event, sink), every event one effect at each API.
 */

const f = frozenInstanceFixture();

describe('a frozen deliverer, resumed after another took its shards', () => {
  it('writes nothing: one outcome per event and sink, one effect per event at each API', async ({ onTestFailed }) => {
    const { server, sims, pool, connectors, insertPaid } = f;
    const base = testConfig(server.url, sims, { source: { standbyPoll: '200ms', lease: '1s' }, dispatcher: { lease: '1s' }, log: { level: 'info' } });
    const { path } = writeConfig(base, sims.env);
    // A freezes when the first API answer reaches it, before the outcome is recorded.
    const a = spawnConnector(path, { ...sims.env, ORDER_RELAY_FAILPOINTS: 'dispatch.after-send=1:stop' });
    connectors.push(a);
    onTestFailed(() => connectors.forEach((c, i) => console.error(`connector ${i} output:\n${c.output().slice(-6000)}`)));
    const shardHolders = async () =>
      (await pool.query<{ app: string }>(`SELECT DISTINCT a.application_name AS app FROM pg_stat_activity a WHERE a.application_name LIKE 'order-relay-shards %'`)).rows.map((r) => r.app);
    await waitFor(async () => (await shardHolders()).some((x) => x.endsWith(`:${a.child.pid}`)), 'A to hold delivery shards', 60_000);
    await waitFor(async () => (await pool.query(`SELECT 1 FROM pg_replication_slots WHERE active`)).rowCount === 1, 'A to stream the slot', 60_000);
    await insertPaid('F1');
    await waitFor(() => /failpoint dispatch\.after-send: stopping/.test(a.output()), 'A frozen with an answer in hand', 60_000);

    const b = spawnConnector(path, sims.env);
    connectors.push(b);
    await waitFor(() => sims.antchain.stats().effects === 1 && sims.zhima.stats().effects === 1, 'F1 delivered to both APIs', 60_000);
    const outcomes = async () =>
      (await pool.query<{ sink: string; n: number }>(`SELECT sink, count(*)::int AS n FROM order_relay.outcomes GROUP BY sink ORDER BY sink`)).rows.map((r) => `${r.sink}:${r.n}`).join(',');
    await waitFor(async () => (await outcomes()) === 'antchain:1,zhima:1', 'B to record F1\'s outcomes', 60_000);
    // A wakes up with its answer and the shards it no longer holds.
    a.child.kill('SIGCONT');
    await waitFor(() => /lost the connection that holds this instance's shards|another instance took shards of this sink/.test(a.output()), 'A to learn it lost its shards', 30_000);
    expect(await outcomes()).toBe('antchain:1,zhima:1');

    // Both go on (A joins again and gets its share): each new event once.
    for (const no of ['F2', 'F3', 'F4', 'F5']) await insertPaid(no);
    await waitFor(() => sims.antchain.stats().effects === 5 && sims.zhima.stats().effects === 5, 'F2..F5 delivered', 60_000);
    await waitFor(async () => (await outcomes()) === 'antchain:5,zhima:5', 'their outcomes recorded once', 60_000);
    expect(sims.antchain.stats().violations).toEqual([]);
    expect(sims.zhima.stats().conflictingDuplicates).toBe(0);
  }, 240_000);
});
