import type { Sink } from '../core/sink.js';
import type { ClaimedDelivery, Ledger } from '../ledger/ledger.js';
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
    /** Per sink, how many new deliveries could be stored already claimed (see SinkWorker.room). */
    room(): Array<{ sink: string; n: number; leaseMs: number }> {
      return [...workers.entries()].map(([sink, w]) => ({ sink, n: w.room(), leaseMs: w.leaseMs() }));
    },
    /** Hands deliveries stored already claimed to their workers. */
    offer(claimed: readonly ClaimedDelivery[]): void {
      const bySink = new Map<string, ClaimedDelivery[]>();
      for (const c of claimed) {
        const list = bySink.get(c.sink);
        if (list) list.push(c);
        else bySink.set(c.sink, [c]);
      }
      for (const [sink, list] of bySink) workers.get(sink)?.offer(list);
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
