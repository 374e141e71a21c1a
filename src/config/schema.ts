import { z } from 'zod';
import { antchainSinkSchema } from '../../connectors/sinks/antchain/index.js';
import { zhimaSinkSchema } from '../../connectors/sinks/zhima/index.js';
import { postgresSourceSchema } from '../../connectors/sources/postgres/config.js';
import { kafkaSourceSchema, unknownKafkaTables } from '../../connectors/sources/kafka/config.js';
import { refundRuleProblems } from '../classify/classifier.js';
import { TRADE_CODES } from '../core/events.js';
import { secretRef } from './secrets.js';
import { duration, identifier, tableName } from './units.js';

const column = () => z.string().min(1).max(63);

/** An order table: which column is the order number, which the status, and what each status means. */
export const ordersTableSchema = z.strictObject({
  table: tableName(),
  orderNo: column(),
  status: column(),
  /** Column with the business time of the change; default: the source commit time. */
  occurredAt: column().optional(),
  /**
   * Status value → the events a row in that status stands for, in delivery order. Event
   * identity is (project, order, code), so listing TRADE_SUCCESS under later statuses makes
   * sure an order first seen as USED or REFUNDED still gets its TRADE_SUCCESS, once. With a
   * refunds table, no status may list REFUND_SUCCESS (see `refundRuleProblems`).
   */
  statuses: z.record(z.string().min(1), z.array(z.enum(TRADE_CODES)).min(1)),
});

/**
 * A refunds table: one REFUND_SUCCESS per refund row (partial refunds included). With it, the
 * refund rows are the only source of REFUND_SUCCESS.
 */
export const refundsTableSchema = z.strictObject({
  table: tableName(),
  orderNo: column(),
  refundId: column(),
  /** Optional status column; with it, only rows in `successStatuses` count. */
  status: column().optional(),
  successStatuses: z.array(z.string().min(1)).min(1).default(['SUCCESS']),
  occurredAt: column().optional(),
});

export const sinkSchema = z.discriminatedUnion('kind', [antchainSinkSchema, zhimaSinkSchema]);

export const configSchema = z.strictObject({
  /** Namespace of event identity; changing it changes every event id. */
  project: z.string().min(1).max(64),
  /** Accept secrets written into the file itself (refused otherwise; see src/config/secrets.ts). Warns. */
  allowInlineSecrets: z.boolean().default(false),
  database: z.strictObject({ url: z.string().min(1) }),
  ledger: z
    .strictObject({
      schema: identifier().default('order_relay'),
      /** A separate database for the ledger; default: the source database. */
      url: z.string().min(1).optional(),
      poolSize: z.number().int().min(2).max(100).default(10),
      /** Shards of the sinks' cursors (hash of the order key mod this); fixed when the ledger is made. */
      shards: z.number().int().min(1).max(4096).default(16),
      /** Settled history (event payloads, outcomes, finished delivery rows, order rows) is dropped after this. */
      retention: duration().default(30 * 86_400_000),
      /** Event ids (what drops a repeat of an old event) are kept this long; at least `retention`. */
      idRetention: duration().default(400 * 86_400_000),
    })
    .refine((l) => l.idRetention >= l.retention, { message: 'ledger.idRetention must be at least ledger.retention: an event id must outlive its payload, or a repeat of the event would be sent again', path: ['idRetention'] })
    .prefault({}),
  /** Postgres logical replication of the order tables. */
  source: postgresSourceSchema.optional(),
  /** Kafka topics: Debezium change events, plain JSON order rows, page visits. */
  kafka: kafkaSourceSchema.optional(),
  orders: ordersTableSchema,
  refunds: refundsTableSchema.optional(),
  sinks: z.record(identifier(), sinkSchema).refine((s) => Object.keys(s).length > 0, 'expected at least one sink'),
  dispatcher: z
    .strictObject({
      /** Deliveries claimed per round trip. */
      claimBatch: z.number().int().min(1).max(1000).default(64),
      /** How often to look for due retries when nothing wakes the dispatcher. */
      pollInterval: duration().default(500),
      /** A claim's lease is the sink timeout plus this; a crashed instance's claims return after it. */
      leaseMargin: duration().default(10_000),
      /** Attempts kept per delivery in the history table. */
      attemptHistory: z.number().int().min(1).max(1000).default(20),
      /** Grace period to finish in-flight attempts on shutdown. */
      drainTimeout: duration().default(30_000),
      /** Events a sink holds past its cursor (in flight, waiting behind their order, settled but not yet written): bounds memory and what a crash re-sends. */
      window: z.number().int().min(16).max(100_000).default(4096),
      /** Settled events are written (outcomes and cursors, one statement) at most this long after they settle. */
      flushInterval: duration().default(50),
      /** Retries of an event kept in memory (each due within 2 s) before it becomes a retrying delivery row. */
      quickRetries: z.number().int().min(0).max(10).default(2),
      /**
       * An instance that stops answering (a frozen process, a long pause) loses the sinks it
       * delivers after this, and a standby takes them (PostgreSQL 14+: idle_session_timeout on
       * the lock's session, pinged while the process runs).
       */
      lease: duration().default(10_000),
    })
    .prefault({}),
  admin: z
    .strictObject({
      listen: z.union([z.literal('off'), z.string().regex(/^[\w.:[\]-]+:\d+$/, 'expected host:port')]).default('127.0.0.1:9464'),
      /** Enables the console's actions (replay, skip, refresh): the bearer token, or the console's login. Read-only without it. */
      token: secretRef().optional(),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).prefault({}),
})
  .refine((c) => c.source !== undefined || c.kafka !== undefined, { message: 'expected a source: "source" (postgres) and/or "kafka"', path: ['source'] })
  .superRefine((c, ctx) => {
    for (const { status, message } of refundRuleProblems(c.orders, c.refunds)) {
      ctx.addIssue({ code: 'custom', path: ['orders', 'statuses', status], message });
    }
    const tables = [c.orders.table, ...(c.refunds ? [c.refunds.table] : [])];
    for (const { index, table } of unknownKafkaTables(c.kafka, tables)) {
      ctx.addIssue({ code: 'custom', path: ['kafka', 'topics', index, 'table'], message: `"${table}" is neither orders.table nor refunds.table: every record would be ignored` });
    }
  });

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type SinkConfig = z.output<typeof sinkSchema>;
export type OrdersTableConfig = z.output<typeof ordersTableSchema>;
export type RefundsTableConfig = z.output<typeof refundsTableSchema>;
