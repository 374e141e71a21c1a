import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { createClassifier, qualify, text, type Classifier } from '../classify/classifier.js';
import type { Config } from '../config/schema.js';
import type { BusinessEvent, Row } from '../core/events.js';
import type { SourceChange } from '../core/source.js';
import { silentLogger } from '../log.js';
import { createSink } from '../registry.js';
import { decodeRecord, positionOf } from '../../connectors/sources/kafka/decode.js';
import { kafkaTopicSchema, type VisitTopicConfig } from '../../connectors/sources/kafka/config.js';

const rowSchema = z.record(z.string(), z.any()).nullable().optional();

/** The change file: one row change as a user would write it by hand. */
const changeFileSchema = z.strictObject({
  table: z.string().min(1),
  op: z.enum(['insert', 'update', 'delete']),
  /** The order row before this change: what the ledger knows of the order (orders updates). */
  old: rowSchema,
  new: rowSchema,
  /** For a refund row: the order row it belongs to (what the ledger would know). */
  order: rowSchema,
  committedAt: z.string().optional(),
});

type ChangeFile = z.infer<typeof changeFileSchema>;

export interface PreviewArgs {
  /** A row change file (see changeFileSchema). */
  change?: string;
  /** A page-visit record: the JSON value of one record of a Kafka visit topic. */
  visit?: string;
  /** Which configured visit topic's field mapping reads the record (when there are several). */
  topic?: string;
  /** `<partition>@<offset>` of the record: names a visit without a visit id, as the stream does. */
  position?: string;
  at?: string;
  nonce?: string;
}

const HEX32 = /^[0-9a-f]{32}$/;

/**
 * Yields one JSON line per event and per (event, sink): what would be sent, without sending.
 * A change that yields no event prints one `{"noEvents": why}` line instead of nothing.
 */
export function preview(config: Config, args: PreviewArgs, env: NodeJS.ProcessEnv = process.env): string[] {
  if ((args.change === undefined) === (args.visit === undefined)) throw new Error('give either --change <file> or --visit <file>');
  const at = args.at ? new Date(args.at) : new Date();
  if (Number.isNaN(at.getTime())) throw new Error(`--at: not an ISO-8601 time: ${args.at}`);
  if (args.nonce !== undefined && !HEX32.test(args.nonce)) throw new Error('--nonce: expected 32 lowercase hex characters');

  const classifier = createClassifier(config);
  const input = args.visit !== undefined ? visitChange(config, args, at) : rowChange(config, classifier, args.change!, at);
  const result = classifier.classify(input.change, () => input.known);
  if (result.kind === 'bad') throw new Error(`the change would be parked: ${result.reason}`);
  const events = result.kind === 'events' ? result.events : [];
  if (events.length === 0) return [JSON.stringify({ noEvents: whyNoEvents(config, classifier, input.change, input.known) })];

  const logger = silentLogger();
  const sinks = Object.entries(config.sinks).map(([name, sc]) => createSink(name, sc, { logger, env }));
  const nonces = requestIds(args.nonce);
  const lines: string[] = [];
  try {
    for (const event of events) {
      lines.push(JSON.stringify({ eventId: event.id, eventCode: event.code, event }));
      for (const sink of sinks) lines.push(sinkLine(sink, event, at, nonces));
    }
  } finally {
    void Promise.all(sinks.map((s) => s.close()));
  }
  return lines;
}

type PreviewSink = ReturnType<typeof createSink>;

function sinkLine(sink: PreviewSink, event: BusinessEvent, at: Date, nonces: RequestIds): string {
  // A sink that does not take the event says so itself (not_applicable with its reason).
  const p = sink.preview(event, { at, nonce: nonces.peek() });
  const base = { sink: sink.name, eventId: event.id, eventCode: event.code };
  if (p.status === 'request') {
    nonces.take();
    return JSON.stringify({ ...base, request: p.request });
  }
  if (p.status === 'not_applicable') return JSON.stringify({ ...base, notApplicable: p.reason });
  return JSON.stringify({ ...base, rejected: { code: p.code, message: p.message } });
}

