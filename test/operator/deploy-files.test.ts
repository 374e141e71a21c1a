import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startConnector, type RunningConnector } from '../../src/cli/connector.js';
import { silentLogger } from '../../src/log.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createOrderTables, REPO } from '../helpers/pipeline.js';
import { waitFor } from '../helpers/wait.js';
import { operatorConfig, startSims } from './helpers.js';

/**
 * The Grafana dashboard and the Prometheus alerts under deploy/ ask for metrics a running
 * instance serves (a renamed metric would leave a panel empty and an alert silent), and
 * the rules are valid for Prometheus (`promtool check rules`, Debian's prometheus package).
 */

const DASHBOARD = join(REPO, 'deploy/grafana/order-relay.json');
const ALERTS = join(REPO, 'deploy/prometheus/alerts.yml');
const PROMTOOL = process.env.PROMTOOL_PATH || '/usr/bin/promtool';

let db: TestDatabase;
let sims: Awaited<ReturnType<typeof startSims>>;
let connector: RunningConnector;
let exposition: string;
const stop = new AbortController();

beforeAll(async () => {
  db = await createTestDatabase('deploy_files');
  await createOrderTables(db.pool);
  sims = await startSims();
  const { config } = operatorConfig(db.url, sims);
  connector = await startConnector(config, { logger: silentLogger(), env: { ...process.env, ...sims.env }, signal: stop.signal, listen: '127.0.0.1:0', defaultMetrics: false });
  await waitFor(() => connector.probe.live().sources.every((s) => s.connected), 'the connector to stream');
  // The slot gauges appear once the slot exists and a scrape has read it.
  exposition = await waitFor(async () => {
    const text = await (await fetch(`${connector.admin!.url}/metrics`)).text();
    return /^order_relay_slot_lag_bytes\{/m.test(text) ? text : undefined;
  }, 'slot figures on /metrics');
});

afterAll(async () => {
  stop.abort();
  await connector?.done;
  await sims?.close();
  await db?.drop();
});

/** Metric names an expression refers to (order_relay_*, and `up`, which Prometheus itself adds). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\border_relay_[a-z_]+\b/g)].map((m) => m[0]);
}

/** Whether /metrics declares the name: as a family (# TYPE) or, for histogram series, through its family. */
function served(name: string): boolean {
  const family = name.replace(/_(bucket|sum|count)$/, '');
  const types = new Map([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  if (types.has(name)) return true;
  return family !== name && types.get(family) === 'histogram';
}

describe('deploy files', () => {
  it('every metric the Grafana dashboard queries is served by a running instance', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
    const used = new Set<string>();
    for (const p of dashboard.panels) for (const t of p.targets ?? []) for (const n of metricNames(t.expr)) used.add(n);
    const templating = readFileSync(DASHBOARD, 'utf8').match(/label_values\((\w+)/g) ?? [];
    for (const t of templating) used.add(t.replace('label_values(', ''));
    expect(used.size).toBeGreaterThan(15);
    expect([...used].filter((n) => !served(n))).toEqual([]);
    // Every panel that queries something has a title and a query per target.
    for (const p of dashboard.panels.filter((x) => x.targets)) {
      expect(p.title).toMatch(/\S/);
      for (const t of p.targets!) expect(t.expr).toMatch(/order_relay_/);
    }
  });

  it('every metric the alert rules use is served, and promtool accepts the rules', async () => {
    const text = readFileSync(ALERTS, 'utf8');
    const used = new Set(metricNames(text));
    for (const want of ['order_relay_source_connected', 'order_relay_slot_retained_bytes', 'order_relay_slot_lag_bytes', 'order_relay_sink_paused', 'order_relay_parked', 'order_relay_oldest_pending_seconds', 'order_relay_kafka_consumer_lag', 'order_relay_kafka_lag_age_seconds']) {
      expect(used).toContain(want);
    }
    expect([...used].filter((n) => !served(n))).toEqual([]);
    if (!existsSync(PROMTOOL)) {
      throw new Error(`no promtool at ${PROMTOOL}: install Debian's package (apt-get install -y prometheus) or set PROMTOOL_PATH`);
    }
    const result = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(PROMTOOL, ['check', 'rules', ALERTS], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr })),
    );
    expect(result.out).toMatch(/SUCCESS: \d+ rules found/);
    expect(result.code).toBe(0);
  });
});
