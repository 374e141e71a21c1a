import type { Row, VisitRecord } from './events.js';

/** One row change as a source read it. */
export interface SourceChange {
  /** Schema-qualified table (Postgres) or the logical table a Kafka topic carries, e.g. "public.orders". */
  table: string;
  op: 'insert' | 'update' | 'delete';
  /** The new row (insert, update). Columns whose value the source could not see (unchanged TOAST) are absent. */
  after: Row | null;
  /** The old row when the source has it (REPLICA IDENTITY FULL, Debezium `before`). */
  before: Row | null;
  /** Columns of `after` whose value is unknown (unchanged TOAST under REPLICA IDENTITY DEFAULT). */
  unknownColumns?: string[];
  /** Human-readable position for parking and logs, e.g. "0/16B3748" or "orders/2@1041". */
  position: string;
  /** Commit time of the change at the source (ISO-8601). */
  committedAt: string;
  /**
   * Where to park this change if it cannot become events, when that is not (table, position):
   * a Kafka record is parked under its topic/partition and offset, like undecodable records.
   */
  parkAs?: { stream: string; position: string };
  /** A page visit (Kafka visit topics); `table` is then the topic name and rows are null. */
  visit?: VisitRecord;
}

/** A position to store in the ledger: one per stream (the slot; one Kafka partition). */
export interface Checkpoint {
  stream: string;
  position: string;
  /**
   * The stream's position this writer read from the ledger and has written since (null: none
   * stored). When given, the append is refused whole (FencedError) if the ledger holds
   * another: a writer that lost the stream to another (a Kafka consumer after a rebalance it
   * did not see) adds nothing.
   */
  expected?: string | null;
}

/** Input the source could not turn into a change; parked in the ledger with its reason. */
export interface BadInput {
  stream: string;
  position: string;
  reason: string;
  raw: string;
}

/**
 * A unit of work handed to the pipeline. Everything in it commits to the ledger in one
 * transaction with `checkpoints`; only after that commit does the pipeline call
 * `Source.acknowledge(checkpoints)`. An empty `checkpoints` list means the batch is part
 * of a larger source transaction (a 100k-row transaction is fed in slices): its events
 * are stored, but nothing may be acknowledged until the slice that ends the transaction.
 */
export interface SourceBatch {
  changes: SourceChange[];
  bad: BadInput[];
  checkpoints: Checkpoint[];
  /**
   * The ownership the batch was read under (see `Ledger.claimOwner`): the ledger refuses the
   * batch once another instance has claimed the name since, so a zombie's late batch lands nowhere.
   */
  fence?: Fence;
}

/** An owner's claim on a name in the ledger: the epoch it got when it claimed it. */
export interface Fence {
  name: string;
  epoch: number;
}

/** A write refused because another instance has claimed the same name since (`Fence`). */
export class FencedError extends Error {
  constructor(readonly fence: Fence, readonly current: number | null, message?: string) {
    super(message ?? `${fence.name} is owned by another instance now (epoch ${current ?? 'none'}, ours ${fence.epoch}): this instance's write was refused`);
    this.name = 'FencedError';
  }
}

/**
 * An upstream of row changes.
 *
 * - `run` streams until `signal` aborts, awaiting `handle` for each batch before handing
 *   over the next (so the source never runs ahead of the ledger). It reconnects by itself
 *   after transient failures and rejects only on a failure it cannot recover from.
 * - It resumes strictly after the stored checkpoints it is given (`resumeFrom`); changes at
 *   or below them that the upstream sends again are dropped.
 * - `acknowledge` is called only with checkpoints that are committed in the ledger.
 */
export interface Source {
  readonly id: string;
  run(handle: (batch: SourceBatch) => Promise<void>, resumeFrom: Checkpoint[], signal: AbortSignal): Promise<void>;
  acknowledge(checkpoints: Checkpoint[]): void;
  /** Connection state for /readyz and status. */
  health(): SourceHealth;
}

export interface SourceHealth {
  connected: boolean;
  lastError?: string;
  reconnects: number;
  /**
   * Where several instances share a source that only one may read (a Postgres slot): owner
   * (this one reads it) or standby (another does; this one takes over when it goes).
   */
  role?: 'owner' | 'standby';
}