interface RequestIds {
  /** The id the next printed request gets. */
  peek(): string;
  /** Marks it used by a printed request. */
  take(): void;
}

/**
 * One per-request id (AntChain `req_msg_id`, Alipay `alipay-request-id`) per printed request,
 * so each printed request can be sent as it is. `--nonce` pins the first; the n-th after it
 * is derived from the pin and n, so the output stays reproducible. Idempotency keys
 * (request_id, out_biz_no) are the event's and do not depend on these.
 */
function requestIds(pinned: string | undefined): RequestIds {
  let used = 0;
  let next = pinned ?? randomHex();
  return {
    peek: () => next,
    take: () => {
      used += 1;
      next = pinned === undefined ? randomHex() : createHash('sha256').update(`${pinned}/${used}`).digest('hex').slice(0, 32);
    },
  };
}

interface PreviewInput {
  change: SourceChange;
  /** What the ledger would know of the order when the stream classifies this change. */
  known: Row | undefined;
}

function readJson(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (err) {
    throw new Error(`${what} ${path}: ${(err as Error).message}`);
  }
}

function rowChange(config: Config, classifier: Classifier, path: string, at: Date): PreviewInput {
  const raw = readJson(path, 'change file');
  if (raw && typeof raw === 'object' && !Array.isArray(raw) && !('table' in raw) && !('op' in raw)) {
    throw new Error(`change file ${path}: has no "table" or "op"; for a page-visit record use --visit ${path}`);
  }
  let parsed: ChangeFile;
  try {
    parsed = changeFileSchema.parse(raw);
  } catch (err) {
    throw new Error(`change file ${path}: ${err instanceof z.ZodError ? z.prettifyError(err).replace(/\n/g, '; ') : (err as Error).message}`);
  }
  const change: SourceChange = {
    table: parsed.table,
    op: parsed.op,
    after: (parsed.new ?? null) as Row | null,
    before: (parsed.old ?? null) as Row | null,
    position: 'preview',
    committedAt: parsed.committedAt ?? at.toISOString(),
  };
  return { change, known: knownOrder(config, classifier, parsed, change, path) };
}

/**
 * `old` and `order` stand where the stream uses them, or are refused with the reason; never
 * silently dropped. The stream decides a status transition from what the ledger last stored
 * of the order (the row before this change; under REPLICA IDENTITY DEFAULT the WAL has no
 * old row), and looks that up for updates of the orders table and for refunds only.
 */
function knownOrder(config: Config, classifier: Classifier, parsed: ChangeFile, change: SourceChange, path: string): Row | undefined {
  const fail = (message: string) => new Error(`change file ${path}: ${message}`);
  const table = qualify(parsed.table);
  const old = (parsed.old ?? undefined) as Row | undefined;
  const order = (parsed.order ?? undefined) as Row | undefined;
  // A delete yields nothing whatever is known (its "old" is the deleted row); the reason says so.
  if (parsed.op === 'delete') return undefined;
  if (table === classifier.refundsTable) {
    if (old) throw fail('"old" is not used for a refund row: the stream reads a refund from its new row alone; put the order it belongs to in "order"');
    return order;
  }
  if (table !== classifier.ordersTable) return undefined; // ignored whatever it holds; the reason says so
  if (parsed.op === 'insert' && (old || order)) {
    throw fail(`${old ? '"old"' : '"order"'} is not used for an insert: the stream classifies an inserted order from its new row alone; make the change an update to preview a status transition`);
  }
  if (old && order) throw fail('"old" and "order" both say what is known of the order before this change: give one');
  const known = old ?? order;
  const orderNo = classifier.orderNoOf(change);
  const knownNo = known ? text(known[config.orders.orderNo]) : undefined;
  if (known && knownNo !== undefined && orderNo !== undefined && knownNo !== orderNo) {
    throw fail(`${old ? '"old"' : '"order"'} is order ${knownNo}, the change is of order ${orderNo}: the stream would look up order ${orderNo}`);
  }
  return known;
}

