import type { Producer } from 'kafkajs';
import type pg from 'pg';
import type { ConfigInput } from '../../src/config/schema.js';
import type { BusinessEvent } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import type { DeliveryOutcome, Sink } from '../../src/core/sink.js';
import { produce, type TestRecord } from '../helpers/kafka.js';

/**
 * A stream of order changes (Debezium with and without the schema wrapper, plain JSON
 * rows), page visits (with and without a visit id), bad records of every kind and a
 * tombstone, produced in waves, with everything the ledger must end up holding.
 */

export const PROJECT = 'cinema';
export const PARTITIONS = 4;

export interface Topics {
  debezium: string;
  json: string;
  visits: string;
}

export function topicNames(prefix: string): Topics {
  return { debezium: `${prefix}.public.orders`, json: `${prefix}-orders-json`, visits: `${prefix}-visits` };
}

interface Item {
  topic: string;
  record: TestRecord;
  /** Expected outcome once its offset is known. */
  expect:
    | { kind: 'events'; ids: string[] }
    | { kind: 'visit-by-position'; page: string }
    | { kind: 'bad'; stream: 'record' | 'table' }
    | { kind: 'skip' };
}

export interface Expected {
  events: Set<string>;
  /** Parked inputs, as "stream|position". */
  parked: Set<string>;
  /** Next offset per "topic/partition" (only partitions that received records). */
  ends: Map<string, string>;
  /** Every offset that must be handed to the pipeline (all but tombstones), as "topic/partition@offset". */
  handed: Set<string>;
}

export class Plan {
  readonly waves: Item[][];
  readonly expected: Expected = { events: new Set(), parked: new Set(), ends: new Map(), handed: new Set() };
  private next = 0;

  constructor(
    readonly topics: Topics,
    options: { orders: number; visits: number; waves: number },
  ) {
    const { orders, visits, waves } = options;
    this.waves = Array.from({ length: waves }, () => []);
    const wave = (i: number) => this.waves[Math.min(waves - 1, i)]!;

    for (let i = 0; i < orders; i++) {
      const orderNo = `O-${String(i).padStart(5, '0')}`;
      const kind = i % 3; // 0: Debezium, 1: Debezium with schema wrapper, 2: plain JSON
      const topic = kind === 2 ? topics.json : topics.debezium;
      const partition = i % PARTITIONS;
      const final = i % 2 === 0 ? 'USED' : 'REFUNDED';
      const steps = ['NEW', 'PAID', final];
      const start = i % Math.max(1, waves - 2);
      steps.forEach((status, j) => {
        const row = { id: i + 1, order_no: orderNo, status, paid_amount: '45.00', ticket_count: 2, buyer_phone: `138${String(i).padStart(8, '0')}` };
        let value: unknown = row;
        if (kind !== 2) {
          const env = { before: null, after: row, op: j === 0 ? 'c' : 'u', ts_ms: 1714557600000 + i, source: { schema: 'public', table: 'orders', ts_ms: 1714557600000 + i } };
          value = kind === 1 ? { schema: { type: 'struct', fields: [] }, payload: env } : env;
        }
        wave(start + j).push({ topic, record: { key: orderNo, partition, value }, expect: { kind: 'skip' } });
      });
      this.expected.events.add(eventId([PROJECT, orderNo, 'TRADE_SUCCESS']));
      this.expected.events.add(eventId([PROJECT, orderNo, final === 'USED' ? 'TRADE_CONFIRM' : 'REFUND_SUCCESS']));
    }

    for (let i = 0; i < visits; i++) {
      const page = i % 2 === 0 ? 'CONTRACT_DETAIL_PAGE' : 'SHARE_LANDING_PAGE';
      const withId = i % 3 !== 0;
      const value = {
        ...(withId ? { visit_id: `visit-${i}` } : {}),
        page,
        ...(i % 4 === 0 ? { visitor_logon_id: `u${i}@example.com` } : { visitor_phone: `139${String(i).padStart(8, '0')}` }),
        ...(i % 5 === 0 ? { sharer_phone: '13700000000' } : {}),
      };
      wave(i % waves).push({
        topic: topics.visits,
        record: { partition: i % PARTITIONS, value },
        expect: withId ? { kind: 'events', ids: [eventId([PROJECT, 'VISIT', `visit-${i}`, page])] } : { kind: 'visit-by-position', page },
      });
    }

    // Bad records of every kind, spread over waves and partitions, and a tombstone.
    const bad = (w: number, topic: string, partition: number, value: unknown, raw: boolean, stream: 'record' | 'table' = 'record') =>
      wave(w).push({ topic, record: { partition, value, raw }, expect: { kind: 'bad', stream } });
    for (let w = 0; w < waves; w += 2) {
      const p = w % PARTITIONS;
      bad(w, topics.debezium, p, '{"op":"c","after":', true); // not JSON
      bad(w, topics.debezium, (p + 1) % PARTITIONS, { before: null, after: { order_no: 'X' } }, false); // no op
      bad(w, topics.json, (p + 2) % PARTITIONS, [1, 2, 3], false); // wrong shape
      bad(w, topics.json, (p + 3) % PARTITIONS, { id: 1, status: 'PAID' }, false, 'table'); // no order number (the classifier parks it)
      bad(w, topics.visits, p, { visit_id: `bad-${w}`, page: 'HOME_PAGE', visitor_phone: '1' }, false); // unknown page
      bad(w, topics.visits, (p + 1) % PARTITIONS, { visit_id: `bad-v-${w}`, page: 'SHARE_LANDING_PAGE' }, false); // no visitor
    }
    wave(1).push({ topic: topics.debezium, record: { key: 'O-00000', partition: 0, value: null }, expect: { kind: 'skip' } });
  }

