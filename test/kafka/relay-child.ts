/**
 * The relay as its own process, for the crash tests: `node --import tsx relay-child.ts`
 * with the config as JSON in RELAY_TEST_CONFIG. Runs the real app (Kafka source → ingest
 * → ledger → dispatcher) with a sink that accepts everything; SIGTERM stops it gracefully,
 * SIGKILL is the crash under test. Logs (warn and up) go to stderr. With RELAY_TEST_WAIT=1
 * it loads everything, then waits for a line on stdin before it connects: the tests start
 * the next instance while the current one still runs, and let it go at the kill.
 */
import pino from 'pino';
import { createApp } from '../../src/app.js';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { acceptingSink } from './fixtures.js';

const config = configSchema.parse(JSON.parse(process.env.RELAY_TEST_CONFIG ?? '{}'));
const logger = createLogger({ level: process.env.RELAY_TEST_LOG_LEVEL ?? 'warn', destination: pino.destination(2) });
const app = createApp(config, { logger, sinks: [acceptingSink()] });
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
if (process.env.RELAY_TEST_WAIT === '1') await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.destroy();
app.run(stop.signal).then(
  () => process.exit(0),
  (err: unknown) => {
    logger.fatal({ err: String(err) }, 'relay failed');
    process.exit(1);
  },
);
