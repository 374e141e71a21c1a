import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { packageRoot } from '../core/root.js';
import { EVENT_CODES } from '../core/events.js';
import { createLogger, type Logger } from '../log.js';
import { clip, table } from './format.js';
import type { DeliveryFilter } from './replay.js';

/**
 * The `order-relay` command line. Command modules load when their command runs, so `--help`
 * and argument errors stay fast. `main.ts` runs it.
 */
export const program = new Command('order-relay')
  .description('Order-table changes to AntChain EventReport and Alipay Zhima, exactly once in effect')
  .showHelpAfterError('(add --help for usage)')
  .version((JSON.parse(readFileSync(`${packageRoot()}/package.json`, 'utf8')) as { version: string }).version, '-V, --version', 'print the version');

const configOption = () => new Option('-c, --config <file>', 'YAML config (${ENV} references are filled from the environment)').makeOptionMandatory();

function positiveInt(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive integer`);
    return n;
  };
}

function positiveNumber(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive number`);
    return n;
  };
}

function json(what: string) {
  return (value: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(value) as unknown;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      return v as Record<string, unknown>;
    } catch {
      throw new InvalidArgumentError(`${what} must be a JSON object, e.g. '{"http5xxRate":0.1}'`);
    }
  };
}

const collect = (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((v) => v.trim()).filter(Boolean)];

/** One-shot commands log to stderr, quietly, so stdout stays for their output. */
function cliLogger(config: Config): Logger {
  const level = process.env.LOG_LEVEL ?? (config.log.level === 'silent' ? 'silent' : 'warn');
  return createLogger({ level, destination: process.stderr });
}

function onSignals(handler: (signal: string, count: number) => void): void {
  let count = 0;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => handler(sig, ++count));
}

program
  .command('run')
  .description('stream changes, store events in the ledger and deliver them until SIGTERM; serves /healthz /readyz /metrics on admin.listen')
  .addOption(configOption())
  .action(async (opts: { config: string }) => {
    const config = loadConfig(opts.config);
    const logger = createLogger({ level: config.log.level });
    const log = logger.child({ component: 'main' });
    const controller = new AbortController();
    onSignals((signal, count) => {
      if (count > 1) process.exit(130);
      log.info({ signal }, 'shutting down: draining in-flight deliveries');
      controller.abort();
    });
    const { startConnector } = await import('./connector.js');
    const connector = await startConnector(config, { logger, signal: controller.signal });
    log.info(
      { sinks: Object.keys(config.sinks), slot: config.source?.slot, ledgerSchema: config.ledger.schema, admin: connector.admin?.url ?? 'off' },
      'order-relay running',
    );
    await connector.done;
    log.info('stopped');
  });

program
  .command('migrate')
  .description('create or upgrade the ledger schema')
  .addOption(configOption())
  .action(async (opts: { config: string }) => {
    const config = loadConfig(opts.config);
    const { migrateLedger } = await import('../app.js');
    const applied = await migrateLedger(config);
    console.log(applied.length ? `applied migrations ${applied.join(', ')} to schema ${config.ledger.schema}` : `schema ${config.ledger.schema} is up to date`);
  });

program
  .command('status')
  .description('slot lag and confirmed LSN, stored positions, backlog / oldest pending / retrying / parked / delivered in the last minute per sink, last errors')
  .addOption(configOption())
  .option('--json', 'machine-readable output')
  .option('--errors <n>', 'how many recent errors to show', positiveInt('--errors'), 10)
  .option('--no-live', 'do not ask the running instance (admin listener) for pause state')
  .action(async (opts: { config: string; json?: boolean; errors: number; live: boolean }) => {
    const config = loadConfig(opts.config);
    const { collectStatus, renderStatus } = await import('./status.js');
    const report = await collectStatus(config, { errors: opts.errors, live: opts.live });
    console.log(opts.json ? JSON.stringify(report, null, 2) : renderStatus(report));
  });

