/**
 * `npm run chaos [-- --seed N] [--short] [--json] [--duration S] [--kills N] [--instances N] …`
 * Prints a summary; with --json, one JSON object on the last line. Exits 1 when an invariant
 * breaks (the seed is printed so the run can be replayed).
 */
import { parseArgs } from 'node:util';
import { FAILOVER_TARGET_S, kcatAvailable, LONG, renderReport, runChaos, SHORT, type ChaosOptions } from './chaos.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    short: { type: 'boolean', default: false },
    duration: { type: 'string' },
    kills: { type: 'string' },
    preexisting: { type: 'string' },
    'pg-restarts': { type: 'string' },
    'fault-windows': { type: 'string' },
    rate: { type: 'string' },
    'drain-timeout': { type: 'string' },
    json: { type: 'boolean', default: false },
    sabotage: { type: 'string' },
    kafka: { type: 'boolean' },
    'no-kafka': { type: 'boolean' },
    instances: { type: 'string' },
    'log-dir': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(`npm run chaos -- [options]
  --seed N            seed of the load, the fault plan and the simulators' dice (default: random, printed)
  --short             the short variant the test suite runs (${SHORT.duration} s, ${SHORT.kills} kills)
  --duration S        seconds of load (default ${LONG.duration})
  --kills N           connector restarts, SIGKILL or (a third) SIGTERM (default ${LONG.kills})
  --preexisting N     orders written before the slot, brought in by a backfill during the load (default ${LONG.preexisting})
  --pg-restarts N     Postgres restarts (default ${LONG.pgRestarts})
  --fault-windows N   simulator fault windows (default ${LONG.faultWindows})
  --rate R            load operations per second (default ${LONG.rate})
  --drain-timeout S   seconds allowed for the final drain (default ${LONG.drainTimeout})
  --kafka / --no-kafka  also stream orders through a mock Kafka cluster (default: on for the
                      long run when kcat is installed, off for --short)
  --instances N       connector processes on the same config and ledger (default 1): each restart
                      hits a random one (the last SIGKILLs make sure both the slot owner and a
                      standby were hit), and each SIGKILL of the owner is timed until another
                      process streams the slot (failover_s, target max ${FAILOVER_TARGET_S} s)
  --log-dir DIR       append each connector process's output (log level info) to DIR/instance-<i>.log
  --sabotage KIND     self-test of the checker: lost | duplicate (the run must then FAIL)
  --json              one JSON object on the last line
`);
  process.exit(0);
}

const base = values.short ? SHORT : LONG;
const int = (v: string | undefined, fallback: number): number => (v === undefined ? fallback : Number(v));
const opts: ChaosOptions = {
  seed: int(values.seed, Math.floor(Math.random() * 2 ** 31)),
  duration: int(values.duration, base.duration),
  kills: int(values.kills, base.kills),
  preexisting: int(values.preexisting, base.preexisting),
  pgRestarts: int(values['pg-restarts'], base.pgRestarts),
  faultWindows: int(values['fault-windows'], base.faultWindows),
  rate: int(values.rate, base.rate),
  drainTimeout: int(values['drain-timeout'], base.drainTimeout),
  instances: int(values.instances, 1),
  ...(values['log-dir'] ? { logDir: values['log-dir'] } : {}),
  kafka: values['no-kafka'] ? false : values.kafka ?? (!values.short && kcatAvailable()),
  ...(values.sabotage === 'lost' || values.sabotage === 'duplicate' ? { sabotage: values.sabotage } : {}),
  log: (l) => process.stderr.write(`${l}\n`),
};
if (!Number.isInteger(opts.instances) || opts.instances! < 1) {
  process.stderr.write('chaos: --instances must be a whole number of at least 1\n');
  process.exit(2);
}
for (const [k, v] of Object.entries(opts)) {
  if (typeof v === 'number' && (!Number.isFinite(v) || v < 0)) {
    process.stderr.write(`chaos: --${k} must be a non-negative number\n`);
    process.exit(2);
  }
}

try {
  const report = await runChaos(opts);
  process.stdout.write(`\n${renderReport(report)}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.ok ? 0 : 1);
} catch (err) {
  process.stderr.write(`chaos failed (seed ${opts.seed}): ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
}
