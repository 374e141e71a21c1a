import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { matchParked, renderReplay, replayDeliveries, replayParked, reprocessInputs, skipDeliveries } from '../../src/cli/replay.js';
import { skipParked } from '../../src/ledger/replay.js';
import type { Config } from '../../src/config/schema.js';
import { createLedger, type Ledger } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { recentErrors, sinkFigures } from '../../src/observe/queries.js';
import { createOrderTables, REPO } from '../helpers/pipeline.js';
import { dispatchLog, id, operatorConfig, startSims, tradeEvent, type LogDecision } from './helpers.js';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let config: Config;
let ledger: Ledger;
let schema: string;
let configPath: string;

beforeAll(async () => {
  db = await createTestDatabase('replay');
  await createOrderTables(db.pool);
  sims = await startSims();
  ({ config, path: configPath } = operatorConfig(db.url, sims));
  schema = config.ledger.schema;
  const c = await db.pool.connect();
  await migrate(c, schema);
  c.release();
  ledger = createLedger(db.pool, schema);
});

afterAll(async () => {
  await sims?.close();
  await db?.drop();
});

type Row = { event_id: string; sink: string; status: string; attempts: number; id: string };
async function deliveries(): Promise<Map<string, Row>> {
  const { rows } = await db.pool.query<Row>(`SELECT event_id, sink, status, attempts, id::text FROM ${schema}.deliveries`);
  return new Map(rows.map((r) => [`${r.sink}:${r.event_id}`, r]));
}

/** Per `sink:event`, the delivery's status and last code. */
async function codes(): Promise<Record<string, [string, string | null]>> {
  const { rows } = await db.pool.query<{ k: string; status: string; last_code: string | null }>(`SELECT sink || ':' || event_id AS k, status, last_code FROM ${schema}.deliveries`);
  return Object.fromEntries(rows.map((r) => [r.k, [r.status, r.last_code]]));
}

/** One pass of `sink`'s dispatcher over the log (see `dispatchLog`): the ids of the events it sent. */
async function dispatch(sink: string, decide: () => LogDecision = () => 'delivered'): Promise<string[]> {
  return (await dispatchLog(ledger, sink, decide)).sent.map((e) => e.eventId);
}