program
  .command('replay')
  .description('re-queue parked deliveries (same event id, same idempotency key), skip them, or re-process parked source input')
  .addOption(configOption())
  .option('--event <id>', 'event id (repeat, or comma-separated)', collect)
  .option('--sink <name>', 'only deliveries to this sink')
  .addOption(new Option('--code <code>', 'only events with this code').choices([...EVENT_CODES]))
  .option('--all', 'every parked delivery (or, with --inputs, every parked input)')
  .option('--skip', 'mark the matching parked deliveries skipped instead: nothing is sent; later deliveries of the same order for that sink are held behind them')
  .option('--skip-order', 'skip the matching deliveries and the rest of their order for that sink (also: what is held behind a delivery skipped earlier)')
  .option('--include-skipped', 'also re-queue deliveries skipped earlier (and those held behind them)')
  .option('--refresh', 're-render each payload from the current source row, same event id (the default)')
  .option('--no-refresh', 're-send the payloads as stored')
  .option('--dry-run', 'list what would change, change nothing')
  .option('--inputs', 'parked source input: re-read the rows it names from the source tables and ingest their current state')
  .option('--input <id>', 'with --inputs: only these parked inputs (repeat, or comma-separated)', collect)
  .option('--dismiss', 'with --inputs --input: mark those inputs resolved without re-processing')
  .option('--json', 'machine-readable output')
  .addHelpText(
    'after',
    `
Examples:
  order-relay replay -c prod.yaml --event 0a1b…                 re-queue one parked event (every sink)
  order-relay replay -c prod.yaml --sink zhima --code TRADE_SUCCESS
  order-relay replay -c prod.yaml --all --dry-run
  order-relay replay -c prod.yaml --event 0a1b… --sink antchain --skip
  order-relay replay -c prod.yaml --event 0a1b… --sink antchain --skip-order   skip it and the rest of its order
  order-relay replay -c prod.yaml --inputs --all                re-process every parked input that names a row`,
  )
  .action(async (opts: {
    config: string; event?: string[]; sink?: string; code?: string; all?: boolean; skip?: boolean; skipOrder?: boolean; includeSkipped?: boolean; dryRun?: boolean;
    refresh?: boolean; inputs?: boolean; input?: string[]; dismiss?: boolean; json?: boolean;
  }) => {
    const config = loadConfig(opts.config);
    if (opts.inputs) {
      if (!opts.all && !opts.input?.length) throw new Error('say which parked inputs: --input <id> or --all');
      if (opts.input?.some((i) => !/^\d+$/.test(i))) throw new Error('--input takes the numeric ids `status` shows');
      const { reprocessInputs } = await import('./replay.js');
      const outcomes = await reprocessInputs(config, { ...(opts.input ? { ids: opts.input } : {}), ...(opts.dismiss ? { dismiss: true } : {}), logger: cliLogger(config) });
      if (opts.json) console.log(JSON.stringify(outcomes, null, 2));
      else if (outcomes.length === 0) console.log('no unresolved parked input matches');
      else {
        console.log(table(['INPUT', 'RESULT', 'NEW EVENTS', 'DETAIL'], outcomes.map((x) => [x.id, x.result, x.newEvents, clip(x.detail, 120)])));
        const left = outcomes.filter((x) => x.result === 'left').length;
        console.log(`${outcomes.length - left} resolved, ${left} still parked`);
      }
      return;
    }
    const filter: DeliveryFilter = {
      ...(opts.event?.length ? { eventIds: opts.event } : {}),
      ...(opts.sink ? { sink: opts.sink } : {}),
      ...(opts.code ? { code: opts.code } : {}),
      ...(opts.all ? { all: true } : {}),
    };
    const { renderReplay, replayParked } = await import('./replay.js');
    const report = await replayParked(
      config,
      { ...filter, skip: !!opts.skip, skipOrder: !!opts.skipOrder, includeSkipped: !!opts.includeSkipped, dryRun: !!opts.dryRun, refresh: opts.refresh !== false },
      { logger: cliLogger(config) },
    );
    console.log(opts.json ? JSON.stringify(report, null, 2) : renderReplay(report));
  });

program
  .command('backfill')
  .description('emit events for orders that existed before the replication slot (deduplicated against the stream by event id; resumable)')
  .addOption(configOption())
  .option('--batch-size <n>', 'rows per page; each page is one ledger transaction', positiveInt('--batch-size'), 500)
  .option('--restart', 'forget the stored cursor and read every table again (events already stored are not duplicated)')
  .option('--json', 'print the result as JSON (no progress bar)')
  .addHelpText(
    'after',
    `
The slot is created first when it is missing (source.create), so no change can fall between
the backfill's reads and the stream. Run it while \`order-relay run\` runs or before; the running
instance delivers the new events. Interrupt it at any time (Ctrl-C) and run it again to resume.`,
  )
  .action(async (opts: { config: string; batchSize: number; restart?: boolean; json?: boolean }) => {
    const config = loadConfig(opts.config);
    const controller = new AbortController();
    onSignals((_s, count) => {
      if (count > 1) process.exit(130);
      controller.abort();
    });
    const { backfill, backfillProgress } = await import('./backfill.js');
    const progress = backfillProgress(process.stderr);
    const result = await backfill(config, {
      logger: cliLogger(config),
      batchSize: opts.batchSize,
      ...(opts.restart ? { restart: true } : {}),
      signal: controller.signal,
      onProgress: (p) => {
        if (!opts.json) progress.update(p);
      },
    });
    progress.done();
    if (opts.json) console.log(JSON.stringify(result, null, 2));
    else {
      if (result.slotCreated) console.log(`created replication slot ${config.source?.slot}: changes from now on are streamed`);
      console.log(
        table(
          ['TABLE', 'ROWS READ', 'NEW EVENTS', 'PARKED', 'NULL KEYS', 'STATE'],
          result.tables.map((t) => [t.table, t.rows, t.newEvents, t.parked, t.nullKeys, t.alreadyDone ? 'done earlier (--restart to read again)' : 'done']),
        ),
      );
      const d = Object.entries(result.deliveries).map(([s, n]) => `${s} ${n}`).join(', ');
      if (d) console.log(`new deliveries: ${d} (a running \`order-relay run\` sends them)`);
    }
    if (result.interrupted) {
      process.stderr.write('order-relay backfill: interrupted; run the same command again to resume after the last stored page\n');
      process.exitCode = 130;
    }
  });

