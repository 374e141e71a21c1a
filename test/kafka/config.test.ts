import { describe, expect, it } from 'vitest';
import { clientConfig, createKafkaSource, kafkaSourceSchema } from '../../connectors/sources/kafka/index.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';

const topics = [{ topic: 'orders', format: 'json', table: 'public.orders' }];

describe('kafka source config', () => {
  it('has production defaults and units', () => {
    const c = kafkaSourceSchema.parse({ kind: 'kafka', brokers: ['kafka-1:9092'], topics });
    expect(c).toMatchObject({
      clientId: 'order-relay',
      groupId: 'order-relay',
      startFrom: 'earliest',
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      rebalanceTimeout: 60_000,
      maxWait: 500,
      connectionTimeout: 3_000,
      maxBatchRecords: 2_000,
      topics: [{ topic: 'orders', format: 'json', table: 'public.orders', op: 'upsert' }],
    });
    const visits = kafkaSourceSchema.parse({ kind: 'kafka', brokers: ['k:9092'], topics: [{ topic: 'v', format: 'visit', fields: { visitorPhone: 'mobile' } }] });
    expect(visits.topics[0]).toEqual({
      topic: 'v',
      format: 'visit',
      pages: {},
      fields: {
        visitId: 'visit_id',
        page: 'page',
        visitorPhone: 'mobile',
        visitorLogonId: 'visitor_logon_id',
        sharerPhone: 'sharer_phone',
        sharerLogonId: 'sharer_logon_id',
        projectId: 'project_id',
        visitedAt: 'visited_at',
      },
    });
  });

  it('refuses what cannot work, naming the field', () => {
    const issues = (input: object) => {
      const r = kafkaSourceSchema.safeParse({ kind: 'kafka', brokers: ['k:9092'], topics, ...input });
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issues({ brokers: ['kafka'] })).toEqual(['brokers.0: expected host:port']);
    expect(issues({ topics: [] })[0]).toMatch(/^topics: /);
    expect(issues({ topics: [{ topic: 'o', format: 'json' }] })[0]).toMatch(/^topics.0.table: /);
    expect(issues({ topics: [...topics, ...topics] })).toEqual(['topics.1.topic: topic "orders" is listed twice']);
    expect(issues({ topics: [{ topic: 'v', format: 'visit', pages: { home: 'HOME_PAGE' } }] })[0]).toMatch(/^topics.0.pages.home: /);
    expect(issues({ sessionTimeout: '3s', heartbeatInterval: '3s' })).toEqual(['heartbeatInterval: heartbeatInterval must be shorter than sessionTimeout']);
    expect(issues({ sessionTimeout: 3000 })[0]).toMatch(/^sessionTimeout: /);
    expect(issues({ sasl: { mechanism: 'gssapi', username: 'u', password: 'p' } })[0]).toMatch(/^sasl.mechanism: /);
  });

  it('maps brokers, client id, TLS and SASL to kafkajs, secrets from the environment', () => {
    const c = kafkaSourceSchema.parse({
      kind: 'kafka',
      brokers: ['b-1.example.com:9096', 'b-2.example.com:9096'],
      clientId: 'relay-prod',
      ssl: { ca: { env: 'KAFKA_CA' }, servername: 'kafka.example.com' },
      sasl: { mechanism: 'scram-sha-512', username: 'relay', password: { env: 'KAFKA_PASSWORD' } },
      topics,
    });
    const k = clientConfig(c, { KAFKA_CA: '-----BEGIN CERTIFICATE-----', KAFKA_PASSWORD: 's3cret' }, silentLogger());
    expect(k).toMatchObject({
      clientId: 'relay-prod',
      brokers: ['b-1.example.com:9096', 'b-2.example.com:9096'],
      connectionTimeout: 3_000,
      ssl: { ca: '-----BEGIN CERTIFICATE-----', servername: 'kafka.example.com', rejectUnauthorized: true },
      sasl: { mechanism: 'scram-sha-512', username: 'relay', password: 's3cret' },
    });
    const plain = clientConfig(kafkaSourceSchema.parse({ kind: 'kafka', brokers: ['b:9092'], ssl: true, sasl: { mechanism: 'plain', username: 'u', password: 'p' }, topics }), {}, silentLogger());
    expect(plain.ssl).toBe(true);
    expect(plain.sasl).toEqual({ mechanism: 'plain', username: 'u', password: 'p' });
    expect(clientConfig(kafkaSourceSchema.parse({ kind: 'kafka', brokers: ['b:9092'], topics }), {}, silentLogger()).sasl).toBeUndefined();
  });

  it('a missing secret fails run() with its config path, never its value', async () => {
    const c = kafkaSourceSchema.parse({ kind: 'kafka', brokers: ['b:9092'], sasl: { mechanism: 'plain', username: 'u', password: { env: 'NOPE_KAFKA_PW' } }, topics });
    const source = createKafkaSource(c, { logger: silentLogger(), loadCheckpoints: async () => [], env: {} });
    await expect(source.run(async () => {}, [], new AbortController().signal)).rejects.toThrow('kafka.sasl.password: environment variable NOPE_KAFKA_PW is not set');
    expect(source.health()).toEqual({ connected: false, reconnects: 0 });
  });

  it('reads from YAML with ${ENV} interpolation like the rest of the config', () => {
    const yaml = `
project: cinema
database: { url: postgres://relay@db/shop }
kafka:
  kind: kafka
  brokers: ["\${KAFKA_BROKER}"]
  groupId: order-relay
  sasl: { mechanism: scram-sha-256, username: relay, password: { env: KAFKA_PASSWORD } }
  topics:
    - { topic: shop.public.orders, format: debezium, table: public.orders }
    - { topic: page-visits, format: visit, pages: { detail: CONTRACT_DETAIL_PAGE } }
orders: { table: orders, orderNo: order_no, status: status, statuses: { PAID: [TRADE_SUCCESS] } }
sinks:
  antchain:
    kind: antchain
    endpoint: https://openapi.antchain.antgroup.com
    productInstanceId: ent-prod
    accessKey: k
    accessSecret: { env: ANTCHAIN_ACCESS_SECRET }
    projectId: 123
    confirmType: TWO_STEP_MANUAL
    buyer: { column: buyer_phone, type: PHONE }
    order: { orderNo: order_no, originalAmount: amount, actualAmount: amount, itemCount: tickets }
`;
    const config = parseConfig(yaml, { KAFKA_BROKER: 'kafka:9092' });
    expect(config.source).toBeUndefined();
    expect(config.kafka?.brokers).toEqual(['kafka:9092']);
    expect(config.kafka?.sasl?.password).toEqual({ env: 'KAFKA_PASSWORD' });
  });
});
