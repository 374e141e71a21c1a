import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type pg from 'pg';
import { eventId } from '../../src/core/ids.js';
import type { BusinessEvent } from '../../src/core/events.js';
import type { AttemptInfo } from '../../src/core/sink.js';
import { createLedger, type Ledger, type LogEntry, type LogFlush } from '../../src/ledger/ledger.js';
import { migrate } from '../../src/ledger/migrations.js';
import { generateDemoKeys, writeDemoKeys, KEY_FILES } from '../../src/demo/keys.js';
import { startAntchainSimulator } from '../../src/sandbox/antchain-simulator.js';
import { startZhimaSimulator } from '../../src/sandbox/zhima-simulator.js';
import { deepMerge, testConfig, writeConfig, type Simulators } from '../helpers/pipeline.js';
import { cursorMoves, readPastCursors } from '../helpers/ledger-fixtures.js';

export const PROJECT = 'demo-cinema';
export const id = (order: string, code: string, refund?: string) => eventId(refund ? [PROJECT, order, code, refund] : [PROJECT, order, code]);

/** Both simulators with freshly generated keys (no dependency on files outside the repo). */
export async function startSims(): Promise<Simulators & { keyDir: string; keys: ReturnType<typeof generateDemoKeys>; configDirs: string[] }> {
  const configDirs: string[] = [];
  const keys = generateDemoKeys();
  const keyDir = mkdtempSync(join(tmpdir(), 'order-relay-keys-'));
  writeDemoKeys(keyDir, keys);
  const antchain = await startAntchainSimulator({ accessKey: keys.antchainAccessKey, accessSecret: keys.antchainAccessSecret });
  const zhima = await startZhimaSimulator({ appId: '2021000000000001', appPublicKeyPem: keys.appPublicPem, gatewayPrivateKeyPem: keys.gatewayPrivatePem });
  return {
    antchain,
    zhima,
    keys,
    keyDir,
    configDirs,
    env: { ANTCHAIN_ACCESS_KEY: keys.antchainAccessKey, ANTCHAIN_ACCESS_SECRET: keys.antchainAccessSecret },
    async close() {
      await Promise.all([antchain.close(), zhima.close()]);
      for (const d of [keyDir, ...configDirs]) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** The tests' connector config (test/helpers/pipeline.ts) with this file's generated keys. */
export function operatorConfig(dbUrl: string, sims: Awaited<ReturnType<typeof startSims>>, overrides: Record<string, unknown> = {}) {
  const raw = testConfig(dbUrl, sims, {
    sinks: {
      zhima: {
        privateKey: { file: join(sims.keyDir, KEY_FILES.appPrivatePem) },
        alipayPublicKey: { file: join(sims.keyDir, KEY_FILES.gatewayPublicPem) },
      },
    },
  });
  const written = writeConfig(deepMerge(raw, overrides), sims.env);
  sims.configDirs.push(dirname(written.path));
  return written;
}

export function tradeEvent(order: string, code: 'TRADE_SUCCESS' | 'TRADE_CONFIRM' | 'REFUND_SUCCESS', refund?: string): BusinessEvent {
  return {
    id: id(order, code, refund),
    code,
    kind: 'TRADE',
    orderKey: order,
    orderNo: order,
    ...(refund ? { refundId: refund } : {}),
    occurredAt: '2026-11-01T10:00:00.000Z',
    order: { order_no: order, status: 'PAID' },
  };
}

/** What the sink answers to one event the dispatcher sends it (see `dispatchLog`). */
export type LogDecision =
  | 'delivered'
  | 'not_applicable'
  /** Sent and not answered yet: the event stays past the cursor (in flight), and so does what follows it in its order. */
  | 'in-flight'
  | { status: 'rejected' | 'retry'; code: string; message: string; delayMs?: number; info?: AttemptInfo };

/**
 * One pass of a sink's dispatcher over the log, as `SinkWorker` makes it: reads the log
 * forward from the sink's cursors (`ledger.readLog`), keeps FIFO per order (an event whose
 * order has an open delivery row, or had one made earlier in this pass, is not sent but
 * becomes a pending row behind it), sends every other event (`decide` is the sink's answer),
 * and writes outcomes, new exception rows with their attempt, and the cursors in one
 * statement (`ledger.flushLog`). A rejection parks the event as a row (`rejected`), a retry
 * makes it a retrying row (`pending`, next attempt after `delayMs`), as a retry past the
 * quick ones does. Returns the events it sent, in order, and the rows it made.
 */
export async function dispatchLog(ledger: Ledger, sink: string, decide: (entry: LogEntry) => LogDecision): Promise<{ sent: LogEntry[]; rows: LogEntry[] }> {
  const { cursors, entries, horizon } = await readPastCursors(ledger, sink, 512);
  const flush: LogFlush = { sink, outcomes: [], exceptions: [], attempts: [], cursors: [] };
  const sent: LogEntry[] = [];
  const blocked = new Set<string>();
  const inFlight = new Set<string>();
  const firstUnsettled = new Map<number, number>();
  const info = (e: LogEntry, httpStatus: number): AttemptInfo => ({ requestId: `req-${sink}-${e.eventId.slice(0, 6)}`, httpStatus, durationMs: 3 });
  for (const e of entries) {
    if (inFlight.has(e.orderKey)) {
      // Waits in memory behind its order's event in flight: not settled, the cursor stays before it.
      if (!firstUnsettled.has(e.shard)) firstUnsettled.set(e.shard, e.seq);
      continue;
    }
    if (e.blocked.has(sink) || blocked.has(e.orderKey)) {
      flush.exceptions.push({ entry: e, status: 'pending', attempts: 0, delayMs: 0 });
      blocked.add(e.orderKey);
      continue;
    }
    sent.push(e);
    const d = decide(e);
    if (d === 'delivered') flush.outcomes.push({ seq: e.seq, shard: e.shard, status: 'delivered', attempts: 1, info: info(e, 200) });
    else if (d === 'not_applicable') flush.outcomes.push({ seq: e.seq, shard: e.shard, status: 'not_applicable', attempts: 1 });
    else if (d === 'in-flight') {
      inFlight.add(e.orderKey);
      if (!firstUnsettled.has(e.shard)) firstUnsettled.set(e.shard, e.seq);
    } else {
      const attempt = d.info ?? info(e, d.status === 'retry' ? 503 : 200);
      flush.exceptions.push({ entry: e, status: d.status === 'retry' ? 'pending' : 'rejected', attempts: 1, delayMs: d.status === 'retry' ? (d.delayMs ?? 0) : 0, code: d.code, message: d.message });
      flush.attempts.push({ seq: e.seq, attempt: 1, outcome: d.status, info: attempt, code: d.code, message: d.message });
      blocked.add(e.orderKey);
    }
  }
  flush.cursors = cursorMoves(cursors, firstUnsettled, horizon);
  await ledger.flushLog(flush);
  return { sent, rows: flush.exceptions.map((x) => x.entry) };
}

/** The seq the ledger gave an event (`event_ids`). */
export async function seqOf(pool: pg.Pool, schema: string, eventId: string): Promise<string> {
  const { rows } = await pool.query<{ seq: string }>(`SELECT seq::text FROM ${schema}.event_ids WHERE id = decode($1, 'hex')`, [eventId]);
  if (!rows[0]) throw new Error(`no event ${eventId} in ${schema}`);
  return rows[0].seq;
}

/**
 * A sink's record of an event, wherever the ledger keeps it: its delivery row (an exception),
 * else the outcome its cursor wrote (`last_code` is the outcome's remote code), else nothing.
 */
export async function deliveryOf(pool: pg.Pool, schema: string, sink: string, eventId: string): Promise<{ status: string; last_code: string | null; result: Record<string, unknown> | null } | undefined> {
  const { rows } = await pool.query(
    `SELECT status, last_code, result FROM ${schema}.deliveries WHERE sink = $1 AND event_id = $2
     UNION ALL
     SELECT o.status, o.remote_code, o.result FROM ${schema}.outcomes o JOIN ${schema}.event_ids i ON i.seq = o.seq
      WHERE o.sink = $1 AND i.id = decode($2, 'hex')
       AND NOT EXISTS (SELECT 1 FROM ${schema}.deliveries WHERE sink = $1 AND event_id = $2)`,
    [sink, eventId],
  );
  return rows[0];
}

/** A ledger with known figures (see seedFigures). */
export { seedFigures as seedLedger } from '../helpers/ledger-fixtures.js';