const parkedAnswer: LogDecision = { status: 'rejected', code: 'INVALID_PARAMETER', message: 'bad' };

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(REPO, 'bin/order-relay.js'), ...args], { cwd: REPO, env: { ...process.env, ...sims.env, LOG_LEVEL: 'warn' } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * Fresh deliveries: P1/TS, P2/TC and P3/RS(R1) parked at both sinks; P1/TC pending behind
 * P1/TS at antchain. As the dispatcher makes them: the sinks read the log, the API rejects
 * the three, and the confirm, read after them, is not sent but waits as a row behind P1/TS.
 */
beforeEach(async () => {
  await db.pool.query(
    `TRUNCATE ${schema}.log, ${schema}.event_ids, ${schema}.outcomes, ${schema}.cursors, ${schema}.deliveries, ${schema}.attempts, ${schema}.parked_inputs, ${schema}.orders`,
  );
  const ev = (e: ReturnType<typeof tradeEvent>, sinks: string[]) => ({ event: e, sinks, position: '0/1', committedAt: new Date().toISOString() });
  await ledger.append({
    source: 'postgres',
    events: [
      ev(tradeEvent('P1', 'TRADE_SUCCESS'), ['antchain', 'zhima']),
      ev(tradeEvent('P2', 'TRADE_CONFIRM'), ['antchain', 'zhima']),
      ev(tradeEvent('P3', 'REFUND_SUCCESS', 'R1'), ['antchain', 'zhima']),
    ],
    orders: [],
    bad: [],
    checkpoints: [],
  });
  for (const sink of ['antchain', 'zhima']) expect(await dispatch(sink, () => parkedAnswer)).toHaveLength(3);
  await ledger.append({ source: 'postgres', events: [ev(tradeEvent('P1', 'TRADE_CONFIRM'), ['antchain'])], orders: [], bad: [], checkpoints: [] });
  expect(await dispatch('antchain')).toEqual([]);
});

describe('replay of parked deliveries', () => {
  it('by event id re-queues that event at every sink, same delivery row (same idempotency key), attempts kept', async () => {
    const before = await deliveries();
    const n = await replayDeliveries(db.pool, schema, { eventIds: [id('P1', 'TRADE_SUCCESS')] });
    expect(n).toBe(2);
    const after = await deliveries();
    for (const sink of ['antchain', 'zhima']) {
      const k = `${sink}:${id('P1', 'TRADE_SUCCESS')}`;
      expect(after.get(k)).toMatchObject({ status: 'pending', attempts: 1, id: before.get(k)!.id });
    }
    expect([...after.values()].filter((d) => d.status === 'rejected')).toHaveLength(4);
    // It is claimable again, with the same event id the sinks turn into request_id / out_biz_no.
    const claimed = await ledger.claim('zhima', 10, 60_000);
    expect(claimed.map((c) => c.eventId)).toEqual([id('P1', 'TRADE_SUCCESS')]);
  });

  it('by sink', async () => {
    expect(await replayDeliveries(db.pool, schema, { sink: 'zhima' })).toBe(3);
    const after = await deliveries();
    expect([...after.values()].filter((d) => d.status === 'rejected').map((d) => d.sink)).toEqual(['antchain', 'antchain', 'antchain']);
  });

  it('by code', async () => {
    expect(await replayDeliveries(db.pool, schema, { code: 'REFUND_SUCCESS' })).toBe(2);
    const after = await deliveries();
    expect(after.get(`antchain:${id('P3', 'REFUND_SUCCESS', 'R1')}`)!.status).toBe('pending');
    expect(after.get(`zhima:${id('P3', 'REFUND_SUCCESS', 'R1')}`)!.status).toBe('pending');
    expect(after.get(`zhima:${id('P2', 'TRADE_CONFIRM')}`)!.status).toBe('rejected');
  });

  it('all, and filters combine', async () => {
    expect(await replayDeliveries(db.pool, schema, { sink: 'antchain', code: 'TRADE_CONFIRM' })).toBe(1);
    expect(await replayDeliveries(db.pool, schema, { all: true })).toBe(5);
    expect([...(await deliveries()).values()].every((d) => d.status === 'pending')).toBe(true);
  });

  it('refuses to run without a filter, and a dry run changes nothing', async () => {
    await expect(replayDeliveries(db.pool, schema, {})).rejects.toThrow(/--event <id>, --sink <name>, --code <EVENT_CODE>, or --all/);
    const matched = await matchParked(db.pool, schema, { all: true });
    expect(matched).toHaveLength(6);
    expect([...(await deliveries()).values()].filter((d) => d.status === 'rejected')).toHaveLength(6);
  });

  it('--skip of a parked TRADE_SUCCESS holds the order\'s later deliveries for that sink: nothing overtakes it, not even one stored later', async () => {
    const TS = id('P1', 'TRADE_SUCCESS'), TC = id('P1', 'TRADE_CONFIRM'), RS = id('P1', 'REFUND_SUCCESS', 'R9');
    // P1/TC waits behind the parked P1/TS at antchain.
    expect((await ledger.claim('antchain', 10, 60_000)).map((c) => c.eventId)).toEqual([]);
    expect(await skipDeliveries(db.pool, schema, { eventIds: [TS], sink: 'antchain' })).toBe(1);
    expect(await codes()).toMatchObject({ [`antchain:${TS}`]: ['skipped', 'INVALID_PARAMETER'], [`zhima:${TS}`]: ['rejected', 'INVALID_PARAMETER'], [`antchain:${TC}`]: ['rejected', 'HELD'] });
    // Before, the confirm went out here, ahead of the purchase the API never saw.
    expect((await ledger.claim('antchain', 10, 60_000)).map((c) => c.eventId)).toEqual([]);
    // A refund stored afterwards waits behind the held confirm: the dispatcher does not send it, it makes it a row behind.
    await ledger.append({ source: 'postgres', events: [{ event: tradeEvent('P1', 'REFUND_SUCCESS', 'R9'), sinks: ['antchain'], position: '0/2', committedAt: new Date().toISOString() }], orders: [], bad: [], checkpoints: [] });
    expect(await dispatch('antchain')).toEqual([]);
    expect((await codes())[`antchain:${RS}`]).toEqual(['pending', null]);
    expect((await ledger.claim('antchain', 10, 60_000)).map((c) => c.eventId)).toEqual([]);
    // status: the held one is parked (and counted as held), the refund blocked behind it.
    expect((await sinkFigures(db.pool, schema, ['antchain'])).find((f) => f.sink === 'antchain')).toMatchObject({ parked: 3, held: 1, blocked: 1, skipped: 1 });
    expect((await recentErrors(db.pool, schema)).find((e) => e.eventId === TC)).toMatchObject({ outcome: 'held', remoteCode: 'HELD', message: expect.stringContaining(TS) });

    // A replay by filter leaves held deliveries alone: they wait for the skipped one.
    expect(await replayDeliveries(db.pool, schema, { sink: 'antchain', code: 'TRADE_CONFIRM' })).toBe(1); // P2/TC only
    expect((await codes())[`antchain:${TC}`]).toEqual(['rejected', 'HELD']);
    // Bringing the skipped one back brings the held one back behind it, in order.
    expect(await replayDeliveries(db.pool, schema, { eventIds: [TS], sink: 'antchain' })).toBe(0);
    expect(await replayDeliveries(db.pool, schema, { eventIds: [TS], sink: 'antchain' }, { includeSkipped: true })).toBe(2);
    expect((await codes())[`antchain:${TC}`]).toEqual(['pending', null]);
    const claimed = (await ledger.claim('antchain', 10, 60_000)).map((c) => c.eventId);
    expect(claimed).toContain(TS);
    expect(claimed).not.toContain(TC);
    expect(claimed).not.toContain(RS);
  });

  it('--skip-order skips the rest of the order for that sink, at once or after a plain --skip; the command says what it did', async () => {
    const TS = id('P1', 'TRADE_SUCCESS'), TC = id('P1', 'TRADE_CONFIRM');
    const run = (o: Parameters<typeof replayParked>[1]) => replayParked(config, o, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const skipped = await run({ eventIds: [TS], sink: 'antchain', skip: true });
    const text = renderReplay(skipped);
    expect(text).toMatch(new RegExp(`^antchain\\s+${TS}\\s+TRADE_SUCCESS\\s+P1\\s+parked\\s+skipped\\s+INVALID_PARAMETER: bad$`, 'm'));
    expect(text).toMatch(new RegExp(`^antchain\\s+${TC}\\s+TRADE_CONFIRM\\s+P1\\s+pending\\s+held\\s+`, 'm'));
    expect(text).toContain('skipped 1 delivery (event');
    expect(text).toContain(
      `held 1 later delivery of order P1 for antchain behind it (TRADE_CONFIRM): re-queue TRADE_SUCCESS ${TS} and it follows (replay --event ${TS} --sink antchain --include-skipped), `
        + `send it anyway (replay --event ${TC} --sink antchain), or skip it too (replay --event ${TS} --sink antchain --skip-order)`,
    );
    // A dry run says the same and changes nothing.
    const dry = await run({ eventIds: [TS], sink: 'antchain', skipOrder: true, dryRun: true });
    expect(dry.deliveries.map((d) => [d.eventId, d.action])).toEqual([[TS, 'already skipped'], [TC, 'skipped with order']]);
    expect(dry.changed).toBe(0);
    expect((await codes())[`antchain:${TC}`]).toEqual(['rejected', 'HELD']);
    const order = await run({ eventIds: [TS], sink: 'antchain', skipOrder: true });
    expect(order.changed).toBe(1);
    expect(renderReplay(order)).toContain(`skipped 1 later delivery of order P1 for antchain with it (--skip-order): ${TC}`);
    expect((await codes())[`antchain:${TC}`]).toEqual(['skipped', 'SKIPPED_WITH_ORDER']);

    // At once: P3's refund parked at zhima, nothing behind it; P1 at zhima has nothing behind either.
    await ledger.append({ source: 'postgres', events: [{ event: tradeEvent('P2', 'REFUND_SUCCESS', 'R2'), sinks: ['zhima'], position: '0/2', committedAt: new Date().toISOString() }], orders: [], bad: [], checkpoints: [] });
    expect(await dispatch('zhima')).toEqual([]); // waits behind the parked P2/TC, as a row
    const whole = await run({ eventIds: [id('P2', 'TRADE_CONFIRM')], sink: 'zhima', skipOrder: true });
    expect(whole.deliveries.map((d) => [d.eventId, d.action])).toEqual([[id('P2', 'TRADE_CONFIRM'), 'skipped'], [id('P2', 'REFUND_SUCCESS', 'R2'), 'skipped with order']]);
    expect((await ledger.claim('zhima', 10, 60_000)).map((c) => c.eventId)).toEqual([]);
    expect((await codes())[`antchain:${id('P2', 'TRADE_CONFIRM')}`]).toEqual(['rejected', 'INVALID_PARAMETER']);
  });

  it('what waits behind a parked delivery but was not read by its sink yet is acted on too: held by --skip, waiting behind a re-queue, skipped by --skip-order', async () => {
    const TS = id('P1', 'TRADE_SUCCESS'), RS = id('P1', 'REFUND_SUCCESS', 'R5'), TC2 = id('P2', 'TRADE_CONFIRM'), R2 = id('P2', 'REFUND_SUCCESS', 'R2');
    const stored = async (e: ReturnType<typeof tradeEvent>) =>
      expect((await ledger.append({ source: 'postgres', events: [{ event: e, sinks: ['zhima'], position: '0/3', committedAt: new Date().toISOString() }], orders: [], bad: [], checkpoints: [] })).inserted).toBe(1);
    // P1/RS stored for zhima behind its parked P1/TS; zhima has not read it (paused, say): no row yet.
    await stored(tradeEvent('P1', 'REFUND_SUCCESS', 'R5'));
    expect((await codes())[`zhima:${RS}`]).toBeUndefined();
    const skipped = await skipParked(db.pool, schema, { eventIds: [TS], sink: 'zhima' });
    expect(skipped.outcomes.map((o) => [o.eventId, o.status, o.action])).toEqual([[TS, 'rejected', 'skipped'], [RS, 'pending', 'held']]);
    expect(skipped.changed).toBe(2);
    expect((await codes())[`zhima:${RS}`]).toEqual(['rejected', 'HELD']);
    // When zhima reads it, it does not send it: it waits, held, behind the skipped one.
    expect(await dispatch('zhima')).toEqual([]);
    expect((await codes())[`zhima:${RS}`]).toEqual(['rejected', 'HELD']);
    expect(await replayDeliveries(db.pool, schema, { eventIds: [TS], sink: 'zhima' }, { includeSkipped: true })).toBe(2);
    expect((await ledger.claim('zhima', 10, 60_000)).map((c) => c.eventId)).toEqual([TS]);

    // Behind a re-queued one: waiting (a dry run makes nothing) ...
    await stored(tradeEvent('P2', 'REFUND_SUCCESS', 'R2'));
    const run = (o: Parameters<typeof replayParked>[1]) => replayParked(config, o, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const dry = await run({ eventIds: [TC2], sink: 'zhima', refresh: false, dryRun: true });
    expect(dry.deliveries.map((d) => [d.eventId, d.action, d.payload?.detail])).toEqual([
      [TC2, 're-queued', 're-sent as stored (--no-refresh)'],
      [R2, 'waiting', 'goes out as stored after it (--no-refresh)'],
    ]);
    expect((await codes())[`zhima:${R2}`]).toBeUndefined();
    // ... and --skip-order takes it along.
    const order = await run({ eventIds: [TC2], sink: 'zhima', skipOrder: true });
    expect(order.deliveries.map((d) => [d.eventId, d.action])).toEqual([[TC2, 'skipped'], [R2, 'skipped with order']]);
    expect(order.changed).toBe(2);
    expect(await codes()).toMatchObject({ [`zhima:${TC2}`]: ['skipped', 'INVALID_PARAMETER'], [`zhima:${R2}`]: ['skipped', 'SKIPPED_WITH_ORDER'] });

    // A re-queue makes what waits behind it a row: claimed after it, not beside it.
    const P3 = id('P3', 'REFUND_SUCCESS', 'R1'), P3b = id('P3', 'REFUND_SUCCESS', 'R3');
    await stored(tradeEvent('P3', 'REFUND_SUCCESS', 'R3'));
    const requeued = await run({ eventIds: [P3], sink: 'zhima', refresh: false });
    expect(requeued.deliveries.map((d) => [d.eventId, d.action])).toEqual([[P3, 're-queued'], [P3b, 'waiting']]);
    expect((await codes())[`zhima:${P3b}`]).toEqual(['pending', null]);
    expect((await ledger.claim('zhima', 10, 60_000)).map((c) => c.eventId)).toEqual([P3]);
  });

  /*
   * Known gap, kept failing on purpose (it.fails) until the dispatcher holds an order behind a
   * skipped row: a skip with nothing behind it leaves no open row, so an event of the order
   * stored afterwards is read as not blocked and sent (OPEN in src/ledger/sql.ts is pending,
   * rejected). Expected: it is made a row held behind the skipped one (rejected, HELD), as
   * what waited behind it at skip time is. Make this `it` when the dispatcher does that.
   */
  it('an event of the order stored after a --skip with nothing behind it is held too, not sent ahead of the skipped one', async () => {
    const TS = id('P1', 'TRADE_SUCCESS'), RS = id('P1', 'REFUND_SUCCESS', 'R7');
    const skipped = await skipParked(db.pool, schema, { eventIds: [TS], sink: 'zhima' });
    expect(skipped.outcomes.map((o) => [o.eventId, o.action])).toEqual([[TS, 'skipped']]);
    const stored = await ledger.append({ source: 'postgres', events: [{ event: tradeEvent('P1', 'REFUND_SUCCESS', 'R7'), sinks: ['zhima'], position: '0/3', committedAt: new Date().toISOString() }], orders: [], bad: [], checkpoints: [] });
    expect(stored.inserted).toBe(1);
    // Fails here today: the dispatcher sends the refund (the API never saw the purchase).
    expect(await dispatch('zhima')).toEqual([]);
    const { rows } = await db.pool.query(`SELECT status, last_code, last_message FROM ${schema}.deliveries WHERE sink = 'zhima' AND event_id = $1`, [RS]);
    expect(rows).toEqual([{ status: 'rejected', last_code: 'HELD', last_message: expect.stringContaining(`held behind TRADE_SUCCESS ${TS} of order P1`) }]);
    // And it comes back with the skipped one, behind it.
    expect(await replayDeliveries(db.pool, schema, { eventIds: [TS], sink: 'zhima' }, { includeSkipped: true })).toBe(2);
    expect((await ledger.claim('zhima', 10, 60_000)).map((c) => c.eventId)).toEqual([TS]);
  });

  it('--event with an id the ledger does not hold exits non-zero naming it; a known one with nothing parked says so', async () => {
    const unknown = 'ffffffffffffffffffffffffffffffff';
    const bad = await cli(['replay', '-c', configPath, '--event', `${id('P1', 'TRADE_SUCCESS')},${unknown}`]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toBe(`order-relay replay: no event ${unknown} in the ledger (event ids are the 32 hex characters \`status\` and \`replay --all --dry-run\` show)\n`);
    expect((await codes())[`antchain:${id('P1', 'TRADE_SUCCESS')}`]).toEqual(['rejected', 'INVALID_PARAMETER']);
    const skip = await cli(['replay', '-c', configPath, '--event', unknown, '--skip']);
    expect(skip.code).not.toBe(0);
    expect(skip.stderr).toContain(`no event ${unknown} in the ledger`);
    const pending = await cli(['replay', '-c', configPath, '--event', id('P1', 'TRADE_CONFIRM'), '--dry-run']);
    expect(pending).toMatchObject({ code: 0, stdout: expect.stringContaining(`event ${id('P1', 'TRADE_CONFIRM')}: nothing to re-queue: pending at antchain`) });
  });

  it('re-reads payloads from the source rows by default (same id, fields changed named); what cannot be re-read stays parked; --no-refresh and visits go as stored', async () => {
    await db.pool.query(`TRUNCATE public.refunds, public.orders`);
    await db.pool.query(
      `INSERT INTO orders (order_no, status, buyer_phone, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
       VALUES ('P2', 'USED', '13800138002', 'm1', 7, 'C', 'S', '1-2', '2026-12-01 19:30:00', 1, 40, 40),
              ('P3', 'REFUNDED', '13800138003', 'm1', 7, 'C', 'S', '1-3', '2026-12-01 19:30:00', 1, 40, 40)`,
    );
    await db.pool.query(`INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count) VALUES ('R1', 'P3', 'SUCCESS', 40, 1)`);
    // zhima is still retrying P3's refund (an attempt may have reached Alipay with the stored payload).
    await db.pool.query(`UPDATE ${schema}.deliveries SET status = 'pending', next_attempt_at = now() + interval '1 hour' WHERE sink = 'zhima' AND event_id = $1`, [id('P3', 'REFUND_SUCCESS', 'R1')]);
    const visit = { id: id('V1', 'VISIT'), code: 'CONTRACT_DETAIL_PAGE' as const, kind: 'VISIT' as const, orderKey: 'visit:v1', occurredAt: '2026-11-01T10:00:00.000Z', visit: { visitId: 'v1', page: 'CONTRACT_DETAIL_PAGE' as const, visitor: { type: 'PHONE' as const, id: '12' } } };
    await ledger.append({ source: 'kafka', events: [{ event: visit, sinks: ['antchain'], position: '1', committedAt: new Date().toISOString() }], orders: [], bad: [], checkpoints: [] });
    expect(await dispatch('antchain', () => parkedAnswer)).toEqual([visit.id]);

    const run = (o: Parameters<typeof replayParked>[1]) => replayParked(config, o, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const r = await run({ sink: 'antchain' });
    expect(r.refresh).toBe(true);
    const by = new Map(r.deliveries.map((d) => [d.eventId, d]));
    expect(by.get(id('P1', 'TRADE_SUCCESS'))).toMatchObject({ action: 'left parked', payload: { result: 'kept', detail: 'cannot re-read: public.orders has no row with order_no = P1 any more; left parked: fix the row, or --no-refresh to re-send as stored' } });
    expect(by.has(id('P1', 'TRADE_CONFIRM'))).toBe(false); // behind what stays parked: untouched
    expect(by.get(id('P2', 'TRADE_CONFIRM'))).toMatchObject({ action: 're-queued', payload: { result: 'refreshed', fields: expect.arrayContaining(['order.buyer_phone', 'order.status']) } });
    expect(by.get(id('P2', 'TRADE_CONFIRM'))!.payload!.detail).toMatch(/^re-read from source \(public\.orders P2\): fields changed: .*order\.buyer_phone/);
    expect(by.get(id('P3', 'REFUND_SUCCESS', 'R1'))).toMatchObject({ action: 'left parked', payload: { detail: expect.stringMatching(/^not re-read: zhima is sending it with the stored payload \(attempt 1\)/) } });
    expect(by.get(visit.id)).toMatchObject({ action: 're-queued', payload: { result: 'as-stored', detail: 're-sent as stored: a page visit (from Kafka) has no source row' } });
    expect(renderReplay(r)).toContain('re-queued 2 deliveries (sink antchain), 1 payload re-read from the source with changes (see PAYLOAD)');
    // The stored event: same id, the current row; its zhima delivery (still parked) has it too (its own copy).
    const { rows } = await db.pool.query<{ payload: { id: string; order: Record<string, unknown> } }>(`SELECT payload FROM ${schema}.events WHERE id = $1`, [id('P2', 'TRADE_CONFIRM')]);
    const fixed = { id: id('P2', 'TRADE_CONFIRM'), order: { order_no: 'P2', status: 'USED', buyer_phone: '13800138002' } };
    expect(rows[0]!.payload).toMatchObject(fixed);
    const { rows: copies } = await db.pool.query<{ sink: string; status: string; payload: unknown }>(`SELECT sink, status, payload FROM ${schema}.deliveries WHERE event_id = $1 ORDER BY sink`, [id('P2', 'TRADE_CONFIRM')]);
    expect(copies).toMatchObject([{ sink: 'antchain', status: 'pending', payload: fixed }, { sink: 'zhima', status: 'rejected', payload: fixed }]);
    expect(await codes()).toMatchObject({ [`antchain:${id('P2', 'TRADE_CONFIRM')}`]: ['pending', 'INVALID_PARAMETER'], [`antchain:${id('P1', 'TRADE_SUCCESS')}`]: ['rejected', 'INVALID_PARAMETER'] });

    // As stored, on request.
    const asStored = await run({ eventIds: [id('P1', 'TRADE_SUCCESS')], sink: 'antchain', refresh: false });
    expect(asStored.deliveries.map((d) => [d.eventId, d.action, d.payload?.detail])).toEqual([
      [id('P1', 'TRADE_SUCCESS'), 're-queued', 're-sent as stored (--no-refresh)'],
      [id('P1', 'TRADE_CONFIRM'), 'waiting', 'goes out as stored after it (--no-refresh)'],
    ]);
    expect(renderReplay(asStored)).toContain('re-queued 1 delivery (event');
    expect(renderReplay(asStored)).toContain('as stored (--no-refresh)');
  });
});

describe('replay --inputs: re-processing parked source input', () => {
  it('re-reads the rows parked input names, ingests their current state once, and leaves what it cannot re-read', async () => {
    await db.pool.query(`TRUNCATE public.refunds, public.orders`);
    await db.pool.query(
      `INSERT INTO orders (order_no, status, buyer_phone, movie_id, cinema_id, cinema_name, schedule_id, seat_ids, show_start, ticket_count, original_amount, paid_amount)
       VALUES ('Q1', 'PAID', '13800138001', 'm1', 7, 'C', 'S', '1-1', '2026-12-01 19:30:00', 1, 40, 40),
              ('Q2', 'USED', '13800138002', 'm1', 7, 'C', 'S', '1-2', '2026-12-01 19:30:00', 1, 40, 40)`,
    );
    await db.pool.query(`INSERT INTO refunds (refund_id, order_no, status, refund_amount, refund_count) VALUES ('QR1', 'Q1', 'SUCCESS', 10, 1)`);
    // The stream already knows Q2 as PAID: re-processing must not roll that row back or forward.
    await db.pool.query(`INSERT INTO ${schema}.orders (order_no, row) VALUES ('Q2', '{"order_no":"Q2","status":"PAID","stream":true}')`);
    const change = (table: string, after: Record<string, unknown> | null) => JSON.stringify({ table, op: 'insert', after, before: null, position: '0/9', committedAt: new Date().toISOString() });
    const park = async (raw: string, reason: string) =>
      (await db.pool.query<{ id: string }>(`INSERT INTO ${schema}.parked_inputs (source, stream, position, reason, raw) VALUES ('postgres', 'public.orders', '0/9', $1, $2) RETURNING id::text`, [reason, raw])).rows[0]!.id;
    const refund = await park(change('public.refunds', { refund_id: 'QR1', order_no: 'Q1', status: 'SUCCESS' }), 'order Q1 unknown');
    const order = await park(change('public.orders', { order_no: 'Q2', status: 'USED' }), 'cannot classify: bug');
    const garbage = await park('not json at all', 'undecodable');
    const noKey = await park(change('public.orders', { order_no: null, status: 'PAID' }), 'order number missing');
    const gone = await park(change('public.orders', { order_no: 'Q9', status: 'PAID' }), 'cannot classify: bug');

    const run = () => reprocessInputs(config, { logger: silentLogger(), env: { ...process.env, ...sims.env } });
    const outcomes = await run();
    const byId = new Map(outcomes.map((o) => [o.id, o]));
    expect(byId.get(refund)).toMatchObject({ result: 'resolved', newEvents: 2 });
    expect(byId.get(order)).toMatchObject({ result: 'resolved', newEvents: 2 });
    expect(byId.get(garbage)).toMatchObject({ result: 'left', detail: expect.stringMatching(/not a decoded row change/) });
    expect(byId.get(noKey)).toMatchObject({ result: 'left', detail: expect.stringMatching(/no order_no: nothing to re-read/) });
    expect(byId.get(gone)).toMatchObject({ result: 'left', detail: expect.stringMatching(/no row with order_no = Q9/) });

    const { rows: events } = await db.pool.query<{ id: string }>(`SELECT id FROM ${schema}.events WHERE order_no IN ('Q1', 'Q2') ORDER BY id`);
    expect(events.map((e) => e.id)).toEqual(
      [id('Q1', 'TRADE_SUCCESS'), id('Q1', 'REFUND_SUCCESS', 'QR1'), id('Q2', 'TRADE_SUCCESS'), id('Q2', 'TRADE_CONFIRM')].sort(),
    );
    const { rows: known } = await db.pool.query<{ row: { stream?: boolean } }>(`SELECT row FROM ${schema}.orders WHERE order_no = 'Q2'`);
    expect(known[0]!.row.stream).toBe(true);
    const { rows: open } = await db.pool.query<{ id: string }>(`SELECT id::text FROM ${schema}.parked_inputs WHERE resolved_at IS NULL ORDER BY id`);
    expect(open.map((r) => r.id)).toEqual([garbage, noKey, gone]);

    // Again: nothing new, nothing duplicated. Then dismiss one explicitly.
    expect((await run()).every((o) => o.result === 'left')).toBe(true);
    expect((await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.events WHERE order_no IN ('Q1', 'Q2')`)).rows[0].n).toBe(4);
    expect(await reprocessInputs(config, { ids: [garbage], dismiss: true, logger: silentLogger(), env: { ...process.env, ...sims.env } })).toEqual([
      { id: garbage, result: 'dismissed', detail: 'marked resolved without re-processing' },
    ]);
  });
});