program
  .command('doctor')
  .description('preflight: wal_level, replication privilege, publication, slot, replica identity, max_slot_wal_keep_size, ledger schema, credentials and keys, endpoints, clock')
  .addOption(configOption())
  .option('--json', 'machine-readable output')
  .option('--offline', 'do not probe the HTTP endpoints')
  .option('--timeout <ms>', 'per network check', positiveInt('--timeout'), 5000)
  .action(async (opts: { config: string; json?: boolean; offline?: boolean; timeout: number }) => {
    const config = loadConfig(opts.config);
    const { doctor, renderChecks } = await import('./doctor.js');
    const checks = await doctor(config, { timeoutMs: opts.timeout, ...(opts.offline ? { offline: true } : {}) });
    console.log(opts.json ? JSON.stringify(checks, null, 2) : renderChecks(checks));
    const failed = checks.filter((c) => c.status === 'fail');
    if (failed.length) {
      process.stderr.write(`order-relay doctor: ${failed.length} check${failed.length > 1 ? 's' : ''} failed (${failed.map((c) => c.name).join(', ')})\n`);
      process.exitCode = 1;
    }
  });

program
  .command('preview')
  .description('print the events a change or a page visit yields and the exact signed requests, without sending')
  .addOption(configOption())
  .option('--change <file>', 'a row change, JSON: {"table","op":"insert|update|delete","new"[,"old"][,"order"][,"committedAt"]}')
  .option('--visit <file>', 'a page visit: the JSON value of one record of a Kafka visit topic (fields as in kafka.topics)')
  .option('--topic <name>', 'with --visit: the visit topic whose field mapping reads the record (needed when several are configured)')
  .option('--position <partition@offset>', 'with --visit: the record\'s Kafka position, which names a visit without a visit id')
  .option('--at <iso>', 'pin the request clock (ISO-8601)')
  .option('--nonce <hex>', 'pin the first request\'s req_msg_id / alipay-request-id (32 hex chars); later requests get ids derived from it')
  .addHelpText(
    'after',
    `
Give one of --change or --visit. Every event prints one line, then one line per sink: the
signed request, or why that sink sends nothing for it (notApplicable) or refuses it (rejected).
A change that yields no event prints {"noEvents": "<why>"}. Each printed request has its own
per-request id, so any of them can be sent as it is; request_id / out_biz_no are the event's.

"old" in a change (orders updates) is the order row before the change: preview takes it as
what the ledger knows of the order, which is what the stream decides transitions from (a
status equal to the old one yields nothing). For a refund row, "order" is the order it
belongs to. Where the stream would not use "old" or "order" (inserts, refund rows), preview
refuses the file instead of ignoring them.

Examples:
  order-relay preview -c config.yaml --change paid.json --at 2024-05-20T08:30:00Z
    paid.json: {"table":"public.orders","op":"update","old":{"order_no":"A1","status":"CREATED"},
                "new":{"order_no":"A1","status":"PAID",...}}
  order-relay preview -c config.yaml --visit visit.json
    visit.json: {"visit_id":"v-1","page":"CONTRACT_DETAIL_PAGE","visitor_phone":"13800138000"}`,
  )
  .action(async (opts: { config: string; change?: string; visit?: string; topic?: string; position?: string; at?: string; nonce?: string }) => {
    const config = loadConfig(opts.config);
    const { preview } = await import('./preview.js');
    for (const line of preview(config, opts)) console.log(line);
  });

