import { describe, expect, it } from 'vitest';
import { decimalText, decodeRecord, kafkaTopicSchema, type Decoded, type KafkaRecord } from '../../connectors/sources/kafka/index.js';
import { createClassifier } from '../../src/classify/classifier.js';
import { configSchema } from '../../src/config/schema.js';
import { eventId } from '../../src/core/ids.js';
import type { SourceChange } from '../../src/core/source.js';

const debeziumTopic = kafkaTopicSchema.parse({ topic: 'shop.public.orders', format: 'debezium', table: 'public.orders' });
const jsonTopic = kafkaTopicSchema.parse({ topic: 'orders-json', format: 'json', table: 'public.orders' });
const visitTopic = kafkaTopicSchema.parse({ topic: 'page-visits', format: 'visit' });

const TS = String(Date.parse('2024-05-01T10:00:00Z'));

function record(topic: string, value: unknown, offset = 7, partition = 2): KafkaRecord {
  return {
    topic,
    partition,
    offset: String(offset),
    timestamp: TS,
    value: value === null ? null : Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
  };
}

function change(d: Decoded): SourceChange {
  if (d.kind !== 'change') throw new Error(`expected a change, got ${JSON.stringify(d)}`);
  return d.change;
}

function badReason(d: Decoded): string {
  if (d.kind !== 'bad') throw new Error(`expected bad input, got ${JSON.stringify(d)}`);
  expect(d.bad.stream).toMatch(/^[\w.-]+\/\d+$/);
  expect(d.bad.position).toMatch(/^\d+$/);
  return d.bad.reason;
}

const paidRow = { id: 1, order_no: 'O-1001', status: 'PAID', paid_amount: '12.50', buyer_phone: '13800000000' };

function envelope(op: string, before: object | null, after: object | null) {
  return { before, after, op, ts_ms: 1714557601000, source: { connector: 'postgresql', schema: 'public', table: 'orders', ts_ms: 1714557600000, lsn: 123 } };
}

