import { createAntchainSink } from '../connectors/sinks/antchain/index.js';
import { createZhimaSink } from '../connectors/sinks/zhima/index.js';
import type { Sink, SinkDeps } from './core/sink.js';

export type { SinkDeps };
import type { SinkConfig } from './config/schema.js';
import type { SinkPolicy } from './dispatch/sink-worker.js';
import type { Logger } from './log.js';


/** The only place that knows every sink kind. */
export function createSink(name: string, config: SinkConfig, deps: SinkDeps): Sink {
  // Each sink binds its own component and name to the logger.
  const common = { ...deps, name };
  switch (config.kind) {
    case 'antchain':
      return createAntchainSink(config, common);
    case 'zhima':
      return createZhimaSink(config, { ...common, configPath: `sinks.${name}` });
  }
}

export function sinkPolicy(config: SinkConfig): SinkPolicy {
  return { concurrency: config.concurrency, rateLimit: config.rateLimit, timeout: config.timeout, retry: config.retry };
}
