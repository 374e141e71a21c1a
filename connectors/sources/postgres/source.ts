import { sleep } from '../../../src/core/sleep.js';
import pg from 'pg';
import type { Logger } from '../../../src/log.js';
import { FencedError, type Checkpoint, type Fence, type Source, type SourceBatch, type SourceHealth } from '../../../src/core/source.js';
import type { PostgresSourceConfig } from './config.js';
import { SlotInUseError, classifyReplicationError, isPermanent } from './errors.js';
import { formatLsn, parseLsn } from './lsn.js';
import { ReplicationSession, type StreamState } from './session.js';
import { ensurePublicationAndSlot } from './setup.js';
import { trySlot, type SlotOwnership } from './ownership.js';

export interface PostgresSourceDeps {
  logger: Logger;
  /** Connection string of the source database. */
  url: string;
  /** Schema-qualified tables to publish. */
  tables: string[];
  /** Source id in the ledger's checkpoints; default "postgres". */
  id?: string;
  /**
   * Claims the slot in the ledger once its lock is held (`Ledger.claimOwner`): batches carry
   * the claim, and the ledger refuses them once a later owner has claimed the slot.
   */
  claim?: (name: string) => Promise<Fence>;
}

/**
 * Postgres logical replication (pgoutput) as a Source. Reconnects with capped exponential
 * backoff after drops and server restarts; a slot held by another instance makes this one
 * a hot standby that keeps trying. What no retry can fix ends `run` with the cause and the
 * fix (see `classifyReplicationError`): wal_level, a privilege the role lacks, a publication
 * it may not create, a slot of another plugin or database, a missing slot it may not create.
 */
