import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { BusinessEvent, Row } from '../../src/core/events.js';
import type { Logger } from '../../src/log.js';
import { zhimaSinkSchema, type ZhimaSinkConfig, type ZhimaSinkConfigInput } from '../../connectors/sinks/zhima/index.js';

/** Shared test material: golden vectors and throw-away keys live in ../shared next to the repo. */

/** The repo root is two levels above test/zhima/; the shared folder sits beside it. */
export const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
export const SPEC = `${SHARED}spec/`;
export const KEYS = `${SPEC}keys/`;

export const keyFile = (name: string): string => `${KEYS}${name}`;
export const keyText = (name: string): string => readFileSync(keyFile(name), 'utf8');

export const APP_ID = '2021000000000001';
export const APP_PRIVATE_PKCS1 = keyText('app_private_pkcs1.pem');
export const APP_PRIVATE_PKCS8 = keyText('app_private_pkcs8.pem');
export const APP_PUBLIC = keyText('app_public.pem');
export const GATEWAY_PRIVATE = keyText('gateway_private_pkcs1.pem');
export const GATEWAY_PUBLIC = keyText('gateway_public.pem');

export interface RequestVector {
  name: string;
  inputs: {
    app_id: string;
    timestamp: string;
    app_auth_token: string | null;
    biz_content_fields: Record<string, string>;
    biz_data_object_before_stringify: Record<string, string | number>;
  };
  biz_data_string: string;
  biz_content_string: string;
  canonical_string: string;
  canonical_string_utf8_sha256_hex: string;
  sign: string;
  http_request: {
    path_and_query: string;
    production_url: string;
    query_params_decoded: Array<[string, string]>;
    headers: Record<string, string>;
    body: string;
    body_params_decoded: Array<[string, string]>;
  };
  response: { raw_body: string; signed_substring: string; sign: string; tampered_raw_body: string };
}

export interface ResponseVector {
  name: string;
  http_status: number;
  raw_body: string;
  brace_matched_substring: string | null;
}

export interface Vectors {
  request_vectors: RequestVector[];
  response_vectors: ResponseVector[];
  cert_mode_vector: {
    files: { app_cert: string; alipay_public_cert: string; alipay_root_cert: string };
    app_cert_sn: string;
    alipay_cert_sn: string;
    alipay_root_cert_sn: string;
    canonical_string: string;
    sign: string;
    http_request: RequestVector['http_request'];
    response_raw_body: string;
    response_signed_substring: string;
  };
  real_gateway_response_vector: { response_key: string; raw_body: string; signed_substring: string; sign: string; alipay_public_key_pem: string };
}

export const VECTORS = JSON.parse(readFileSync(`${SPEC}alipay-vectors.json`, 'utf8')) as Vectors;

/** A vector's Beijing wall-clock timestamp as an instant. */
export const beijingInstant = (timestamp: string): Date => new Date(`${timestamp.replace(' ', 'T')}+08:00`);

export function parseConfig(input: Partial<ZhimaSinkConfigInput> & Pick<ZhimaSinkConfigInput, 'endpoint'>): ZhimaSinkConfig {
  return zhimaSinkSchema.parse({
    kind: 'zhima',
    appId: APP_ID,
    privateKey: APP_PRIVATE_PKCS1,
    alipayPublicKey: GATEWAY_PUBLIC,
    userIdColumn: 'alipay_user_id',
    principalIdColumn: 'movie_id',
    categoryCode: 'WATCH_MOVIE',
    serviceId: '2019080700000000000001800100',
    states: { TRADE_SUCCESS: 'CONTRACT_STATE_WATCH_MOVIE_BUY', REFUND_SUCCESS: 'CONTRACT_STATE_WATCH_MOVIE_REFUND' },
    bizData: {
      buyCnt: { column: 'ticket_count', type: 'integer' },
      cinemaName: 'cinema_name',
      orderNo: 'order_no',
      startTime: { column: 'show_start', optional: true },
    },
    ...input,
  });
}

let counter = 0;

/** A TRADE event with a plausible order row; `order` entries override the defaults. */
export function tradeEvent(overrides: Partial<BusinessEvent> = {}, order: Row = {}): BusinessEvent {
  counter += 1;
  const id = overrides.id ?? counter.toString(16).padStart(32, '0');
  return {
    id,
    code: 'TRADE_SUCCESS',
    kind: 'TRADE',
    orderKey: `order-${counter}`,
    orderNo: `100220200103${counter}`,
    occurredAt: '2024-01-15T02:30:00.000Z',
    order: {
      alipay_user_id: '2088102000000001',
      movie_id: '1303902',
      ticket_count: 3,
      cinema_name: '自由人影城',
      order_no: `100220200103${counter}`,
      show_start: '2020-01-25 12:30:00',
      ...order,
    },
    ...overrides,
  };
}

/** Config + event that reproduce one golden request vector exactly. */
export function vectorSetup(vector: RequestVector, endpoint = 'https://openapi.alipay.com/gateway.do') {
  const f = vector.inputs.biz_content_fields;
  const bizData: Record<string, string | { column: string; type: 'integer' }> = {};
  const row: Row = { uid: f.user_id!, movie: f.out_principal_id! };
  for (const [name, value] of Object.entries(vector.inputs.biz_data_object_before_stringify)) {
    bizData[name] = typeof value === 'number' ? { column: `c_${name}`, type: 'integer' } : `c_${name}`;
    row[`c_${name}`] = value;
  }
  const config = {
    endpoint,
    appId: vector.inputs.app_id,
    userIdColumn: 'uid',
    principalIdColumn: 'movie',
    categoryCode: f.category_code!,
    serviceId: f.service_id!,
    states: { TRADE_SUCCESS: f.biz_state_code! },
    bizData,
    ...(vector.inputs.app_auth_token && { appAuthToken: vector.inputs.app_auth_token }),
  };
  const event: BusinessEvent = { id: f.out_biz_no!, code: 'TRADE_SUCCESS', kind: 'TRADE', orderKey: 'k', occurredAt: '2024-01-15T00:00:00Z', order: row };
  return { config, event, at: beijingInstant(vector.inputs.timestamp) };
}

/** A logger that keeps every line, to prove what is (not) logged. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}
