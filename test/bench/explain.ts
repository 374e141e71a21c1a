import { createRequire } from 'node:module';
import pg from 'pg';
import type { BusinessEvent } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import { createLedger, type AppendInput, type LogFlush } from '../../src/ledger/ledger.js';
import * as sql from '../../src/ledger/sql.js';
import { PROJECT } from './harness.js';

/**
 * EXPLAIN ANALYZE of the ledger's hot statements: `append` (a backlog batch, and the same
 * batch with the hand-over lookup the caught-up connector runs), `read_log` (a sink's read
 * forward from its lowest cursor) and `flush_log` (outcomes, a few exceptions with their
 * attempts, and the cursors that pass them). They are captured from `createLedger` through a
 * recording client, so the plans are of the exact text and parameters the connector sends
 * (the builders of `src/ledger/sql.ts`, no copies); statements the ledger sends without a name
 * (its sink lookup, the append lock) go to the real database. Each captured statement is then
 * prepared and explained as the connector runs it: its hot connections keep one generic plan
 * per statement (plan_cache_mode = force_generic_plan, `src/app.ts`), so `EXPLAIN EXECUTE` of
 * the prepared statement under that setting, inside a transaction that is rolled back: the
 * ledger is left as it was (sequence numbers taken by the append are skipped, as a failed
 * append's are).
 */
interface Captured {
  /** The ledger's name of the statement (`order_relay.<schema>.<name>`), last part. */
  name: string;
  sql: string;
  params: unknown[];
}

/** What the ledger reads back from each hot statement when nothing was written. */
const EMPTY: Record<string, Record<string, unknown>> = {
  append: { inserted: 0, seqs: '{}', shards: '{}', blocked: [], other: 0 },
  append_handover: { inserted: 0, seqs: '{}', shards: '{}', blocked: [], other: 0 },
  read_log: { horizon: null, rows: [] },
  flush_log: { outcomes: 0, exceptions: 0, attempts: 0, cursors: 0 },
};

/**
 * A ledger whose named (hot) statements are recorded and answered as if they changed nothing;
 * the rest runs on `client`. It is a client to the ledger (it has `release`): an append runs
 * its lock and its statement on it, as inside a caller's transaction.
 */
function recordingLedger(client: pg.Client, schema: string) {
  const captured: Captured[] = [];
  const fake = {
    query: async (q: string | pg.QueryConfig, params?: unknown[]) => {
      if (typeof q !== 'string' && q.name) {
        const name = q.name.slice(q.name.lastIndexOf('.') + 1);
        captured.push({ name, sql: q.text, params: q.values ?? [] });
        return { rows: [EMPTY[name] ?? {}], rowCount: 0 };
      }
      return typeof q === 'string' ? client.query(q, params) : client.query(q);
    },
    release: () => {},
  };
  const ledger = createLedger(fake as unknown as pg.PoolClient, schema);
  return { ledger, captured };
}

export interface Plan {
  /** The ledger's name of the statement: append, append_handover, read_log, flush_log. */
  name: string;
  /** What it was run on, for people. */
  statement: string;
  executionMs: number;
  planningMs: number;
  /** The plan's text. */
  plan: string[];
}

/** pg's own conversion of a parameter to its text form (arrays to array literals, dates, JSON). */
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (v: unknown) => string | Buffer | null | undefined };

/** A parameter as an SQL literal (the text pg would send for it), for EXECUTE. */
function literal(client: pg.Client, v: unknown): string {
  const text = prepareValue(v);
  return text === null || text === undefined ? 'NULL' : client.escapeLiteral(typeof text === 'string' ? text : String(text));
}

