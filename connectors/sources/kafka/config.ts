import { z } from 'zod';
import { VISIT_CODES } from '../../../src/core/events.js';
import { secretRef } from '../../../src/config/secrets.js';
import { duration, tableName } from '../../../src/config/units.js';

/** Kafka's own rule for topic names. */
const topicName = () =>
  z.string().regex(/^[a-zA-Z0-9._-]{1,249}$/, 'expected a Kafka topic name (letters, digits, ".", "_", "-")');

/** A field of the record's JSON value; a dotted path ("visitor.phone") reaches into nested objects. */
const field = () => z.string().min(1, 'expected a field name').max(200);

/**
 * Debezium change events of an order (or refunds) table, with or without the
 * `{schema, payload}` wrapper (JsonConverter `schemas.enable` true or false).
 */
const debeziumTopic = z.strictObject({
  topic: topicName(),
  format: z.literal('debezium'),
  /** The table the topic carries, as the classifier knows it ("public.orders"). */
  table: tableName(),
});

/** Each record's value is the whole current row of an order (or refunds) table, as a JSON object. */
const jsonTopic = z.strictObject({
  topic: topicName(),
  format: z.literal('json'),
  table: tableName(),
  /**
   * What a row stands for. `upsert` (default): the row as it is now, with no old row, which
   * the classifier treats like an update under REPLICA IDENTITY DEFAULT. `insert`: new rows.
   */
  op: z.enum(['upsert', 'insert']).default('upsert'),
});

/** Where each part of a page visit is in the record's JSON value. */
const visitFields = z.strictObject({
  /** Identity of the visit. Records without one get `<topic>/<partition>@<offset>`. */
  visitId: field().default('visit_id'),
  page: field().default('page'),
  /** The visitor: a phone number, or else an Alipay logon id. One of them is required. */
  visitorPhone: field().default('visitor_phone'),
  visitorLogonId: field().default('visitor_logon_id'),
  /** The sharer (optional): a phone number, or else an Alipay logon id. */
  sharerPhone: field().default('sharer_phone'),
  sharerLogonId: field().default('sharer_logon_id'),
  /** Optional AntChain project id of the visit (default: the sink's projectId). */
  projectId: field().default('project_id'),
  /** Optional visit time: ISO-8601 text or epoch milliseconds (default: the record's timestamp). */
  visitedAt: field().default('visited_at'),
});

/** Page-visit records: VISIT events for the AntChain sink (confirm type DIRECT). */
const visitTopic = z.strictObject({
  topic: topicName(),
  format: z.literal('visit'),
  fields: visitFields.prefault({}),
  /**
   * The page values your front end sends, mapped to AntChain's pages, e.g.
   * `{ detail: CONTRACT_DETAIL_PAGE, share: SHARE_LANDING_PAGE }`. The AntChain names
   * themselves are always accepted.
   */
  pages: z.record(z.string().min(1), z.enum(VISIT_CODES)).default({}),
});

export const kafkaTopicSchema = z.discriminatedUnion('format', [debeziumTopic, jsonTopic, visitTopic]);

const ssl = z.union([
  z.boolean(),
  z.strictObject({
    /** PEM CA bundle for a private CA; default: Node's trusted roots. */
    ca: secretRef().optional(),
    /** Client certificate and key (mutual TLS). */
    cert: secretRef().optional(),
    key: secretRef().optional(),
    /** Certificate host name to expect when it differs from the broker address. */
    servername: z.string().min(1).optional(),
    rejectUnauthorized: z.boolean().default(true),
  }),
]);

const sasl = z.strictObject({
  mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
  username: z.string().min(1),
  password: secretRef(),
});

export const kafkaSourceSchema = z
  .strictObject({
    kind: z.literal('kafka'),
    brokers: z.array(z.string().regex(/^[\w.:[\]-]+:\d+$/, 'expected host:port')).min(1),
    clientId: z.string().min(1).default('order-relay'),
    /** Consumer group: instances with the same group split the partitions between them. */
    groupId: z.string().min(1).default('order-relay'),
    /** TLS: `true` for the system's trusted roots, or CA/client certificate settings. */
    ssl: ssl.optional(),
    sasl: sasl.optional(),
    /** Where a partition starts when neither the ledger nor the group has a position for it. */
    startFrom: z.enum(['earliest', 'latest']).default('earliest'),
    /** A member that sends no heartbeat for this long is removed and its partitions move. */
    sessionTimeout: duration().default(30_000),
    heartbeatInterval: duration().default(3_000),
    /** How long a rebalance waits for every member to rejoin. */
    rebalanceTimeout: duration().default(60_000),
    /** How long a fetch waits for data; also how quickly an idle consumer notices a rebalance. */
    maxWait: duration().default(500),
    connectionTimeout: duration().default(3_000),
    /** Records per ledger transaction; a larger fetch is committed in slices of this size. */
    maxBatchRecords: z.number().int().min(1).max(100_000).default(2_000),
    /**
     * How often the consumer lag per partition (order_relay_kafka_consumer_lag) is refreshed
     * from the brokers' end offsets and the ledger's positions, in the background.
     */
    lagInterval: duration().default(15_000),
    topics: z.array(kafkaTopicSchema).min(1),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.topics.forEach((t, i) => {
      if (seen.has(t.topic)) ctx.addIssue({ code: 'custom', path: ['topics', i, 'topic'], message: `topic "${t.topic}" is listed twice` });
      seen.add(t.topic);
    });
    if (config.heartbeatInterval >= config.sessionTimeout) {
      ctx.addIssue({ code: 'custom', path: ['heartbeatInterval'], message: 'heartbeatInterval must be shorter than sessionTimeout' });
    }
  });

export type KafkaSourceConfig = z.output<typeof kafkaSourceSchema>;
export type KafkaSourceConfigInput = z.input<typeof kafkaSourceSchema>;
export type KafkaTopicConfig = z.output<typeof kafkaTopicSchema>;
export type VisitTopicConfig = Extract<KafkaTopicConfig, { format: 'visit' }>;

/**
 * Order topics whose table is neither the orders nor the refunds table: every record of
 * such a topic would be ignored. Used by the top-level config check.
 */
export function unknownKafkaTables(config: KafkaSourceConfig | undefined, tables: readonly string[]): Array<{ index: number; table: string }> {
  if (!config) return [];
  const known = new Set(tables.map(qualified));
  const out: Array<{ index: number; table: string }> = [];
  config.topics.forEach((t, index) => {
    if (t.format !== 'visit' && !known.has(qualified(t.table))) out.push({ index, table: t.table });
  });
  return out;
}

function qualified(table: string): string {
  return table.includes('.') ? table : `public.${table}`;
}