  /** Waves produced so far. */
  get produced(): number {
    return this.next;
  }

  get done(): boolean {
    return this.next >= this.waves.length;
  }

  /** Produces the next wave; records expectations as offsets come back. */
  async produceNext(producer: Producer): Promise<void> {
    const items = this.waves[this.next++];
    if (!items) return;
    for (const topic of [this.topics.debezium, this.topics.json, this.topics.visits]) {
      const mine = items.filter((it) => it.topic === topic);
      if (!mine.length) continue;
      const landed = await produce(producer, topic, mine.map((it) => it.record));
      mine.forEach((it, k) => {
        const { partition, offset } = landed[k]!;
        const stream = `${topic}/${partition}`;
        const end = (BigInt(offset) + 1n).toString();
        if (BigInt(end) > BigInt(this.expected.ends.get(stream) ?? '0')) this.expected.ends.set(stream, end);
        if (it.record.value !== null) this.expected.handed.add(`${stream}@${offset}`);
        const e = it.expect;
        if (e.kind === 'events') for (const id of e.ids) this.expected.events.add(id);
        else if (e.kind === 'visit-by-position') this.expected.events.add(eventId([PROJECT, 'VISIT', `${stream}@${offset}`, e.page]));
        // Undecodable records and rows the classifier refuses alike are parked under topic/partition and offset.
        else if (e.kind === 'bad') this.expected.parked.add(`${stream}|${offset}`);
      });
    }
  }
}

