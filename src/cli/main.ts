import { Command } from 'commander';
import { createApp, migrateLedger } from '../app.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../log.js';
import { preview } from './preview.js';
import { simulate } from './simulate.js';

const program = new Command('order-relay')
  .description('Order-table changes to AntChain EventReport and Alipay Zhima, exactly once in effect')
  .showHelpAfterError();

program
  .command('run')
  .description('stream changes, store events in the ledger and deliver them until SIGTERM')
  .requiredOption('-c, --config <file>', 'YAML config')
  .action(async (opts: { config: string }) => {
    // Signals first: a SIGTERM during start-up must still end in a clean stop.
    const controller = new AbortController();
    let signals = 0;
    let logger: ReturnType<typeof createLogger> | undefined;
    const onSignal = (sig: string) => {
      if (++signals > 1) process.exit(130);
      logger?.info({ signal: sig }, 'shutting down: draining in-flight deliveries');
      controller.abort();
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    const config = loadConfig(opts.config);
    logger = createLogger({ level: config.log.level });
    const app = createApp(config, { logger });
    await app.run(controller.signal);
    logger.info('stopped');
  });

program
  .command('migrate')
  .description('create or upgrade the ledger schema')
  .requiredOption('-c, --config <file>', 'YAML config')
  .action(async (opts: { config: string }) => {
    const config = loadConfig(opts.config);
    const applied = await migrateLedger(config);
    console.log(applied.length ? `applied migrations ${applied.join(', ')} to schema ${config.ledger.schema}` : `schema ${config.ledger.schema} is up to date`);
  });

program
  .command('preview')
  .description('print the events a change yields and the exact signed requests, without sending')
  .requiredOption('-c, --config <file>', 'YAML config')
  .requiredOption('--change <file>', 'JSON: {"table","op","old","new"[,"order"]}')
  .option('--at <iso>', 'pin the request clock (ISO-8601)')
  .option('--nonce <hex>', 'pin the per-request random id (32 hex chars)')
  .action((opts: { config: string; change: string; at?: string; nonce?: string }) => {
    const config = loadConfig(opts.config);
    for (const line of preview(config, opts)) console.log(line);
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
    const sim = await simulate(kind, opts);
    console.log(JSON.stringify({ simulator: kind, url: sim.url }));
    const stop = () => void sim.close().then(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`order-relay: ${message}\n`);
  process.exit(1);
});
