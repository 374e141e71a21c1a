import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { signParams } from '../../connectors/sinks/antchain/sign.js';
import { parseConfig } from '../../src/config/load.js';
import { eventId } from '../../src/core/ids.js';
import { preview, type PreviewArgs } from '../../src/cli/preview.js';
import { APP_PRIVATE_PKCS1, GATEWAY_PUBLIC } from '../zhima/helpers.js';

/** `order-relay preview`: issue 12, item 4. Pure: no database, no network. */

const SECRET = 'preview-secret-0123456789abcdef';
const env = { ANTCHAIN_SECRET: SECRET, ZHIMA_KEY: APP_PRIVATE_PKCS1, ZHIMA_ALIPAY: GATEWAY_PUBLIC };

const YAML = `
project: preview-test
database: { url: postgres://nobody@127.0.0.1:9/none }
kafka:
  kind: kafka
  brokers: [127.0.0.1:9]
  topics:
    - { topic: orders-json, format: json, table: public.orders }
    - topic: page-visits
      format: visit
      fields: { visitorPhone: visitor.phone }
      pages: { detail: CONTRACT_DETAIL_PAGE }
orders:
  table: public.orders
  orderNo: order_no
  status: status
  statuses:
    PAID: [TRADE_SUCCESS]
    USED: [TRADE_SUCCESS, TRADE_CONFIRM]
refunds:
  table: public.refunds
  orderNo: order_no
  refundId: refund_id
  status: status
sinks:
  antchain:
    kind: antchain
    endpoint: http://127.0.0.1:9
    productInstanceId: ent-sit
    accessKey: ACpreview
    accessSecret: { env: ANTCHAIN_SECRET }
    projectId: "123"
    confirmType: TWO_STEP_MANUAL
    buyer: { column: buyer_phone, type: PHONE }
    order: { orderNo: order_no, originalAmount: original_amount, actualAmount: paid_amount, itemCount: ticket_count }
    refund: { originalAmount: refund_amount, actualAmount: refund_amount, itemCount: refund_count }
    amountUnit: yuan
  zhima:
    kind: zhima
    endpoint: http://127.0.0.1:9/gateway.do
    appId: "2021000000000001"
    privateKey: { env: ZHIMA_KEY }
    alipayPublicKey: { env: ZHIMA_ALIPAY }
    userIdColumn: alipay_user_id
    principalIdColumn: movie_id
    categoryCode: WATCH_MOVIE
    serviceId: "2019080700000000000001800100"
    states:
      TRADE_SUCCESS: CONTRACT_STATE_WATCH_MOVIE_BUY
      REFUND_SUCCESS: CONTRACT_STATE_WATCH_MOVIE_REFUND
    bizData:
      buyCnt: { column: ticket_count, type: integer }
      price: { column: paid_amount, type: number }
`;
const config = parseConfig(YAML, env, 'preview-test.yaml');