async function explain(client: pg.Client, label: string, c: Captured): Promise<Plan> {
  const name = `bench_explain_${c.name}`;
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
    await client.query(`PREPARE ${name} AS ${c.sql}`);
    const args = c.params.length ? `(${c.params.map((p) => literal(client, p)).join(', ')})` : '';
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE ${name}${args}`);
    const lines = rows.map((r) => r['QUERY PLAN']);
    const text = lines.join('\n');
    const exec = Number(/Execution Time: ([\d.]+)/.exec(text)?.[1] ?? NaN);
    const planning = Number(/Planning Time: ([\d.]+)/.exec(text)?.[1] ?? NaN);
    return { name: c.name, statement: label, executionMs: exec, planningMs: planning, plan: lines };
  } finally {
    await client.query('ROLLBACK');
    // A prepared statement outlives the transaction.
    await client.query(`DEALLOCATE ${name}`).catch(() => {});
  }
}

/** How many events `read_log` asks for at most (the sink worker's read batch). */
export const READ_BATCH = 512;

/**
 * Plans of append (a batch of `batch` new events for both sinks, plain and with the
 * hand-over lookup), read_log (`sink`, from its lowest cursor) and flush_log (what settling
 * that read writes: outcomes, `exceptions` of them as new exception rows, the cursors) on
 * the ledger as it is now.
 */
export async function explainLedger(url: string, schema: string, options: { batch: number; sink: string; exceptions?: number }): Promise<Plan[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { ledger, captured } = recordingLedger(client, schema);
    // The real ledger reads what a flush would settle.
    const real = createLedger(client as unknown as pg.Pool, schema);
    const sinks = ['antchain', 'zhima'];

    // append: new orders, payloads and positions like the backlog's.
    const sample = (
      await client.query<{ payload: BusinessEvent; position: string; committed_at: Date }>(
        `SELECT payload, position, committed_at FROM ${schema}.log ORDER BY seq LIMIT $1`,
        [options.batch],
      )
    ).rows;
    const events = sample.map((r, i) => {
      const orderNo = `explain-${i}`;
      const event: BusinessEvent = { ...r.payload, id: eventId([PROJECT, orderNo, r.payload.code]), orderNo, orderKey: orderNo };
      return { event, sinks, position: r.position, committedAt: r.committed_at.toISOString() };
    });
    const input: AppendInput = {
      source: 'postgres',
      events,
      orders: events.map((e) => ({ orderNo: e.event.orderNo!, row: e.event.order ?? {} })),
      bad: [],
      checkpoints: [{ stream: 'slot', position: 'FFFFFFFF/0' }],
    };
    await ledger.append(input);
    await ledger.append({ ...input, handOver: sinks });

    // read_log from the sink's lowest cursor (where its dispatcher reads from after a start).
    const cursors = (await client.query<{ shard: number; seq: string }>(sql.loadCursors(schema), [options.sink])).rows.map((r) => ({ shard: r.shard, seq: Number(r.seq) }));
    const from = cursors.length ? Math.min(...cursors.map((c) => c.seq)) : 0;
    await ledger.readLog(options.sink, from, READ_BATCH);

    // flush_log: that read settled, delivered but for the last few, which become exception
    // rows (retrying, with their attempt); every cursor moves past the read.
    const { entries } = await real.readLog(options.sink, from, READ_BATCH);
    const nEx = Math.min(options.exceptions ?? 16, entries.length);
    const delivered = entries.slice(0, entries.length - nEx);
    const retrying = entries.slice(entries.length - nEx);
    const last = entries.at(-1)?.seq ?? from;
    const info = (i: number) => ({ durationMs: 3, requestId: `explain-${i}`, httpStatus: 200 });
    const flush: LogFlush = {
      sink: options.sink,
      outcomes: delivered.map((e, i) => ({ seq: e.seq, shard: e.shard, status: 'delivered', attempts: 1, info: info(i) })),
      exceptions: retrying.map((e) => ({ entry: e, status: 'pending', attempts: 1, delayMs: 1000, code: 'SYSTEM_BUSY', message: 'busy' })),
      attempts: retrying.map((e, i) => ({ seq: e.seq, attempt: 1, outcome: 'retry', info: { ...info(i), httpStatus: 503 }, code: 'SYSTEM_BUSY', message: 'busy' })),
      cursors: cursors.filter((c) => c.seq < last).map((c) => ({ shard: c.shard, seq: last })),
    };
    await ledger.flushLog(flush);

    const labels: Record<string, string> = {
      append: `append (${events.length} events, ${events.length * sinks.length} (event, sink) pairs)`,
      append_handover: `append with hand-over (${events.length} events, open exceptions looked up for ${sinks.length} sinks)`,
      read_log: `read_log (${options.sink}, limit ${READ_BATCH}, from its lowest cursor ${from})`,
      flush_log: `flush_log (${options.sink}, ${flush.outcomes.length} outcomes, ${flush.exceptions.length} exceptions, ${flush.attempts.length} attempts, ${flush.cursors.length} cursors)`,
    };
    const plans: Plan[] = [];
    for (const c of captured) plans.push(await explain(client, labels[c.name] ?? c.name, c));
    return plans;
  } finally {
    await client.end();
  }
}

export function renderPlans(plans: Plan[], lines = 60): string {
  return plans
    .map((p) => [`  ${p.statement}: execution ${p.executionMs} ms, planning ${p.planningMs} ms (generic plan)`, ...p.plan.slice(0, lines).map((l) => `    ${l}`)].join('\n'))
    .join('\n');
}