program
  .command('demo')
  .description('embedded PostgreSQL + both gateway simulators + the connector + an order generator, with live progress and a final report')
  .option('--orders <n>', 'orders to generate', positiveInt('--orders'), 2000)
  .option('--rate <n>', 'new orders per second', positiveNumber('--rate'), 200)
  .addOption(new Option('--faults <preset>', 'simulator faults').choices(['none', 'light', 'heavy']).default('light'))
  .option('--antchain-faults <json>', 'AntChain simulator fault overrides, e.g. {"http5xxRate":0.2,"latencyMs":20}', json('--antchain-faults'))
  .option('--zhima-faults <json>', 'Zhima simulator fault overrides, e.g. {"dropAfterCommitRate":0.1}', json('--zhima-faults'))
  .option('--seed <n>', 'seed of the order generator and the fault dice', positiveInt('--seed'), 1)
  .option('--drain-timeout <s>', 'seconds to wait for every delivery to settle after the last order', positiveInt('--drain-timeout'), 120)
  .option('--log <file>', 'keep the connector\'s JSON log in this file')
  .option('--log-level <level>', 'connector log level', 'info')
  .option('--listen <host:port>', 'admin listener (default: demo.yaml\'s, or any free port)')
  .action(async (opts: {
    orders: number; rate: number; faults: 'none' | 'light' | 'heavy'; antchainFaults?: Record<string, unknown>; zhimaFaults?: Record<string, unknown>;
    seed: number; drainTimeout: number; log?: string; logLevel: string; listen?: string;
  }) => {
    const { runDemo } = await import('../demo/demo.js');
    const controller = new AbortController();
    onSignals((_s, count) => {
      if (count > 2) process.exit(130);
      controller.abort();
    });
    const result = await runDemo({
      orders: opts.orders,
      rate: opts.rate,
      faults: opts.faults,
      ...(opts.antchainFaults ? { antchainFaults: opts.antchainFaults } : {}),
      ...(opts.zhimaFaults ? { zhimaFaults: opts.zhimaFaults } : {}),
      seed: opts.seed,
      drainTimeout: opts.drainTimeout,
      out: process.stdout,
      signal: controller.signal,
      ...(opts.log ? { logFile: opts.log } : {}),
      logLevel: opts.logLevel,
      ...(opts.listen ? { listen: opts.listen } : {}),
    });
    // Exit now: every process and file the demo started is gone; nothing else should linger.
    process.exit(result.interrupted ? 130 : result.ok ? 0 : 1);
  });

program
  .command('keygen')
  .description('write throw-away simulator credentials (AntChain key/secret, two RSA-2048 pairs) into a directory, for docker-compose')
  .requiredOption('--out <dir>', 'directory to write to')
  .option('--force', 'replace an existing set (the simulators and the connector must then be given the new keys)')
  .option('--keep-existing', 'leave a complete set already there as it is (exit 0); a partial one is still refused')
  .action(async (opts: { out: string; force?: boolean; keepExisting?: boolean }) => {
    const { writeKeySet } = await import('../demo/keys.js');
    const { files, kept } = writeKeySet(opts.out, undefined, { ...(opts.force ? { force: true } : {}), ...(opts.keepExisting ? { keepExisting: true } : {}) });
    if (kept) process.stderr.write(`order-relay keygen: a complete key set is in ${opts.out}; kept it\n`);
    else for (const f of files) console.log(f);
  });

program
  .command('simulate')
  .description('run a gateway simulator (antchain | zhima) in the foreground')
  .argument('<kind>', 'antchain or zhima')
  .option('--port <n>', 'port (0 = any free port)', '0')
  .option('--host <host>', 'bind address', '127.0.0.1')
  .option('--seed <n>', 'seed of the fault generator', '1')
  .option('--faults <json>', 'fault settings, e.g. {"http5xxRate":0.1}')
  .option('--access-key <ak>', 'antchain: the access key it accepts (secret from ANTCHAIN_ACCESS_SECRET)')
  .option('--app-id <id>', 'zhima: the app id it accepts')
  .option('--app-public-key <file>', 'zhima: app public key PEM (verifies requests)')
  .option('--gateway-private-key <file>', 'zhima: gateway private key PEM (signs answers)')
  .action(async (kind: string, opts) => {
    const { simulate } = await import('./simulate.js');
    const sim = await simulate(kind, opts);
    console.log(JSON.stringify({ simulator: kind, url: sim.url }));
    const stop = () => void sim.close().then(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });

/** One line: the reason, with a config error's list of problems joined. */
export function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/:\s*\n\s*-\s*/, ': ').replace(/\s*\n\s*-\s*/g, '; ').replace(/\s*\n\s*/g, '; ');
}
