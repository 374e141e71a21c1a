import pg from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import type { Logger } from '../../../src/log.js';
import type { SourceBatch, SourceChange } from '../../../src/core/source.js';
import { formatLsn, parseLsn } from './lsn.js';
import { PgoutputStream, type StreamMessage } from './pgoutput.js';
import { standbyStatusUpdate } from './standby-status.js';

/** State that outlives one replication connection. */
export interface StreamState {
  /** Highest commit-end LSN whose transaction (and everything below it) is in the ledger. */
  committed: bigint;
  /** Highest LSN reported to the server as flushed. Never above `committed`. */
  acked: bigint;
  connected: boolean;
}

export interface SessionOptions {
  url: string;
  slot: string;
  publication: string;
  maxBatchChanges: number;
  maxBufferBytes: number;
  statusIntervalMs: number;
  heartbeatMs: number | undefined;
}

/** A transaction boundary in the buffer: everything before it completes the transaction ending at `end`. */
interface Boundary {
  end: bigint;
}

type Item = SourceChange | Boundary;

/**
 * One replication connection, from START_REPLICATION until it drops or is stopped.
 *
 * Messages are buffered in order and handed to the pipeline in batches; the socket is
 * paused while the buffer is full, so a 100k-row transaction is never held whole. A batch
 * carries a checkpoint only up to the last *complete* transaction in it. The server is told
 * an LSN only through `ack`, i.e. after the ledger commit (pg-logical-replication's own
 * auto-ack and timer are off: both acknowledge LSNs that were never processed).
 */
export class ReplicationSession {
  private readonly service: LogicalReplicationService;
  private buffer: Item[] = [];
  private bufferedChanges = 0;
  private bufferedBytes = 0;
  private inTxn = false;
  private skipTxn = false;
  private flushing: Promise<void> | null = null;
  private failure: unknown = null;
  private paused = false;
  private lastIdleCheckpointAt = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private heartbeatClient: pg.Client | null = null;
  private warnedTruncate = false;

