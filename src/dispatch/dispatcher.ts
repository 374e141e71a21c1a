import type { Sink } from '../core/sink.js';
import type { AppendResult, Ledger } from '../ledger/ledger.js';
import type { Logger } from '../log.js';
import { SinkWorker, type DispatchHooks, type SinkPolicy, type SinkState, type WorkerOptions } from './sink-worker.js';

export interface DispatcherOptions extends WorkerOptions {
  drainTimeout: number;
}

/** One worker per sink; sinks never wait for each other. */
export function createDispatcher(deps: {
  ledger: Ledger;
  sinks: ReadonlyArray<{ sink: Sink; policy: SinkPolicy }>;
  options: DispatcherOptions;
  logger: Logger;
  hooks?: DispatchHooks;
}) {
  const workers = new Map(
    deps.sinks.map(({ sink, policy }) => [sink.name, new SinkWorker(sink, policy, deps.ledger, deps.options, deps.logger, deps.hooks)]),
  );
  return {
    start(): void {
      for (const w of workers.values()) w.start();
    },
    /** New deliveries exist (or might): look now instead of at the next poll. */
    wake(sinks?: Iterable<string>): void {
      if (!sinks) for (const w of workers.values()) w.wake();
      else for (const name of sinks) workers.get(name)?.wake();
    },
    /** Sinks whose workers take new events straight from the append now (see SinkWorker.offer). */
    handOverSinks(): string[] {
      return [...workers.entries()].filter(([, w]) => w.takesHandOver()).map(([sink]) => sink);
    },
    /** New events from an append, for every worker: taken, or read from the log. */
    offer(appended: AppendResult['appended'], checked: readonly string[]): void {
      if (appended.entries.length === 0) return;
      for (const w of workers.values()) w.offer(appended, checked);
    },
    state(): SinkState[] {
      return [...workers.values()].map((w) => w.state());
    },
    async stop(): Promise<void> {
      await Promise.all([...workers.values()].map((w) => w.stop(deps.options.drainTimeout)));
    },
  };
}

export type Dispatcher = ReturnType<typeof createDispatcher>;
