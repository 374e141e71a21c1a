import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildBusinessParams } from '../../connectors/sinks/antchain/index.js';
import { createClassifier } from '../../src/classify/classifier.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { parseDuration, parseSize } from '../../src/config/units.js';
import { REPO } from '../helpers/pipeline.js';

const demo = readFileSync(`${REPO}config/demo.yaml`, 'utf8');
const env = {
  DATABASE_URL: 'postgres://u@h/db',
  ANTCHAIN_ENDPOINT: 'http://127.0.0.1:1/gateway.do',
  ANTCHAIN_ACCESS_KEY: 'ak',
  ZHIMA_ENDPOINT: 'http://127.0.0.1:2/gateway.do',
};

function problems(text: string, e: Record<string, string> = env): string[] {
  try {
    parseConfig(text, e);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the config to be refused');
}

describe('configuration', () => {
  it('accepts the demo config and fills defaults in real units', () => {
    const c = parseConfig(demo, env);
    expect(c.database.url).toBe('postgres://u@h/db');
    expect(c.source?.heartbeat).toBe(10_000);
    expect(c.source?.statusInterval).toBe(10_000);
    expect(c.sinks.antchain!.timeout).toBe(5_000);
    expect(c.dispatcher.pollInterval).toBe(200);
    expect(c.ledger.schema).toBe('order_relay');
    expect(Object.isFrozen(c.sinks)).toBe(true);
  });

  it('names every unset environment variable with the path that uses it', () => {
    expect(problems(demo, {})).toEqual([
      'database.url: environment variable DATABASE_URL is not set',
      'sinks.antchain.endpoint: environment variable ANTCHAIN_ENDPOINT is not set',
      'sinks.antchain.accessKey: environment variable ANTCHAIN_ACCESS_KEY is not set',
      'sinks.zhima.endpoint: environment variable ZHIMA_ENDPOINT is not set',
    ]);
  });

  it('refuses unknown keys, naming their path', () => {
    const text = demo.replace('  heartbeat: 10s', '  heartbeat: 10s\n  hartbeat: 5s');
    expect(problems(text)).toEqual(['source: unknown key(s) "hartbeat"']);
  });

  it('refuses durations without units and bad values, naming the path and what is expected', () => {
    const text = demo.replace('heartbeat: 10s', 'heartbeat: 10').replace('pollInterval: 200ms', 'pollInterval: soon');
    const p = problems(text);
    expect(p).toContainEqual(expect.stringMatching(/^source\.heartbeat: /));
    expect(p).toContainEqual('dispatcher.pollInterval: expected a duration with a unit, e.g. "30s" (units: ms, s, m, h, d); got "soon"');
  });

  it('refuses a wrong event code and a bad identifier', () => {
    const text = demo.replace('PAID: [TRADE_SUCCESS]', 'PAID: [TRADE_SUCESS]').replace('slot: order_relay_demo', 'slot: Order-Relay');
    const p = problems(text);
    expect(p.some((x) => x.startsWith('orders.statuses.PAID[0]: '))).toBe(true);
    expect(p.some((x) => x.startsWith('source.slot: expected a lower-case SQL identifier'))).toBe(true);
  });

  it('refuses a status that emits REFUND_SUCCESS beside a refunds table, naming both keys (one refund, one event)', () => {
    const text = demo.replace(/^    REFUNDED: .*$/m, '    REFUNDED: [TRADE_SUCCESS, REFUND_SUCCESS]');
    expect(text).not.toBe(demo);
    expect(problems(text)).toEqual([expect.stringMatching(/^orders\.statuses\.REFUNDED: lists REFUND_SUCCESS while refunds\.table is set \(public\.refunds\): /)]);
    // Without a refunds table the status is the only record of a refund, and may say so.
    const statusOnly = parseConfig(text.replace(/^refunds:\n(?: {2}.*\n)+/m, ''), env);
    expect(statusOnly.refunds).toBeUndefined();
    expect(statusOnly.orders.statuses.REFUNDED).toEqual(['TRADE_SUCCESS', 'REFUND_SUCCESS']);
  });

  it('ships templates whose refunds come from the refund rows only, REFUNDED keeping the purchase', () => {
    const production = readFileSync(`${REPO}config/production.yaml`, 'utf8');
    for (const c of [parseConfig(demo, env), parseConfig(production, { ...env, ANTCHAIN_ACCESS_SECRET: 's' })]) {
      expect(c.refunds).toBeDefined();
      expect(c.orders.statuses.REFUNDED).toEqual(['TRADE_SUCCESS']);
      expect(Object.values(c.orders.statuses).flat()).not.toContain('REFUND_SUCCESS');
    }
  });

  it('reads REFUND_SUCCESS amounts where production.yaml says: the refund row\'s `refund` columns, else the order row\'s `order` columns', () => {
    const production = readFileSync(`${REPO}config/production.yaml`, 'utf8');
    const e = { ...env, ANTCHAIN_ACCESS_SECRET: 's' };
    const order = { order_no: 'A', status: 'REFUNDED', buyer_phone: '13800138000', original_amount: '90.00', paid_amount: '80.00', ticket_count: 2 };
    const amounts = (config: ReturnType<typeof parseConfig>, change: { table: string; after: Record<string, string | number> }, known: Record<string, string | number>) => {
      const r = createClassifier(config).classify({ ...change, op: 'update', before: null, position: '0/1', committedAt: '2026-01-01T00:00:00Z' }, () => known);
      const refund = r.kind === 'events' ? r.events.find((x) => x.code === 'REFUND_SUCCESS') : undefined;
      const sink = config.sinks.antchain!;
      const built = refund && sink.kind === 'antchain' ? buildBusinessParams(refund, sink) : undefined;
      return built?.ok ? built.params.trade_order : built;
    };
    // With the refunds table: the refund row's own amounts and count.
    expect(amounts(parseConfig(production, e), { table: 'public.refunds', after: { refund_id: 'R1', order_no: 'A', status: 'SUCCESS', refund_amount: '30.00', refund_count: 1 } }, order))
      .toMatchObject({ original_total_amount: '3000', actual_total_amount: '3000', item_count: '1' });
    // Without it, REFUNDED is the refund: a full refund, with the order row's `order` columns.
    const statusOnly = production.replace(/^refunds:\n(?:(?: {2}.*)?\n)+?(?=\S)/m, '').replace('REFUNDED: [TRADE_SUCCESS]', 'REFUNDED: [TRADE_SUCCESS, REFUND_SUCCESS]');
    expect(amounts(parseConfig(statusOnly, e), { table: 'public.orders', after: order }, { ...order, status: 'PAID' })).toMatchObject({ original_total_amount: '9000', actual_total_amount: '8000', item_count: '2' });
  });

  it('reports YAML syntax errors', () => {
    expect(problems('project: [unclosed')[0]).toMatch(/./);
  });

  it('interpolates after parsing, so secrets with YAML syntax stay intact, and supports defaults', () => {
    const c = parseConfig(demo.replace('${ANTCHAIN_ACCESS_KEY}', '${AK_WITH_SYNTAX}').replace('${ZHIMA_ENDPOINT}', '${NOPE:-http://127.0.0.1:3/gateway.do}'), {
      ...env,
      AK_WITH_SYNTAX: 'a: b # c',
    });
    expect(c.sinks.antchain!.kind === 'antchain' && c.sinks.antchain!.accessKey).toBe('a: b # c');
    expect(c.sinks.zhima!.endpoint).toBe('http://127.0.0.1:3/gateway.do');
  });

  it('parses durations and sizes with explicit units only', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1.5m')).toBe(90_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('10')).toBeUndefined();
    expect(parseSize('64kB')).toBe(64_000);
    expect(parseSize('10MiB')).toBe(10 * 1024 * 1024);
    expect(parseSize('10')).toBeUndefined();
  });
});

describe('configuration: backoffs', () => {
  it('refuses an initial backoff longer than the maximum, naming the path', () => {
    const text = demo.replace('retry: { initialBackoff: 200ms, maxBackoff: 5s }', 'retry: { initialBackoff: 10m, maxBackoff: 1m }');
    expect(text).not.toBe(demo);
    expect(problems(text)).toEqual([
      'sinks.antchain.retry.initialBackoff: 600000 ms is more than maxBackoff (60000 ms): the first wait may not exceed the longest; swap or fix the two values',
    ]);
  });
});
