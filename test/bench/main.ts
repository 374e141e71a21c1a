/**
 * `npm run bench [-- --events N] [--json] [--cpu-prof] [--backlog N] …`
 * Prints a table; with --json, one JSON object on the last line.
 */
import { parseArgs } from 'node:util';
import { defaultOptions, PHASES, renderResult, runBench, type Phase } from './bench.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string' },
    'e2e-orders': { type: 'string' },
    'latency-seconds': { type: 'string' },
    'warmup-seconds': { type: 'string' },
    rate: { type: 'string' },
    backlog: { type: 'string' },
    'drain-seconds': { type: 'string' },
    'peer-events': { type: 'string' },
    concurrency: { type: 'string' },
    'concurrency-80': { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    explain: { type: 'boolean', default: false },
    phases: { type: 'string' },
    'connector-node-args': { type: 'string' },
    statements: { type: 'boolean', default: false },
    'connector-config': { type: 'string' },
    'pg-settings': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(`npm run bench -- [options]
  --events N            order changes for decode/ingest (default 200000); other sizes scale from it
  --e2e-orders N        orders per e2e phase (default events/40; 1.5 events per order)
  --latency-seconds S   duration of the 500 events/s latency run (default 20)
  --warmup-seconds S    the same load before the measured window, reported apart (default 3)
  --rate R              offered events/s for the latency run (default 500)
  --backlog N           extra backlog run of N events for the memory ceiling (e.g. 1000000); its drain
                        gives drain_start_eps / drain_end_eps (else the ingest phase's backlog does)
  --drain-seconds S     how long a paused backlog is resumed and measured (default 20)
  --peer-events N       rows for pg-transactional-outbox (default events/40)
  --concurrency N       per-sink concurrency for e2e and latency (default 64)
  --concurrency-80 N    per-sink concurrency for the 80 ms run (default 256)
  --connector-config J  JSON deep-merged over every connector config, e.g. '{"source":{"maxBatchChanges":1000}}'
  --pg-settings J       JSON of extra postgres -c settings, e.g. '{"autovacuum_naptime":"1s"}'
  --phases a,b          run only these of ${PHASES.join(', ')} (rsa always; decode with ingest)
--connector-node-args A  node flags for the connector (default --max-semi-space-size=4 --max-old-space-size=512, as the Dockerfile; 'none' for none)
  --statements          load pg_stat_statements and print each phase's costliest statements
  --explain             print EXPLAIN ANALYZE plans (generic, as the connector runs them) of the ledger's append, read_log and flush_log on the backlog
  --cpu-prof            profile the connector (node --cpu-prof) and print where its time went
  --json                print one JSON object on the last line
`);
  process.exit(0);
}

const num = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number`);
  return n;
};

const opts = defaultOptions(num(values.events, 'events'));
const set = <K extends keyof typeof opts>(k: K, v: (typeof opts)[K] | undefined) => {
  if (v !== undefined) opts[k] = v;
};
set('e2eOrders', num(values['e2e-orders'], 'e2e-orders'));
set('latencySeconds', num(values['latency-seconds'], 'latency-seconds'));
set('warmupSeconds', num(values['warmup-seconds'], 'warmup-seconds'));
set('rate', num(values.rate, 'rate'));
set('backlog', num(values.backlog, 'backlog'));
set('drainSeconds', num(values['drain-seconds'], 'drain-seconds'));
set('peerEvents', num(values['peer-events'], 'peer-events'));
set('concurrency', num(values.concurrency, 'concurrency'));
set('concurrency80', num(values['concurrency-80'], 'concurrency-80'));
opts.cpuProf = values['cpu-prof'] ?? false;
opts.explain = values.explain ?? false;
opts.statements = values.statements ?? false;
if (values['connector-node-args']) opts.connectorNodeArgs = values['connector-node-args'] === 'none' ? [] : values['connector-node-args'].split(/\s+/).filter(Boolean);
if (values.phases) {
  const picked = values.phases.split(',').map((p) => p.trim()).filter(Boolean);
  const unknown = picked.filter((p) => !(PHASES as readonly string[]).includes(p));
  if (unknown.length) throw new Error(`--phases: unknown phase(s) ${unknown.join(', ')}; known: ${PHASES.join(', ')}`);
  opts.phases = new Set(picked as Phase[]);
}
if (values['pg-settings']) opts.pgSettings = JSON.parse(values['pg-settings']) as Record<string, string>;
if (opts.statements) opts.pgSettings = { shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track_planning': 'on', ...opts.pgSettings };
if (values['connector-config']) opts.connectorOverrides = JSON.parse(values['connector-config']) as Record<string, unknown>;

try {
  const result = await runBench(opts);
  process.stdout.write(`\n${renderResult(result)}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
}
