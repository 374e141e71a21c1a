import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { doctor, renderChecks, type Check } from '../../src/cli/doctor.js';
import { migrateLedger } from '../../src/app.js';
import { LATEST_VERSION } from '../../src/ledger/migrations.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables } from '../helpers/pipeline.js';
import { operatorConfig, startSims } from './helpers.js';

let good: TestDatabase;
let bad: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
const role = `doctor_${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  [good, bad] = await Promise.all([createTestDatabase('doc_good'), createTestDatabase('doc_bad')]);
  await createOrderTables(good.pool);
  await createOrderTables(bad.pool);
  // The bad database: a table whose updates would fail once published, and a role without
  // REPLICATION that may not read the tables nor create the ledger schema.
  await bad.pool.query(`ALTER TABLE public.refunds REPLICA IDENTITY NOTHING`);
  await bad.pool.query(`CREATE ROLE ${role} LOGIN`);
  sims = await startSims();
});

afterAll(async () => {
  await sims?.close();
  await bad?.pool.query(`REASSIGN OWNED BY ${role} TO CURRENT_USER; DROP OWNED BY ${role}`).catch(() => {});
  await bad?.drop();
  await good?.pool.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
  await good?.drop();
});

const byName = (checks: Check[]) => new Map(checks.map((c) => [c.name, c]));

describe('order-relay doctor', () => {
  it('passes a good setup, warning only about what run creates itself and an unbounded slot WAL', async () => {
    const { config } = operatorConfig(good.url, sims);
    await migrateLedger(config);
    const checks = await doctor(config, { env: { ...process.env, ...sims.env } });
    const c = byName(checks);
    expect(checks.filter((x) => x.status === 'fail')).toEqual([]);
    expect(c.get('wal_level')).toMatchObject({ status: 'ok', detail: 'logical' });
    expect(c.get('replication privilege')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/SUPERUSER|REPLICATION/) });
    expect(c.get('replica identity public.orders')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^DEFAULT \(primary key\)/) });
    expect(c.get('replica identity public.refunds')?.status).toBe('ok');
    expect(c.get('publication')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/does not exist yet; run \(or backfill\) creates it/) });
    expect(c.get('replication slot')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/run creates it.*backfill/) });
    expect(c.get('max_slot_wal_keep_size')?.status).toMatch(/ok|warn/);
    expect(c.get('ledger schema')).toMatchObject({ status: 'ok', detail: `order_relay at version ${LATEST_VERSION}` });
    expect(c.get('ledger shards')).toMatchObject({ status: 'ok', detail: `${config.ledger.shards} (fixed when the ledger was made)` });
    expect(c.get('credentials antchain')).toMatchObject({ status: 'ok' });
    expect(c.get('credentials zhima')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/well-formed/) });
    expect(c.get('endpoint antchain')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/answers \(HTTP \d+/) });
    expect(c.get('endpoint zhima')?.status).toBe('ok');
    expect(c.get('clock')).toMatchObject({ status: 'ok' });

    // With the slot and publication in place they turn ok.
    await good.pool.query(`CREATE PUBLICATION ${config.source!.publication} FOR TABLE public.orders, public.refunds`);
    await good.pool.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [config.source!.slot]);
    const again = byName(await doctor(config, { env: { ...process.env, ...sims.env }, offline: true }));
    expect(again.get('publication')).toMatchObject({ status: 'ok' });
    expect(again.get('replication slot')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/pgoutput, idle, wal_status reserved/) });

    // Another shard count than the ledger was made with: run would refuse to start.
    const other = config.ledger.shards === 8 ? 4 : 8;
    const shards = byName(await doctor({ ...config, ledger: { ...config.ledger, shards: other } }, { env: { ...process.env, ...sims.env }, offline: true }));
    expect(shards.get('ledger shards')).toMatchObject({
      status: 'fail',
      detail: `ledger.shards is ${other}, but order_relay was made with ${config.ledger.shards}: run refuses to start`,
      fix: `set ledger.shards: ${config.ledger.shards} (the shard count of a ledger is fixed once it exists)`,
    });
  });

  it('explains every problem of a bad setup, one line each with a fix', async () => {
    const url = new URL(bad.url);
    url.username = role;
    const garbageKey = join(sims.keyDir, 'garbage.pem');
    writeFileSync(garbageKey, '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n');
    // Port 2 on loopback: nothing listens there, so the refusal is certain (a free port picked
    // now could be taken by another test's server before doctor connects; fetch bars port 1).
    const closed = 2;
    const { config } = operatorConfig(url.toString(), sims, {
      source: { create: false },
      sinks: { antchain: { endpoint: `http://127.0.0.1:${closed}/gateway.do` }, zhima: { privateKey: { file: garbageKey } } },
    });
    const env = { ...process.env, ...sims.env, ANTCHAIN_ACCESS_SECRET: '' };
    const checks = await doctor(config, { env, timeoutMs: 2_000 });
    const c = byName(checks);
    expect(c.get('replication privilege')).toMatchObject({ status: 'fail', fix: expect.stringContaining(`ALTER ROLE "${role}" WITH REPLICATION`) });
    expect(c.get('table public.orders')).toMatchObject({ status: 'fail', fix: `GRANT SELECT ON public.orders TO "${role}";` });
    expect(c.get('replica identity public.refunds')).toMatchObject({ status: 'fail', detail: 'NOTHING', fix: expect.stringContaining('REPLICA IDENTITY FULL') });
    expect(c.get('replica identity public.orders')?.status).toBe('ok');
    expect(c.get('publication')).toMatchObject({ status: 'fail', fix: expect.stringContaining('CREATE PUBLICATION') });
    expect(c.get('replication slot')).toMatchObject({ status: 'fail', fix: expect.stringContaining('pg_create_logical_replication_slot') });
    expect(c.get('ledger schema')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/does not exist yet and this role may not create it/) });
    expect(c.get('credentials antchain')).toMatchObject({ status: 'fail', detail: 'sinks.antchain.accessSecret: environment variable ANTCHAIN_ACCESS_SECRET is not set' });
    expect(c.get('credentials zhima')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/sinks\.zhima\.privateKey: not a valid RSA private key/) });
    expect(c.get('endpoint antchain')).toMatchObject({ status: 'fail', detail: `http://127.0.0.1:${closed} unreachable: ECONNREFUSED` });
    expect(c.get('endpoint zhima')?.status).toBe('ok');

    const text = renderChecks(checks);
    const lines = text.split('\n');
    expect(lines).toHaveLength(checks.length);
    for (const line of lines.filter((l) => l.startsWith('FAIL'))) expect(line).toMatch(/ — fix: \S/);
    // The secret's value never appears, only where it should come from.
    expect(text).not.toContain(sims.keys.antchainAccessSecret);
  });

  it('says it cannot connect instead of throwing', async () => {
    const { config } = operatorConfig('postgres://nobody@127.0.0.1:1/none', sims);
    const c = byName(await doctor(config, { env: { ...process.env, ...sims.env }, offline: true, timeoutMs: 2_000 }));
    expect(c.get('source database')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^cannot connect: .*ECONNREFUSED/) });
    expect(c.get('ledger')).toMatchObject({ status: 'fail' });
  });
});