  constructor(
    private readonly options: SessionOptions,
    private readonly state: StreamState,
    private readonly handle: (batch: SourceBatch) => Promise<void>,
    private readonly logger: Logger,
  ) {
    this.service = new LogicalReplicationService(
      { connectionString: options.url, application_name: 'order-relay' },
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    // The library's stop() removes every listener of its pg client, ours for 'error' too, while
    // the connection may still deliver a FATAL (a server restarting, a session ended): unheard,
    // that 'error' event would end the process. Each client it makes keeps one listener.
    const svc = this.service as unknown as { client(): Promise<unknown>; _client?: { on(e: 'error', f: () => void): unknown; removeAllListeners(e?: string): unknown } | null };
    const makeClient = svc.client.bind(svc);
    svc.client = async () => {
      const made = await makeClient();
      const c = svc._client;
      if (c) {
        const removeAll = c.removeAllListeners.bind(c);
        c.on('error', () => {});
        c.removeAllListeners = (e?: string) => {
          const out = removeAll(e);
          if (e === undefined || e === 'error') c.on('error', () => {});
          return out;
        };
      }
      return made;
    };
  }

  /** Streams until the connection ends or `signal` aborts. Rejects with the cause of a drop. */
  async run(signal: AbortSignal): Promise<void> {
    const svc = this.service;
    const ended = new Promise<void>((resolve, reject) => {
      svc.on('error', (err: Error) => reject(err));
      svc.on('data', (_lsn: string, msg: StreamMessage) => {
        try {
          this.onMessage(msg);
        } catch (err) {
          reject(err);
        }
      });
      svc.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => this.onKeepalive(parseLsn(lsn), shouldRespond));
      svc.on('start', () => {
        this.state.connected = true;
        this.sendStatus(this.state.committed);
        this.startTimers();
      });
      this.onFailure = reject;
      const plugin = new PgoutputStream({ protoVersion: 1, publicationNames: [this.options.publication] });
      svc.subscribe(plugin, this.options.slot, formatLsn(this.state.committed)).then(() => resolve(), reject);
    });
    // pg-logical-replication's stop() and destroy() remove every listener of their pg client,
    // ours for 'error' too; a connection that dies after that (the server ended it while this
    // process was frozen, say) would be an uncaught 'error' event. Keep one listener on it.
    const clientOf = () => (svc as unknown as { _client?: { on(e: 'error', f: () => void): void } | null })._client;
    const stopKeepingListener = (stop: () => Promise<unknown>) => {
      const client = clientOf();
      return stop().finally(() => client?.on('error', () => {}));
    };
    const onAbort = () => void stopKeepingListener(() => svc.stop());
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await ended;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.state.connected = false;
      for (const t of this.timers) clearInterval(t);
      await this.flushing?.catch(() => {});
      await stopKeepingListener(() => svc.destroy()).catch(() => {});
      // destroy() removed the service's own listeners; its client may still forward an error.
      svc.on('error', () => {});
      await this.heartbeatClient?.end().catch(() => {});
    }
  }

  /** Reports `lsn` as flushed; called once the ledger holds everything up to it. */
  ack(lsn: bigint): void {
    if (lsn > this.state.committed) this.state.committed = lsn;
    this.sendStatus(lsn);
  }

  private onFailure: (err: unknown) => void = () => {};

  private sendStatus(lsn: bigint): void {
    if (!this.state.connected || lsn <= 0n) return;
    const target = lsn < this.state.committed ? lsn : this.state.committed;
    if (target > this.state.acked) this.state.acked = target;
    // Not `this.service.acknowledge()`: it reports the LSN plus one, which lets the server
    // skip a transaction whose commit record starts right at the checkpoint (see
    // standby-status.ts). The status goes out exactly as the ledger's checkpoint.
    const svc = this.service as unknown as { _stop?: boolean; _connection?: { sendCopyFromChunk(chunk: Buffer): void } | null };
    if (svc._stop || !svc._connection) return;
    try {
      svc._connection.sendCopyFromChunk(standbyStatusUpdate(this.state.acked));
    } catch {
      // The connection is going away; the next session reports from the ledger again.
    }
  }

  private startTimers(): void {
    this.timers.push(setInterval(() => this.sendStatus(this.state.acked), this.options.statusIntervalMs).unref());
    const every = this.options.heartbeatMs;
    if (every) this.timers.push(setInterval(() => void this.heartbeat(), every).unref());
  }

  /** While idle, a non-transactional logical message moves the WAL so the slot can follow. */
  private async heartbeat(): Promise<void> {
    if (!this.idle()) return;
    try {
      if (!this.heartbeatClient) {
        this.heartbeatClient = new pg.Client({ connectionString: this.options.url, application_name: 'order-relay-heartbeat' });
        this.heartbeatClient.on('error', () => (this.heartbeatClient = null));
        await this.heartbeatClient.connect();
      }
      await this.heartbeatClient.query(`SELECT pg_logical_emit_message(false, 'order-relay', 'heartbeat')`);
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'heartbeat message failed');
      await this.heartbeatClient?.end().catch(() => {});
      this.heartbeatClient = null;
    }
  }

  private idle(): boolean {
    return this.buffer.length === 0 && this.flushing === null && !this.inTxn;
  }

  private onMessage(msg: StreamMessage): void {
    if (!('tag' in msg)) {
      if (!this.skipTxn) this.push(msg);
      return;
    }
    switch (msg.tag) {
      case 'begin':
        this.inTxn = true;
        this.skipTxn = msg.commitLsn !== null && msg.commitLsn < this.state.committed;
        return;
      case 'commit':
        this.inTxn = false;
        // A skipped transaction is at or below the ledger checkpoint: already stored.
        if (!this.skipTxn && msg.commitEndLsn !== null) this.pushBoundary(msg.commitEndLsn);
        return;
      case 'truncate':
        if (!this.warnedTruncate) this.logger.warn({ tables: msg.relations.map((r) => r.name) }, 'TRUNCATE is not a business change; ignored');
        this.warnedTruncate = true;
        return;
      default:
        return; // relation, type, origin, message: nothing to do (the stream caches relations)
    }
  }

  private push(change: SourceChange): void {
    this.buffer.push(change);
    this.bufferedChanges++;
    // A cheap size estimate: counting characters of every value would cost more than decoding.
    this.bufferedBytes += 64 + columnCount(change.after ?? change.before) * 48;
    if (this.bufferedChanges >= this.options.maxBatchChanges) this.kick();
    if (this.bufferedChanges >= 2 * this.options.maxBatchChanges || this.bufferedBytes >= this.options.maxBufferBytes) this.pause();
  }

  private pushBoundary(end: bigint): void {
    this.buffer.push({ end });
    this.kick();
  }

  private onKeepalive(walEnd: bigint, shouldRespond: boolean): void {
    // Nothing buffered, nothing in flight, no open transaction: everything the server sent
    // below walEnd was unpublished. Record walEnd in the ledger, then acknowledge it, so an
    // idle slot does not pin WAL and the slot never runs ahead of the ledger.
    const now = Date.now();
    if (this.idle() && walEnd > this.state.committed && (shouldRespond || now - this.lastIdleCheckpointAt >= 1000)) {
      this.lastIdleCheckpointAt = now;
      this.pushBoundary(walEnd);
    } else if (shouldRespond) {
      this.sendStatus(this.state.acked);
    }
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket()?.pause();
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket()?.resume();
  }

  private socket(): { pause(): void; resume(): void } | undefined {
    // pg's Connection keeps its socket as `stream`; the library offers no pause of its own
    // outside its flow-control mode, whose queue would hide data from keepalive handling.
    return (this.service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } })._connection?.stream;
  }

  private kick(): void {
    if (this.flushing || this.failure) return;
    this.flushing = (async () => {
      await new Promise<void>((r) => setImmediate(r)); // let the rest of this socket read join the batch
      // Up to two batches in the pipeline: the next one is classified while the previous one
      // is written (the pipeline keeps their writes, and so the acknowledgements, in order).
      // A second batch starts only when a full one is waiting; otherwise the stream is better
      // served by letting the buffer fill while the write runs.
      const inFlight: Array<Promise<void>> = [];
      while (this.buffer.length > 0 || inFlight.length > 0) {
        const full = this.bufferedChanges >= this.options.maxBatchChanges;
        if (this.buffer.length > 0 && (inFlight.length === 0 || (inFlight.length < 2 && full))) {
          const batch = this.take();
          if (this.bufferedChanges < this.options.maxBatchChanges && this.bufferedBytes < this.options.maxBufferBytes) this.resume();
          const handled = this.handle(batch);
          handled.catch(() => {}); // observed below, in order
          inFlight.push(handled);
          continue;
        }
        try {
          await inFlight.shift();
        } catch (err) {
          // Settle the other batch before reporting: a new session must not start while a
          // write of this one is still under way.
          await Promise.allSettled(inFlight);
          throw err;
        }
      }
    })()
      .catch((err) => {
        this.failure = err;
        this.onFailure(err);
      })
      .finally(() => {
        this.flushing = null;
      });
  }

  /** Up to maxBatchChanges changes, with a checkpoint at the last boundary among them. */
  private take(): SourceBatch {
    const changes: SourceChange[] = [];
    let end: bigint | null = null;
    let i = 0;
    for (; i < this.buffer.length; i++) {
      const item = this.buffer[i]!;
      if ('end' in item) end = item.end;
      else if (changes.length >= this.options.maxBatchChanges) break;
      else changes.push(item);
    }
    this.buffer.splice(0, i);
    this.bufferedChanges -= changes.length;
    this.bufferedBytes = this.bufferedChanges === 0 ? 0 : Math.max(0, this.bufferedBytes - changes.length * 200);
    const checkpoints = end !== null && end > this.state.committed ? [{ stream: 'slot', position: formatLsn(end) }] : [];
    return { changes, bad: [], checkpoints };
  }
}

/** Object.keys(row).length without the array of names: a row is a plain object of its columns. */
function columnCount(row: object | null | undefined): number {
  let n = 0;
  for (const key in row ?? {}) if (Object.hasOwn(row!, key)) n++;
  return n;
}