const dir = mkdtempSync(join(tmpdir(), 'order-relay-preview-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function file(content: unknown): string {
  const path = join(dir, `input-${(files += 1)}.json`);
  writeFileSync(path, JSON.stringify(content));
  return path;
}

type Line = Record<string, any>;
const run = (args: PreviewArgs): Line[] => preview(config, args, env).map((line) => JSON.parse(line) as Line);

const AT = '2024-05-20T08:30:00Z';
const NONCE = '0123456789abcdef0123456789abcdef';

const order = (overrides: Record<string, unknown> = {}) => ({
  order_no: 'A1', status: 'USED', buyer_phone: '138 0013 8000', alipay_user_id: '2088102000000001', movie_id: '1303902',
  ticket_count: 2, original_amount: '90.00', paid_amount: '80.10', ...overrides,
});
const used = { table: 'public.orders', op: 'update', old: { order_no: 'A1', status: 'CREATED' }, new: order() };

/** The per-request id each printed request carries: AntChain's req_msg_id, Alipay's alipay-request-id. */
function requestIdOf(line: Line): string {
  return line.sink === 'antchain' ? new URLSearchParams(line.request.body).get('req_msg_id')! : line.request.headers['alipay-request-id'];
}

describe('each printed request has its own per-request id', () => {
  it('two events × two sinks: four requests, four ids, the first is --nonce; idempotency keys stay the event\'s', () => {
    const lines = run({ change: file(used), at: AT, nonce: NONCE });
    expect(lines.map((l) => [l.sink ?? 'event', l.eventCode, l.request ? 'request' : l.notApplicable ? 'n/a' : l.rejected ? 'rejected' : ''])).toEqual([
      ['event', 'TRADE_SUCCESS', ''],
      ['antchain', 'TRADE_SUCCESS', 'request'],
      ['zhima', 'TRADE_SUCCESS', 'request'],
      ['event', 'TRADE_CONFIRM', ''],
      ['antchain', 'TRADE_CONFIRM', 'request'],
      ['zhima', 'TRADE_CONFIRM', 'n/a'],
    ]);
    const requests = lines.filter((l) => l.request);
    const ids = requests.map(requestIdOf);
    expect(ids[0]).toBe(NONCE);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    for (const l of requests) {
      if (l.sink === 'antchain') expect(new URLSearchParams(l.request.body).get('request_id')).toBe(l.eventId);
      else expect(JSON.parse(new URLSearchParams(l.request.body).get('biz_content')!).out_biz_no).toBe(l.eventId);
    }
    expect(lines[0]!.eventId).toBe(eventId(['preview-test', 'A1', 'TRADE_SUCCESS']));
  });

  it('every AntChain request is signed over its own req_msg_id, so each can be sent as printed', () => {
    const antchain = run({ change: file(used), at: AT, nonce: NONCE }).filter((l) => l.sink === 'antchain');
    expect(antchain).toHaveLength(2);
    for (const l of antchain) {
      const params = Object.fromEntries(new URLSearchParams(l.request.body));
      expect(l.request.body.endsWith(`&sign=${encodeURIComponent(signParams(params, SECRET))}`)).toBe(true);
    }
  });

  it('pinned: the same output every run; unpinned: fresh ids every run, still distinct', () => {
    const path = file(used);
    expect(run({ change: path, at: AT, nonce: NONCE })).toStrictEqual(run({ change: path, at: AT, nonce: NONCE }));
    const first = run({ change: path, at: AT }).filter((l) => l.request).map(requestIdOf);
    const second = run({ change: path, at: AT }).filter((l) => l.request).map(requestIdOf);
    expect(new Set([...first, ...second]).size).toBe(first.length + second.length);
  });

  it('refuses a --nonce that is not a valid req_msg_id', () => {
    expect(() => run({ change: file(used), nonce: 'ABC' })).toThrow('--nonce: expected 32 lowercase hex characters');
  });
});

describe('page visits', () => {
  const visit = { visit_id: 'v-1', page: 'detail', visitor: { phone: '+86 138 0013 8000' }, sharer_logon_id: '+8613900000000', project_id: '777' };

  it('--visit reads the record with the configured visit topic\'s mapping and previews the VISIT event', () => {
    const lines = run({ visit: file(visit), at: AT, nonce: NONCE });
    expect(lines.map((l) => [l.sink ?? 'event', l.eventCode])).toEqual([
      ['event', 'CONTRACT_DETAIL_PAGE'],
      ['antchain', 'CONTRACT_DETAIL_PAGE'],
      ['zhima', 'CONTRACT_DETAIL_PAGE'],
    ]);
    expect(lines[0]!.eventId).toBe(eventId(['preview-test', 'VISIT', 'v-1', 'CONTRACT_DETAIL_PAGE']));
    const body = new URLSearchParams(lines[1]!.request.body);
    expect(Object.fromEntries(body)).toMatchObject({
      event_type: 'VISIT',
      event_instance_code: 'CONTRACT_DETAIL_PAGE',
      confirm_type: 'DIRECT',
      'event_child.user_id_no': '+86-13800138000',
      'event_child.user_id_type': 'PHONE',
      'event_parent.user_id_no': '13900000000',
      'event_parent.user_id_type': 'ALIPAY_LOGON_ID',
      project_id: '777',
      request_id: lines[0]!.eventId,
      req_msg_id: NONCE,
    });
    expect(lines[2]!.notApplicable).toBe('sink zhima does not handle CONTRACT_DETAIL_PAGE');
  });

  it('a visit without a visit id needs the record position the stream would name it by', () => {
    const { visit_id: _omitted, ...anonymous } = visit;
    const path = file(anonymous);
    expect(() => run({ visit: path })).toThrow(/no "visit_id".*--position <partition>@<offset>/);
    const [event] = run({ visit: path, position: '2@41' });
    expect(event!.eventId).toBe(eventId(['preview-test', 'VISIT', 'page-visits/2@41', 'CONTRACT_DETAIL_PAGE']));
    expect(() => run({ visit: path, position: '2:41' })).toThrow('--position: expected <partition>@<offset>');
  });

  it('a visit the stream would park says why', () => {
    expect(() => run({ visit: file({ visit_id: 'v-2', page: 'detail' }) })).toThrow('the visit would be parked: visit: no visitor');
    expect(() => run({ visit: file({ visit_id: 'v-3', page: 'home', visitor: { phone: '13800138000' } }) })).toThrow('visit: unknown page "home"');
  });

  it('a visit record given as --change is pointed to --visit; exactly one input is required', () => {
    const path = file(visit);
    expect(() => run({ change: path })).toThrow(`has no "table" or "op"; for a page-visit record use --visit ${path}`);
    expect(() => run({})).toThrow('give either --change <file> or --visit <file>');
    expect(() => run({ change: path, visit: path })).toThrow('give either --change <file> or --visit <file>');
  });

  it('with several visit topics, --topic picks the mapping', () => {
    const two = parseConfig(
      YAML.replace('    - { topic: orders-json, format: json, table: public.orders }', '    - { topic: other-visits, format: visit }'),
      env,
    );
    const path = file({ visit_id: 'v-4', page: 'SHARE_LANDING_PAGE', visitor_phone: '13800138000' });
    expect(() => preview(two, { visit: path })).toThrow('kafka.topics has 2 visit topics (other-visits, page-visits): say which with --topic <name>');
    expect(JSON.parse(preview(two, { visit: path, topic: 'other-visits' }, env)[0]!).eventCode).toBe('SHARE_LANDING_PAGE');
    expect(() => preview(two, { visit: path, topic: 'nope' }, env)).toThrow('--topic nope: not a visit topic of kafka.topics (other-visits, page-visits)');
  });
});

describe('the old row is used where the stream uses it, or refused', () => {
  it('orders update: "old" is what is known of the order; an unchanged status yields nothing, and says so', () => {
    expect(run({ change: file({ ...used, old: order({ status: 'USED' }) }) })).toStrictEqual([
      { noEvents: 'status "USED" is unchanged from the order row before this change: its events (TRADE_SUCCESS, TRADE_CONFIRM) came when the order entered it' },
    ]);
    // From PAID, the USED row still yields both codes: TRADE_SUCCESS is deduplicated by its id in the ledger.
    expect(run({ change: file({ ...used, old: order({ status: 'PAID' }) }) }).filter((l) => !l.sink).map((l) => l.eventCode)).toEqual(['TRADE_SUCCESS', 'TRADE_CONFIRM']);
  });

  it('"order" means the same for an orders update; giving both is refused', () => {
    expect(run({ change: file({ ...used, old: undefined, order: order({ status: 'USED' }) }) })[0]).toHaveProperty('noEvents');
    expect(() => run({ change: file({ ...used, order: order() }) })).toThrow('"old" and "order" both say what is known of the order before this change: give one');
  });

  it('an old row of another order is refused', () => {
    expect(() => run({ change: file({ ...used, old: { order_no: 'B2', status: 'PAID' } }) })).toThrow('"old" is order B2, the change is of order A1');
  });

  it('an insert does not look anything up: "old" there is refused, not ignored', () => {
    expect(() => run({ change: file({ ...used, op: 'insert' }) })).toThrow('"old" is not used for an insert: the stream classifies an inserted order from its new row alone');
  });

  it('a refund row: "order" is its order, "old" is refused', () => {
    const refund = { table: 'public.refunds', op: 'insert', new: { refund_id: 'R1', order_no: 'A1', status: 'SUCCESS', refund_amount: '40.00', refund_count: 1 }, order: order() };
    const lines = run({ change: file(refund), at: AT });
    const antchainRefund = lines.find((l) => l.sink === 'antchain' && l.eventCode === 'REFUND_SUCCESS');
    expect(new URLSearchParams(antchainRefund!.request.body).get('trade_order.actual_total_amount')).toBe('4000');
    expect(() => run({ change: file({ ...refund, old: { refund_id: 'R1', status: 'PENDING' } }) })).toThrow('"old" is not used for a refund row');
  });
});

describe('a change that yields nothing says why', () => {
  it.each([
    [{ table: 'public.customers', op: 'update', new: { id: 1 } }, 'table public.customers is neither orders.table (public.orders) nor refunds.table (public.refunds): the stream ignores its changes'],
    [{ table: 'orders', op: 'delete', old: { order_no: 'A1' } }, 'a delete of public.orders yields no events: only inserted and updated rows are classified'],
    [{ table: 'public.refunds', op: 'delete', old: { refund_id: 'R1', order_no: 'A1' } }, 'a delete of public.refunds yields no events: only inserted and updated rows are classified'],
    [{ table: 'public.orders', op: 'insert', new: order({ status: 'CREATED' }) }, 'status "CREATED" (column "status") is in no orders.statuses mapping (mapped: PAID, USED)'],
    [
      { table: 'public.refunds', op: 'insert', new: { refund_id: 'R1', order_no: 'A1', status: 'PENDING' }, order: order() },
      'refund status "PENDING" (column "status") is not one of refunds.successStatuses (SUCCESS)',
    ],
  ])('%j', (change, why) => {
    expect(run({ change: file(change) })).toStrictEqual([{ noEvents: why }]);
  });

  it('a change the stream would park still fails with the reason', () => {
    expect(() => run({ change: file({ table: 'public.orders', op: 'insert', new: { status: 'PAID' } }) })).toThrow(
      'the change would be parked: public.orders: order number column "order_no" is missing or empty',
    );
  });

  it('a sink\'s refusal is printed with the field, not dropped', () => {
    const lines = run({ change: file({ ...used, new: order({ movie_id: 'm'.repeat(129), paid_amount: '80.105' }) }) });
    expect(lines.find((l) => l.sink === 'zhima')?.rejected).toStrictEqual({ code: 'INVALID_EVENT', message: 'out_principal_id: column movie_id is 129 characters; the limit is 128' });
    expect(lines.find((l) => l.sink === 'antchain')?.rejected.message).toBe('trade_order.actual_total_amount: column "paid_amount" in the order row has more than two decimals (sub-fen amount)');
  });
});

describe('--help', () => {
  it('documents both inputs, the position, the per-request ids and the noEvents line', async () => {
    const { program } = await import('../../src/cli/program.js');
    const command = program.commands.find((c) => c.name() === 'preview')!;
    let help = '';
    command.configureOutput({ writeOut: (text) => void (help += text) });
    command.outputHelp(); // with the text added after the options
    help = help.replace(/\s+/g, ' '); // however the terminal width wrapped it
    expect(help).toMatch(/--change <file>/);
    expect(help).toMatch(/--visit <file>/);
    expect(help).toMatch(/--topic <name>/);
    expect(help).toMatch(/--position <partition@offset>/);
    expect(help).toContain('later requests get ids derived from it');
    expect(help).toContain('{"noEvents": "<why>"}');
    expect(help).toContain('order-relay preview -c config.yaml --visit visit.json');
  });
});