/** A page-visit record decoded exactly as the Kafka source decodes one of its visit topic. */
function visitChange(config: Config, args: PreviewArgs, at: Date): PreviewInput {
  const path = args.visit!;
  const topic = visitTopic(config, args.topic);
  readJson(path, 'visit file'); // a file that is not JSON gets its own clear error
  const { partition, offset } = parsePosition(args.position);
  const record = { topic: topic.topic, partition, offset, timestamp: String(at.getTime()), value: readFileSync(path) };
  const decoded = decodeRecord(topic, record);
  if (decoded.kind === 'bad') throw new Error(`the visit would be parked: ${decoded.bad.reason}`);
  if (decoded.kind === 'skip') throw new Error(`the visit would be skipped: ${decoded.why}`);
  if (args.position === undefined && decoded.change.visit?.visitId === positionOf(record)) {
    // Its event id would come from a made-up position, not the one the stream would see.
    throw new Error(
      `visit file ${path}: no "${topic.fields.visitId}": the stream names such a visit by its record's position (${topic.topic}/<partition>@<offset>), ` +
        'which a file does not have; add the field or pass --position <partition>@<offset>',
    );
  }
  return { change: decoded.change, known: undefined };
}

/** The configured visit topic (by --topic when there are several), or the default field names. */
function visitTopic(config: Config, name: string | undefined): VisitTopicConfig {
  const topics = (config.kafka?.topics ?? []).filter((t): t is VisitTopicConfig => t.format === 'visit');
  if (name !== undefined) {
    const found = topics.find((t) => t.topic === name);
    if (!found) throw new Error(`--topic ${name}: not a visit topic of kafka.topics (${topics.map((t) => t.topic).join(', ') || 'none configured'})`);
    return found;
  }
  if (topics.length > 1) throw new Error(`kafka.topics has ${topics.length} visit topics (${topics.map((t) => t.topic).join(', ')}): say which with --topic <name>`);
  return topics[0] ?? (kafkaTopicSchema.parse({ topic: 'visits', format: 'visit' }) as VisitTopicConfig);
}

function parsePosition(position: string | undefined): { partition: number; offset: string } {
  if (position === undefined) return { partition: 0, offset: '0' };
  const m = /^(\d+)@(\d+)$/.exec(position);
  if (!m) throw new Error(`--position: expected <partition>@<offset>, e.g. 2@1041: ${position}`);
  return { partition: Number(m[1]), offset: m[2]! };
}

/** Why a change the classifier accepted yields no event, in the config's own terms. */
function whyNoEvents(config: Config, classifier: Classifier, change: SourceChange, known: Row | undefined): string {
  const table = qualify(change.table);
  if (table !== classifier.ordersTable && table !== classifier.refundsTable) {
    const refunds = classifier.refundsTable ? ` nor refunds.table (${classifier.refundsTable})` : '';
    return `table ${table} is neither orders.table (${classifier.ordersTable})${refunds}: the stream ignores its changes`;
  }
  if (change.op === 'delete' || !change.after) return `a ${change.op} of ${table} yields no events: only inserted and updated rows are classified`;
  if (table === classifier.refundsTable && config.refunds?.status) {
    const cfg = config.refunds;
    const status = text(change.after[cfg.status!]);
    return `refund status ${JSON.stringify(status ?? null)} (column "${cfg.status}") is not one of refunds.successStatuses (${cfg.successStatuses.join(', ')})`;
  }
  if (table === classifier.ordersTable) {
    const cfg = config.orders;
    const status = text(change.after[cfg.status]) ?? '';
    if (!Object.hasOwn(cfg.statuses, status)) {
      return `status ${JSON.stringify(status)} (column "${cfg.status}") is in no orders.statuses mapping (mapped: ${Object.keys(cfg.statuses).join(', ')})`;
    }
    if (known && text(known[cfg.status]) === status) {
      return `status ${JSON.stringify(status)} is unchanged from the order row before this change: its events (${cfg.statuses[status]!.join(', ')}) came when the order entered it`;
    }
  }
  return 'the classifier yields no events for this change';
}

function randomHex(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}