describe('Debezium change events', () => {
  it('decodes c, r, u and d, with the table from config, the position and source.ts_ms as commit time', () => {
    const c = change(decodeRecord(debeziumTopic, record('shop.public.orders', envelope('c', null, paidRow))));
    expect(c).toEqual({
      table: 'public.orders',
      op: 'insert',
      before: null,
      after: paidRow,
      position: 'shop.public.orders/2@7',
      parkAs: { stream: 'shop.public.orders/2', position: '7' },
      committedAt: '2024-05-01T10:00:00.000Z',
    });
    expect(change(decodeRecord(debeziumTopic, record('shop.public.orders', envelope('r', null, paidRow)))).op).toBe('insert');
    const u = change(decodeRecord(debeziumTopic, record('shop.public.orders', envelope('u', { ...paidRow, status: 'NEW' }, paidRow))));
    expect(u).toMatchObject({ op: 'update', before: { status: 'NEW' }, after: paidRow });
    const d = change(decodeRecord(debeziumTopic, record('shop.public.orders', envelope('d', paidRow, null))));
    expect(d).toMatchObject({ op: 'delete', before: paidRow, after: null });
  });

  it('unwraps the {schema, payload} form and decodes Connect types like the Postgres source does', () => {
    const schema = {
      type: 'struct',
      fields: [
        {
          type: 'struct',
          optional: true,
          field: 'after',
          fields: [
            { type: 'int64', optional: false, field: 'id' },
            { type: 'string', optional: false, field: 'order_no' },
            { type: 'string', optional: false, field: 'status' },
            { type: 'bytes', optional: false, name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' }, field: 'paid_amount' },
            { type: 'struct', optional: true, name: 'io.debezium.data.VariableScaleDecimal', field: 'refund_amount' },
            { type: 'int64', optional: true, name: 'io.debezium.time.MicroTimestamp', field: 'show_start' },
            { type: 'string', optional: true, name: 'io.debezium.time.ZonedTimestamp', field: 'paid_at' },
            { type: 'int32', optional: true, name: 'io.debezium.time.Date', field: 'show_date' },
            { type: 'string', optional: true, field: 'remark' },
          ],
        },
        { type: 'struct', optional: true, field: 'before', fields: [] },
        { type: 'string', optional: false, field: 'op' },
      ],
    };
    const after = {
      id: 42,
      order_no: 'O-1001',
      status: 'PAID',
      paid_amount: Buffer.from([0x04, 0xe2]).toString('base64'), // 1250 → "12.50"
      refund_amount: { scale: 1, value: Buffer.from([0xff, 0x85]).toString('base64') }, // -123 → "-12.3"
      show_start: Date.parse('2024-05-01T19:30:00Z') * 1000 + 500, // micros
      paid_at: '2024-05-01T10:00:00.123456Z',
      show_date: 19844, // days since epoch
      remark: '__debezium_unavailable_value',
    };
    const c = change(decodeRecord(debeziumTopic, record('shop.public.orders', { schema, payload: envelope('c', null, after) })));
    expect(c.after).toEqual({
      id: '42',
      order_no: 'O-1001',
      status: 'PAID',
      paid_amount: '12.50',
      refund_amount: '-12.3',
      show_start: '2024-05-01 19:30:00.0005',
      paid_at: '2024-05-01T10:00:00.123Z',
      show_date: '2024-05-01',
    });
    expect(c.unknownColumns).toEqual(['remark']);
  });

  it('computes Connect decimals exactly', () => {
    expect(decimalText(Buffer.from([0x00]).toString('base64'), 2)).toBe('0.00');
    expect(decimalText(Buffer.from([0x05]).toString('base64'), 2)).toBe('0.05');
    expect(decimalText(Buffer.from([0xff]).toString('base64'), 0)).toBe('-1');
    expect(decimalText(Buffer.from([0x00, 0x80]).toString('base64'), 1)).toBe('12.8');
    expect(decimalText(Buffer.from('0de0b6b3a7640000', 'hex').toString('base64'), 18)).toBe('1.000000000000000000');
  });

  it('ignores tombstones (null value, or a null payload) and truncate/message events', () => {
    expect(decodeRecord(debeziumTopic, record('shop.public.orders', null))).toEqual({ kind: 'skip', why: 'tombstone' });
    expect(decodeRecord(debeziumTopic, record('shop.public.orders', { schema: {}, payload: null })).kind).toBe('skip');
    expect(decodeRecord(debeziumTopic, record('shop.public.orders', envelope('t', null, null))).kind).toBe('skip');
  });

  it('parks records of the wrong shape with the problem named', () => {
    const t = 'shop.public.orders';
    expect(badReason(decodeRecord(debeziumTopic, record(t, '{"op": "c", after')))).toMatch(/^not JSON: /);
    expect(badReason(decodeRecord(debeziumTopic, record(t, [1, 2])))).toMatch(/expected an object .* got an array/);
    expect(badReason(decodeRecord(debeziumTopic, record(t, { before: null, after: paidRow })))).toBe('Debezium record: "op" is missing');
    expect(badReason(decodeRecord(debeziumTopic, record(t, paidRow)))).toMatch(/not a change event/);
    expect(badReason(decodeRecord(debeziumTopic, record(t, envelope('x', null, paidRow))))).toMatch(/unknown op "x"/);
    expect(badReason(decodeRecord(debeziumTopic, record(t, envelope('u', null, null))))).toMatch(/op "u" without an "after" row/);
    expect(badReason(decodeRecord(debeziumTopic, record(t, envelope('c', null, 'PAID' as never))))).toMatch(/"after" must be an object/);
    const d = decodeRecord(debeziumTopic, record(t, 'nope', 41, 3));
    expect(d).toEqual({ kind: 'bad', bad: { stream: 'shop.public.orders/3', position: '41', reason: expect.stringMatching(/^not JSON/), raw: 'nope' } });
  });
});

describe('plain JSON order rows', () => {
  it('are upserts (an update with no old row) at the record time', () => {
    expect(change(decodeRecord(jsonTopic, record('orders-json', paidRow)))).toEqual({
      table: 'public.orders',
      op: 'update',
      after: paidRow,
      before: null,
      position: 'orders-json/2@7',
      parkAs: { stream: 'orders-json/2', position: '7' },
      committedAt: '2024-05-01T10:00:00.000Z',
    });
    const inserts = kafkaTopicSchema.parse({ topic: 'orders-new', format: 'json', table: 'orders', op: 'insert' });
    expect(change(decodeRecord(inserts, record('orders-new', paidRow))).op).toBe('insert');
  });

  it('parks what is not a JSON object', () => {
    expect(badReason(decodeRecord(jsonTopic, record('orders-json', 'O-1001,PAID')))).toMatch(/^not JSON/);
    expect(badReason(decodeRecord(jsonTopic, record('orders-json', '"O-1001"')))).toMatch(/JSON row: expected an object \(one public.orders row\), got the string "O-1001"/);
    expect(badReason(decodeRecord(jsonTopic, record('orders-json', 'null')))).toMatch(/got null/);
  });
});

describe('page visits', () => {
  it('become visits with a phone visitor, a sharer, a project and a visit time', () => {
    const c = change(
      decodeRecord(
        visitTopic,
        record('page-visits', {
          visit_id: 'v-1',
          page: 'SHARE_LANDING_PAGE',
          visitor_phone: 13800000000,
          sharer_logon_id: 'sharer@example.com',
          project_id: '123',
          visited_at: '2024-05-01T18:00:00+08:00',
        }),
      ),
    );
    expect(c).toEqual({
      table: 'page-visits',
      op: 'insert',
      after: null,
      before: null,
      position: 'page-visits/2@7',
      parkAs: { stream: 'page-visits/2', position: '7' },
      committedAt: '2024-05-01T10:00:00.000Z',
      visit: {
        visitId: 'v-1',
        page: 'SHARE_LANDING_PAGE',
        visitor: { type: 'PHONE', id: '13800000000' },
        sharer: { type: 'ALIPAY_LOGON_ID', id: 'sharer@example.com' },
        projectId: '123',
        visitedAt: '2024-05-01T10:00:00.000Z',
      },
    });
  });

  it('take an Alipay logon id visitor; without a visit id the identity is topic/partition/offset', () => {
    const v = change(decodeRecord(visitTopic, record('page-visits', { page: 'CONTRACT_DETAIL_PAGE', visitor_logon_id: 'buyer@example.com' }, 99, 1))).visit!;
    expect(v).toEqual({ visitId: 'page-visits/1@99', page: 'CONTRACT_DETAIL_PAGE', visitor: { type: 'ALIPAY_LOGON_ID', id: 'buyer@example.com' } });
  });

  it('follow a field mapping with nested paths and page aliases', () => {
    const topic = kafkaTopicSchema.parse({
      topic: 'fe-events',
      format: 'visit',
      fields: { visitId: 'id', page: 'page.name', visitorPhone: 'user.mobile', visitedAt: 'ts' },
      pages: { detail: 'CONTRACT_DETAIL_PAGE', share: 'SHARE_LANDING_PAGE' },
    });
    const v = change(decodeRecord(topic, record('fe-events', { id: 'e9', page: { name: 'detail' }, user: { mobile: '13900000000' }, ts: 1714557600000 }))).visit!;
    expect(v).toEqual({ visitId: 'e9', page: 'CONTRACT_DETAIL_PAGE', visitor: { type: 'PHONE', id: '13900000000' }, visitedAt: '2024-05-01T10:00:00.000Z' });
    expect(badReason(decodeRecord(topic, record('fe-events', { page: { name: 'home' }, user: { mobile: '1' } })))).toBe(
      'visit: unknown page "home" (expected CONTRACT_DETAIL_PAGE or SHARE_LANDING_PAGE or one of detail, share)',
    );
  });

  it('park unknown pages, missing visitors and malformed fields', () => {
    const r = (v: unknown) => badReason(decodeRecord(visitTopic, record('page-visits', v)));
    expect(r({ visit_id: 'v', page: 'HOME_PAGE', visitor_phone: '1' })).toMatch(/unknown page "HOME_PAGE"/);
    expect(r({ visit_id: 'v', visitor_phone: '1' })).toBe('visit: page is missing (field "page")');
    expect(r({ visit_id: 'v', page: 'CONTRACT_DETAIL_PAGE' })).toBe('visit: no visitor (neither "visitor_phone" nor "visitor_logon_id" is set)');
    expect(r({ visit_id: 'v', page: 'CONTRACT_DETAIL_PAGE', visitor_phone: '  ' })).toMatch(/no visitor/);
    expect(r({ visit_id: { a: 1 }, page: 'CONTRACT_DETAIL_PAGE', visitor_phone: '1' })).toMatch(/field "visit_id" must be text, got a object/);
    expect(r({ page: 'CONTRACT_DETAIL_PAGE', visitor_phone: '1', visited_at: 'yesterday' })).toMatch(/"visited_at" is not a time/);
    expect(r(['CONTRACT_DETAIL_PAGE'])).toMatch(/visit: expected a JSON object, got an array/);
    expect(r('<html>')).toMatch(/^not JSON/);
  });
});

describe('one order change, three sources, one event id', () => {
  const base = {
    project: 'cinema',
    database: { url: 'postgres://localhost/x' },
    orders: { table: 'orders', orderNo: 'order_no', status: 'status', statuses: { PAID: ['TRADE_SUCCESS'], USED: ['TRADE_SUCCESS', 'TRADE_CONFIRM'] } },
    sinks: {
      antchain: {
        kind: 'antchain',
        endpoint: 'http://127.0.0.1:1',
        productInstanceId: 'ent-sit',
        accessKey: 'k',
        accessSecret: 's',
        projectId: '1',
        confirmType: 'TWO_STEP_MANUAL',
        buyer: { column: 'buyer_phone', type: 'PHONE' },
        order: { orderNo: 'order_no', originalAmount: 'paid_amount', actualAmount: 'paid_amount', itemCount: 'ticket_count' },
      },
    },
  };
  const config = configSchema.parse({
    ...base,
    kafka: { kind: 'kafka', brokers: ['localhost:9092'], topics: [{ topic: 'orders-json', format: 'json', table: 'public.orders' }] },
  });
  const classifier = createClassifier(config);
  const ids = (c: SourceChange) => {
    const r = classifier.classify(c, () => undefined);
    if (r.kind !== 'events') throw new Error(JSON.stringify(r));
    return r.events.map((e) => `${e.code}:${e.id}`);
  };

  it('Debezium (both forms), plain JSON and the Postgres source agree', () => {
    // What the Postgres source hands over for `UPDATE orders SET status = 'USED'` under
    // REPLICA IDENTITY DEFAULT: no old row, int8 as text.
    const postgres: SourceChange = {
      table: 'public.orders',
      op: 'update',
      before: null,
      after: { id: '42', order_no: 'O-1001', status: 'USED', paid_amount: '12.50', buyer_phone: '13800000000' },
      position: '0/16B3748',
      committedAt: '2024-05-01T10:00:00.000Z',
    };
    const row = { id: 42, order_no: 'O-1001', status: 'USED', paid_amount: '12.50', buyer_phone: '13800000000' };
    const plain = change(decodeRecord(debeziumTopic, record('shop.public.orders', envelope('u', null, row))));
    const wrapped = change(decodeRecord(debeziumTopic, record('shop.public.orders', { schema: { type: 'struct', fields: [] }, payload: envelope('u', null, row) })));
    const json = change(decodeRecord(jsonTopic, record('orders-json', row)));
    const expected = [`TRADE_SUCCESS:${eventId(['cinema', 'O-1001', 'TRADE_SUCCESS'])}`, `TRADE_CONFIRM:${eventId(['cinema', 'O-1001', 'TRADE_CONFIRM'])}`];
    expect(ids(postgres)).toEqual(expected);
    expect(ids(plain)).toEqual(expected);
    expect(ids(wrapped)).toEqual(expected);
    expect(ids(json)).toEqual(expected);
  });

  it('a visit gets its id from (project, visit id, page), whatever the record offset', () => {
    const a = change(decodeRecord(visitTopic, record('page-visits', { visit_id: 'v-7', page: 'CONTRACT_DETAIL_PAGE', visitor_phone: '1' }, 1)));
    const b = change(decodeRecord(visitTopic, record('page-visits', { visit_id: 'v-7', page: 'CONTRACT_DETAIL_PAGE', visitor_phone: '1' }, 500, 3)));
    expect(ids(a)).toEqual([`CONTRACT_DETAIL_PAGE:${eventId(['cinema', 'VISIT', 'v-7', 'CONTRACT_DETAIL_PAGE'])}`]);
    expect(ids(b)).toEqual(ids(a));
  });

  it('config: a kafka-only setup is valid; an order topic for an unknown table is refused', () => {
    expect(config.kafka?.sessionTimeout).toBe(30_000);
    expect(config.source).toBeUndefined();
    const r = configSchema.safeParse({
      ...base,
      kafka: { kind: 'kafka', brokers: ['b:9092'], topics: [{ topic: 't', format: 'json', table: 'public.order_items' }] },
    });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'kafka.topics.0.table: "public.order_items" is neither orders.table nor refunds.table: every record would be ignored',
    ]);
  });
});

describe('numbers beyond 2^53', () => {
  it('a visit field that arrives as such a number is parked, never sent rounded', () => {
    const topic = kafkaTopicSchema.parse({ topic: 'page-visits', format: 'visit' });
    const value = '{"visit_id": 12345678901234567993, "page": "SHARE_LANDING_PAGE", "visitor_phone": "13800000000", "visited_at": "2024-05-01T18:00:00+08:00"}';
    const d = decodeRecord(topic, { topic: 'page-visits', partition: 0, offset: '1', timestamp: '0', value: Buffer.from(value) });
    expect(d.kind).toBe('bad');
    expect(d.kind === 'bad' && d.bad.reason).toMatch(/visit_id.*beyond 2\^53/);
  });
});