/** The app config for these topics (kafkajs timings for the mock cluster). */
export function relayConfig(options: { dbUrl: string; schema: string; brokers: string[]; topics: Topics; groupId?: string; maxBatchRecords?: number }): ConfigInput {
  return {
    project: PROJECT,
    database: { url: options.dbUrl },
    ledger: { schema: options.schema, poolSize: 4 },
    kafka: {
      kind: 'kafka',
      brokers: options.brokers,
      clientId: 'order-relay-test',
      groupId: options.groupId ?? 'order-relay',
      sessionTimeout: '3s',
      heartbeatInterval: '500ms',
      rebalanceTimeout: '3s',
      maxWait: '250ms',
      maxBatchRecords: options.maxBatchRecords ?? 20,
      topics: [
        { topic: options.topics.debezium, format: 'debezium', table: 'public.orders' },
        { topic: options.topics.json, format: 'json', table: 'public.orders' },
        { topic: options.topics.visits, format: 'visit' },
      ],
    },
    orders: {
      table: 'public.orders',
      orderNo: 'order_no',
      status: 'status',
      statuses: { PAID: ['TRADE_SUCCESS'], USED: ['TRADE_SUCCESS', 'TRADE_CONFIRM'], REFUNDED: ['TRADE_SUCCESS', 'REFUND_SUCCESS'] },
    },
    sinks: {
      antchain: {
        kind: 'antchain',
        endpoint: 'http://127.0.0.1:9/gateway.do',
        productInstanceId: 'ent-sit',
        accessKey: 'test',
        accessSecret: 'test',
        projectId: '1',
        confirmType: 'TWO_STEP_MANUAL',
        buyer: { column: 'buyer_phone', type: 'PHONE' },
        order: { orderNo: 'order_no', originalAmount: 'paid_amount', actualAmount: 'paid_amount', itemCount: 'ticket_count' },
      },
    },
    dispatcher: { pollInterval: '200ms' },
    admin: { listen: 'off' },
  };
}

/** A sink that takes every event and answers `delivered` at once. */
export function acceptingSink(name = 'antchain'): Sink & { delivered: string[] } {
  const delivered: string[] = [];
  return {
    name,
    kind: 'test',
    delivered,
    handles: () => true,
    async deliver(event: BusinessEvent): Promise<DeliveryOutcome> {
      delivered.push(event.id);
      return { status: 'delivered', info: { durationMs: 0 } };
    },
    preview: () => ({ status: 'not_applicable', reason: 'test sink' }),
    close: async () => {},
  };
}

export interface LedgerState {
  events: string[];
  duplicateEvents: number;
  deliveries: number;
  parked: string[];
  checkpoints: Map<string, string>;
}

export async function ledgerState(pool: pg.Pool, schema: string): Promise<LedgerState> {
  const exists = await pool.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [`${schema}.checkpoints`]);
  if (!exists.rows[0]?.ok) return { events: [], duplicateEvents: 0, deliveries: 0, parked: [], checkpoints: new Map() };
  const ev = await pool.query<{ id: string }>(`SELECT id FROM ${schema}.events`);
  const dl = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.delivery_states`);
  const pk = await pool.query<{ k: string }>(`SELECT stream || '|' || position AS k FROM ${schema}.parked_inputs WHERE source = 'kafka'`);
  const cp = await pool.query<{ stream: string; position: string }>(`SELECT stream, position FROM ${schema}.checkpoints WHERE source = 'kafka'`);
  const ids = ev.rows.map((r) => r.id);
  return {
    events: ids,
    duplicateEvents: ids.length - new Set(ids).size,
    deliveries: dl.rows[0]!.n,
    parked: pk.rows.map((r) => r.k),
    checkpoints: new Map(cp.rows.map((r) => [r.stream, r.position])),
  };
}

/** True when the ledger holds exactly what the plan produced so far. */
export function complete(state: LedgerState, expected: Expected): boolean {
  if (state.events.length < expected.events.size) return false;
  for (const [stream, end] of expected.ends) if (state.checkpoints.get(stream) !== end) return false;
  return true;
}

/** Polls `check` until it holds or the deadline passes; returns the last value seen. */
export async function waitFor<T>(what: string, probe: () => Promise<T>, check: (v: T) => boolean, timeoutMs: number, detail?: (v: T) => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!check(last)) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `: ${detail(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
    last = await probe();
  }
  return last;
}

export { seededRandom as prng } from '../../src/core/random.js';
