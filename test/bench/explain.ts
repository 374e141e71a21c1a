import pg from 'pg';
import type { BusinessEvent } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import { createLedger, type AppendInput } from '../../src/ledger/ledger.js';
import { PROJECT } from './harness.js';

/**
 * EXPLAIN ANALYZE of the ledger's own statements (append, claim, settle), captured from
 * `createLedger` through a recording pool so the plans are of the exact SQL the connector
 * runs. Each runs inside a transaction that is rolled back: the ledger is left as it was.
 */
interface Captured {
  sql: string;
  params: unknown[];
}

function recordingLedger(schema: string) {
  const captured: Captured[] = [];
  const fake = {
    query: async (sql: string | pg.QueryConfig, params: unknown[] = []) => {
      captured.push(typeof sql === 'string' ? { sql, params } : { sql: sql.text, params: sql.values ?? [] });
      return { rows: [{ inserted: 0, deliveries: {}, leased: [], n: 0 }], rowCount: 0 };
    },
    // A client, to the ledger: the append's order locks and the append itself are two
    // statements on it (the caller's transaction), both captured.
    release: () => {},
  };
  const ledger = createLedger(fake as unknown as pg.Pool, schema);
  return { ledger, captured };
}

export interface Plan {
  statement: string;
  executionMs: number;
  planningMs: number;
  /** The plan's text, trimmed to its most expensive lines. */
  plan: string[];
}

async function explain(client: pg.Client, label: string, c: Captured): Promise<Plan> {
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${c.sql}`, c.params);
    const lines = rows.map((r) => r['QUERY PLAN']);
    const exec = Number(/Execution Time: ([\d.]+)/.exec(lines.join('\n'))?.[1] ?? NaN);
    const planning = Number(/Planning Time: ([\d.]+)/.exec(lines.join('\n'))?.[1] ?? NaN);
    return { statement: label, executionMs: exec, planningMs: planning, plan: lines };
  } finally {
    await client.query('ROLLBACK');
  }
}

/** Plans of append (a batch of `batch` new events), claim (64) and settle (64) on the ledger as it is now. */
export async function explainLedger(url: string, schema: string, options: { batch: number; sink: string }): Promise<Plan[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { ledger, captured } = recordingLedger(schema);
    const sample = (await client.query<{ payload: BusinessEvent; position: string; committed_at: Date }>(`SELECT payload, position, committed_at FROM ${schema}.events LIMIT $1`, [options.batch])).rows;
    const events = sample.map((r, i) => {
      const orderNo = `explain-${i}`;
      const event: BusinessEvent = { ...r.payload, id: eventId([PROJECT, orderNo, r.payload.code]), orderNo, orderKey: orderNo };
      return { event, sinks: ['antchain', 'zhima'], position: r.position, committedAt: r.committed_at.toISOString() };
    });
    const input: AppendInput = {
      source: 'postgres',
      events,
      orders: events.map((e) => ({ orderNo: e.event.orderNo!, row: e.event.order ?? {} })),
      bad: [],
      checkpoints: [{ stream: 'slot', position: 'FFFFFFFF/0' }],
    };
    await ledger.append(input);
    await ledger.claim(options.sink, 64, 10_000);
    const ids = (
      await client.query<{ id: string; event_id: string; attempts: number }>(
        `SELECT id::text, event_id, attempts FROM ${schema}.deliveries WHERE sink = $1 AND status = 'pending' ORDER BY id LIMIT 64`,
        [options.sink],
      )
    ).rows;
    await ledger.settle(ids.map((d) => ({ eventId: d.event_id, sink: options.sink, deliveryId: d.id, attempt: d.attempts, status: 'delivered' as const, outcome: 'delivered', info: { durationMs: 3, requestId: 'x', httpStatus: 200 } })));
    const labels = [`order locks (${events.length} orders)`, `append (${events.length} events, ${events.length * 2} deliveries)`, `claim (${options.sink}, limit 64)`, `settle (${ids.length} outcomes)`];
    const plans: Plan[] = [];
    for (const [i, c] of captured.entries()) plans.push(await explain(client, labels[i] ?? `statement ${i}`, c));
    return plans;
  } finally {
    await client.end();
  }
}

export function renderPlans(plans: Plan[], lines = 60): string {
  return plans
    .map((p) => [`  ${p.statement}: execution ${p.executionMs} ms, planning ${p.planningMs} ms`, ...p.plan.slice(0, lines).map((l) => `    ${l}`)].join('\n'))
    .join('\n');
}