export function createPostgresSource(config: PostgresSourceConfig, deps: PostgresSourceDeps): Source & { readonly state: StreamState } {
  const id = deps.id ?? 'postgres';
  const log = deps.logger.child({ component: 'source', source: id, slot: config.slot });
  const state: StreamState = { committed: 0n, acked: 0n, connected: false };
  const health: SourceHealth = { connected: false, reconnects: 0 };
  let session: ReplicationSession | null = null;
  // The slot's lock (see ownership.ts): held while this instance streams, or may stream.
  let ownership: SlotOwnership | null = null;
  // The ledger claim that goes with it: every batch carries it.
  let fence: Fence | undefined;

  async function setup(resumed: boolean): Promise<void> {
    const client = new pg.Client({ connectionString: deps.url, application_name: 'order-relay-setup' });
    // The server going away between two setup statements is an 'error' event, which would
    // kill the process without a listener; the statement rejects instead and `run` retries.
    client.on('error', () => {});
    await client.connect();
    try {
      const { slotCreated } = await ensurePublicationAndSlot(
        client,
        { slot: config.slot, publication: config.publication, tables: deps.tables, create: config.create },
        log,
      );
      if (slotCreated && resumed) {
        // The ledger has a checkpoint, so a slot existed once. Changes between the checkpoint
        // and the new slot's start were never streamed.
        log.error(
          { checkpoint: formatLsn(state.committed) },
          'replication slot was missing and has been re-created: changes committed while it was gone were not streamed; run `order-relay backfill` to recover them',
        );
      }
    } finally {
      await client.end().catch(() => {});
    }
  }

  async function run(handle: (batch: SourceBatch) => Promise<void>, resumeFrom: Checkpoint[], signal: AbortSignal): Promise<void> {
    const stored = resumeFrom.find((c) => c.stream === 'slot');
    if (stored) state.committed = state.acked = parseLsn(stored.position);
    let backoff = config.reconnect.initialBackoff;
    let first = true;
    // The stream of this attempt: what a lost slot lock stops.
    let current: AbortController | null = null;
    try {
      while (!signal.aborted) {
        if (!ownership) {
          let got: Awaited<ReturnType<typeof trySlot>>;
          try {
            got = await trySlot(deps.url, config.slot, config.lease);
          } catch (err) {
            health.connected = false;
            if (signal.aborted) break;
            report(err, undefined, backoff);
            health.reconnects++;
            await sleep(backoff * (0.75 + Math.random() * 0.5), signal);
            backoff = Math.min(backoff * 2, config.reconnect.maxBackoff);
            continue;
          }
          if ('standby' in got) {
            if (health.role !== 'standby') log.info({ owner: got.owner }, 'standby: another instance streams the slot; taking over when it goes');
            health.role = 'standby';
            delete health.lastError;
            await sleep(config.standbyPoll, signal);
            continue;
          }
          const mine = got;
          // A new epoch in the ledger before the first batch: whatever a previous owner still
          // writes (a zombie resumed after its lease) is refused from now on.
          try {
            fence = deps.claim ? await deps.claim(`postgres:${config.slot}`) : undefined;
          } catch (err) {
            await mine.release();
            if (signal.aborted) break;
            health.lastError = `claiming the slot in the ledger failed: ${String(err)}`;
            log.warn({ err: String(err), retryInMs: backoff }, 'claiming the slot in the ledger failed; retrying');
            await sleep(backoff, signal);
            backoff = Math.min(backoff * 2, config.reconnect.maxBackoff);
            continue;
          }
          ownership = mine;
          health.role = 'owner';
          backoff = config.reconnect.initialBackoff;
          log.info('slot lock held: this instance streams the slot');
          // Losing the lock's connection stops the stream and every acknowledgement at once:
          // another instance may be streaming the slot a moment later.
          void mine.lost.then((err) => {
            if (ownership !== mine) return;
            ownership = null;
            session = null;
            health.role = 'standby';
            health.connected = false;
            log.error({ err: String(err) }, 'lost the slot lock: stopped streaming and acknowledging; standing by');
            current?.abort();
          });
        }
        const stream = new AbortController();
        current = stream;
        const stopStream = () => stream.abort();
        signal.addEventListener('abort', stopStream, { once: true });
        const startedAt = Date.now();
        let pipelineError: unknown;
        let slotBusy = false;
        try {
          if (first || !health.connected) await setup(stored !== undefined);
          first = false;
          if (stream.signal.aborted) continue;
          session = new ReplicationSession(
            {
              url: deps.url,
              slot: config.slot,
              publication: config.publication,
              maxBatchChanges: config.maxBatchChanges,
              maxBufferBytes: config.maxBufferBytes,
              statusIntervalMs: config.statusInterval,
              heartbeatMs: config.heartbeat === 'off' ? undefined : config.heartbeat,
            },
            state,
            async (batch) => {
              try {
                await handle(fence ? { ...batch, fence } : batch);
              } catch (err) {
                pipelineError = err;
                if (err instanceof FencedError) fenced(err);
                throw err;
              }
            },
            log,
          );
          health.connected = true;
          log.info({ from: formatLsn(state.committed) }, 'streaming');
          await session.run(stream.signal);
          if (signal.aborted) break;
          if (stream.signal.aborted) continue;
          throw new Error('replication stream ended');
        } catch (err) {
          health.connected = false;
          session = null;
          if (signal.aborted) break;
          if (stream.signal.aborted) continue;
          slotBusy = report(err, pipelineError, backoff);
        } finally {
          signal.removeEventListener('abort', stopStream);
        }
        if (Date.now() - startedAt > 60_000) backoff = config.reconnect.initialBackoff;
        health.reconnects++;
        // Holding the lock, a slot still active is most likely the previous owner's walsender,
        // about to notice its client is gone: try again within a second rather than back off
        // further (a consumer of another kind holding it is retried as often).
        const wait = slotBusy ? Math.min(backoff, 1_000) : backoff;
        await sleep(wait * (0.75 + Math.random() * 0.5), signal);
        backoff = Math.min(backoff * 2, config.reconnect.maxBackoff);
      }
    } finally {
      const mine = ownership;
      ownership = null;
      health.role = 'standby';
      await mine?.release();
    }
  }

  /**
   * Another instance claimed the slot since this one did: this one is a zombie (it was frozen
   * past its lease). Its batch was refused whole; it gives the lock up (most likely gone
   * already), stops the stream and stands by.
   */
  function fenced(err: FencedError): void {
    health.lastError = err.message;
    log.error({ err: err.message }, 'fenced: another instance owns the slot now; nothing of this batch was written; standing by');
    const mine = ownership;
    ownership = null;
    session = null;
    health.role = 'standby';
    health.connected = false;
    void mine?.release();
  }

  /** Logs why the stream stopped; throws when retrying cannot help. True: the slot is in use. */
  function report(err: unknown, pipelineError: unknown, backoff: number): boolean {
    if (pipelineError instanceof FencedError) return false;
    if (pipelineError !== undefined) {
      // Storing a batch failed (the ledger is down, or restarting). The write is one
      // statement, so nothing half-done remains; whatever did commit dedupes by event id.
      health.lastError = `storing changes failed: ${String(pipelineError)}`;
      log.error({ err: String(pipelineError), retryInMs: backoff }, 'storing a batch failed; re-reading from the last committed position');
      return false;
    }
    const failure = classifyReplicationError(err, config.slot, roleOf(deps.url));
    health.lastError = failure.message;
    if (isPermanent(failure, config.create)) {
      log.error({ err: failure.message }, 'stopping: retrying cannot fix this');
      throw failure;
    }
    if (failure instanceof SlotInUseError) {
      log.warn({ err: failure.message }, 'slot still in use (its previous walsender has not ended yet); trying again');
      return true;
    }
    log.warn({ err: failure.message, retryInMs: backoff }, 'replication connection lost; reconnecting');
    return false;
  }

  return {
    id,
    state,
    run,
    acknowledge(checkpoints: Checkpoint[]): void {
      const cp = checkpoints.find((c) => c.stream === 'slot');
      if (!cp) return;
      const lsn = parseLsn(cp.position);
      if (lsn > state.committed) state.committed = lsn;
      // Without the slot's lock, nothing is acknowledged: another instance may own the slot.
      if (ownership) session?.ack(lsn);
    },
    health: () => ({ ...health, connected: health.connected && state.connected }),
  };
}

/** The role the source connects as, for the fixes an error names. */
function roleOf(url: string): string | undefined {
  try {
    return decodeURIComponent(new URL(url).username) || undefined;
  } catch {
    return undefined;
  }
}
