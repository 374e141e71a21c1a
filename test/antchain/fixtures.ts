import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BusinessEvent, Row } from '../../src/core/events.js';
import { antchainSinkSchema, type AntchainSinkConfig, type AntchainSinkConfigInput } from '../../connectors/sinks/antchain/index.js';

/** The spec's golden vectors, read from ../shared beside the repo (CI puts it there). */
const VECTORS_URL = new URL('../../../shared/spec/antchain-vectors.json', import.meta.url);

export interface RequestVector {
  name: string;
  inputs: {
    endpoint: string;
    access_key: string;
    secret_key: string;
    req_msg_id: string;
    req_time: string;
    base_sdk_version: string;
    sdk_version: string;
    business_params_nested: Record<string, never>;
  };
  flattened_params: Record<string, string>;
  canonical_string: string;
  signature: string;
  http: { method: 'POST'; url: string; headers: Record<string, string>; body: string };
  alt_layout_tea_style: { url: string; body: string };
  tea_sdk_replica: { canonical_string: string; signature: string; url: string; body: string };
}

export interface Vectors {
  reference_vectors_from_sdk_tests: Array<{ source: string; params?: Record<string, string>; raw_body?: string; secret: string; expected_sign: string }>;
  request_vectors: RequestVector[];
  response_vectors: Array<{ name: string; secret_key: string; raw_body: string; string_to_sign?: string; expected_sign?: string; verify: boolean | null }>;
  encoding_vectors: Array<{ name: string; params: Record<string, string>; secret: string; canonical_string: string; signature: string }>;
}

export const vectors = JSON.parse(readFileSync(fileURLToPath(VECTORS_URL), 'utf8')) as Vectors;

export function vector(name: string): RequestVector {
  const found = vectors.request_vectors.find((v) => v.name === name);
  if (!found) throw new Error(`no request vector ${name}`);
  return found;
}

/** Made-up credentials for loopback tests (never the real test secret). */
export const TEST_AK = 'ACSaQbAqX5E6vV6g';
export const TEST_SECRET = 'test-secret-key-0123456789abcdef';

/** A full, valid sink config with the shape production would use; override per test. */
export function sinkConfig(overrides: Partial<AntchainSinkConfigInput> = {}): AntchainSinkConfig {
  return antchainSinkSchema.parse({
    kind: 'antchain',
    endpoint: 'http://acprodapigw.dl.alipaydev.com',
    productInstanceId: 'ent-sit',
    accessKey: TEST_AK,
    accessSecret: { env: 'ANTCHAIN_TEST_SECRET' },
    projectId: '123',
    confirmType: 'TWO_STEP',
    confirmTime: { column: 'confirm_at' },
    buyer: { column: 'buyer_phone', type: 'PHONE' },
    sharer: { column: 'sharer_phone', type: 'PHONE' },
    order: { orderNo: 'order_no', originalAmount: 'original_fen', actualAmount: 'paid_fen', itemCount: 'qty' },
    ...overrides,
  } satisfies AntchainSinkConfigInput);
}

export const TEST_ENV = { ANTCHAIN_TEST_SECRET: TEST_SECRET };

export function orderRow(overrides: Row = {}): Row {
  return {
    order_no: 'd1284971f4b64f438124fa5cf8147ef6',
    original_fen: 100,
    paid_fen: '100',
    qty: 2,
    buyer_phone: '13000000000',
    sharer_phone: '+86-13000000001',
    confirm_at: '2020-12-27T10:34:14Z',
    ...overrides,
  };
}

export function tradeEvent(code: 'TRADE_SUCCESS' | 'REFUND_SUCCESS' | 'TRADE_CONFIRM', id: string, order: Row = orderRow(), extra: Partial<BusinessEvent> = {}): BusinessEvent {
  return {
    id,
    code,
    kind: 'TRADE',
    orderKey: String(order.order_no ?? 'none'),
    orderNo: typeof order.order_no === 'string' ? order.order_no : undefined,
    occurredAt: '2024-05-20T08:30:00Z',
    order,
    ...extra,
  };
}

export function visitEvent(id: string, extra: Partial<NonNullable<BusinessEvent['visit']>> = {}): BusinessEvent {
  return {
    id,
    code: extra.page ?? 'CONTRACT_DETAIL_PAGE',
    kind: 'VISIT',
    orderKey: `visit:${id}`,
    occurredAt: '2024-05-20T08:30:00Z',
    visit: {
      visitId: `v-${id}`,
      page: 'CONTRACT_DETAIL_PAGE',
      visitor: { type: 'PHONE', id: '13000000000' },
      sharer: { type: 'PHONE', id: '13000000001' },
      projectId: '123',
      ...extra,
    },
  };
}

/** Distinct 32-hex event ids for tests. */
export function hexId(n: number): string {
  return n.toString(16).padStart(32, '0');
}
