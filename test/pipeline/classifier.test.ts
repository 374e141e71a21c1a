import { describe, expect, it } from 'vitest';
import { createClassifier } from '../../src/classify/classifier.js';
import type { Row } from '../../src/core/events.js';
import { eventId } from '../../src/core/ids.js';
import type { SourceChange } from '../../src/core/source.js';

const refundsTable = { table: 'refunds', orderNo: 'order_no', refundId: 'refund_id', status: 'status', successStatuses: ['SUCCESS'] };
const orders = (statuses: Record<string, Array<'TRADE_SUCCESS' | 'REFUND_SUCCESS' | 'TRADE_CONFIRM'>>) => ({ table: 'public.orders', orderNo: 'order_no', status: 'status', statuses });
const classifier = createClassifier({
  project: 'p1',
  orders: orders({ PAID: ['TRADE_SUCCESS'], USED: ['TRADE_SUCCESS', 'TRADE_CONFIRM'], REFUNDED: ['TRADE_SUCCESS'] }),
  refunds: refundsTable,
});

const change = (table: string, after: Row | null, extra: Partial<SourceChange> = {}): SourceChange => ({
  table, op: after ? 'update' : 'delete', after, before: null, position: '0/1', committedAt: '2026-01-01T00:00:00.000Z', ...extra,
});
const none = () => undefined;

describe('classifier', () => {
  it('maps a status to its events in order, with ids from business identity only', () => {
    const r = classifier.classify(change('public.orders', { order_no: 'A', status: 'USED' }), none);
    expect(r.kind === 'events' && r.events.map((e) => [e.code, e.id])).toEqual([
      ['TRADE_SUCCESS', eventId(['p1', 'A', 'TRADE_SUCCESS'])],
      ['TRADE_CONFIRM', eventId(['p1', 'A', 'TRADE_CONFIRM'])],
    ]);
    const later = classifier.classify(change('orders', { order_no: 'A', status: 'USED' }, { position: '9/9', committedAt: '2030-01-01T00:00:00Z' }), none);
    expect(later.kind === 'events' && later.events.map((e) => e.id)).toEqual(r.kind === 'events' && r.events.map((e) => e.id));
  });

  it('emits nothing when the ledger already has the order in that status (REPLICA IDENTITY DEFAULT)', () => {
    const r = classifier.classify(change('public.orders', { order_no: 'A', status: 'PAID', notes: 'x' }), () => ({ order_no: 'A', status: 'PAID' }));
    expect(r).toMatchObject({ kind: 'events', events: [], orderNo: 'A' });
  });

  it('gives a flapping status the same id again, so the ledger keeps one', () => {
    const first = classifier.classify(change('public.orders', { order_no: 'A', status: 'PAID' }), none);
    const again = classifier.classify(change('public.orders', { order_no: 'A', status: 'PAID' }), () => ({ order_no: 'A', status: 'CREATED' }));
    expect(first.kind === 'events' && first.events[0]!.id).toBe(again.kind === 'events' && again.events[0]!.id);
  });

  it('fills unchanged TOAST columns from the ledger row and never invents them', () => {
    const known = { order_no: 'A', status: 'CREATED', notes: 'long text' };
    const r = classifier.classify(change('public.orders', { order_no: 'A', status: 'PAID' }, { unknownColumns: ['notes'] }), () => known);
    expect(r.kind === 'events' && r.orderRow).toEqual({ order_no: 'A', status: 'PAID', notes: 'long text' });
    const unknown = classifier.classify(change('public.orders', { order_no: 'B', status: 'PAID' }, { unknownColumns: ['notes'] }), none);
    expect(unknown.kind === 'events' && unknown.orderRow).toEqual({ order_no: 'B', status: 'PAID' });
  });

  it('parks rows without an order number or status, naming the column', () => {
    expect(classifier.classify(change('public.orders', { order_no: null, status: 'PAID' }), none)).toEqual({
      kind: 'bad', reason: 'public.orders: order number column "order_no" is missing or empty',
    });
    expect(classifier.classify(change('public.orders', { order_no: 'A', status: ' ' }), none)).toMatchObject({ kind: 'bad', reason: expect.stringContaining('status column "status"') });
  });

  it('turns a successful refund row into the order\'s TRADE_SUCCESS and the refund, one id per refund', () => {
    const order = { order_no: 'A', status: 'PAID', buyer: 'x' };
    const r = classifier.classify(change('public.refunds', { refund_id: 'R1', order_no: 'A', status: 'SUCCESS' }), () => order);
    expect(r.kind === 'events' && r.events.map((e) => [e.code, e.id, e.refundId])).toEqual([
      ['TRADE_SUCCESS', eventId(['p1', 'A', 'TRADE_SUCCESS']), undefined],
      ['REFUND_SUCCESS', eventId(['p1', 'A', 'REFUND_SUCCESS', 'R1']), 'R1'],
    ]);
    expect(r.kind === 'events' && r.events[1]).toMatchObject({ order, refund: { refund_id: 'R1' } });
    expect(classifier.classify(change('public.refunds', { refund_id: 'R2', order_no: 'A', status: 'PENDING' }), () => order)).toEqual({ kind: 'ignored', unmapped: 'PENDING' });
  });

  it('with a refunds table, a REFUNDED status stands for the purchase only: the refund row is the refund', () => {
    const r = classifier.classify(change('public.orders', { order_no: 'A', status: 'REFUNDED' }), () => ({ order_no: 'A', status: 'PAID' }));
    expect(r.kind === 'events' && r.events.map((e) => e.code)).toEqual(['TRADE_SUCCESS']);
  });

  it('refuses a status listing REFUND_SUCCESS beside a refunds table, naming both keys', () => {
    const build = (statuses: Parameters<typeof orders>[0]) => () => createClassifier({ project: 'p1', orders: orders(statuses), refunds: refundsTable });
    expect(build({ PAID: ['TRADE_SUCCESS'], REFUNDED: ['TRADE_SUCCESS', 'REFUND_SUCCESS'] })).toThrow(
      /^orders\.statuses\.REFUNDED: lists REFUND_SUCCESS while refunds\.table is set \(refunds\)/,
    );
    expect(build({ CHARGEBACK: ['REFUND_SUCCESS'] })).toThrow(/orders\.statuses\.CHARGEBACK: lists REFUND_SUCCESS while refunds\.table is set/);
    expect(build({ PAID: ['TRADE_SUCCESS'], REFUNDED: ['TRADE_SUCCESS'] })).not.toThrow();
  });

  it('without a refunds table, the status is the refund: one REFUND_SUCCESS per order, built from the order row', () => {
    const byStatus = createClassifier({ project: 'p1', orders: orders({ PAID: ['TRADE_SUCCESS'], REFUNDED: ['TRADE_SUCCESS', 'REFUND_SUCCESS'] }) });
    const order = { order_no: 'A', status: 'REFUNDED', paid_amount: '80.00' };
    const r = byStatus.classify(change('public.orders', order), () => ({ order_no: 'A', status: 'PAID' }));
    expect(r.kind === 'events' && r.events.map((e) => [e.code, e.id, e.refundId])).toEqual([
      ['TRADE_SUCCESS', eventId(['p1', 'A', 'TRADE_SUCCESS']), undefined],
      ['REFUND_SUCCESS', eventId(['p1', 'A', 'REFUND_SUCCESS']), undefined],
    ]);
    // No refund row: the sinks read the refund's amounts from the order row (`order` columns).
    expect(r.kind === 'events' && r.events[1]).toMatchObject({ order });
    expect(r.kind === 'events' && r.events[1]).not.toHaveProperty('refund');
    // A refunds-table row is nobody's business then.
    expect(byStatus.classify(change('public.refunds', { refund_id: 'R1', order_no: 'A', status: 'SUCCESS' }), () => order)).toEqual({ kind: 'ignored' });
  });

  it('parks a refund of an order nobody knows', () => {
    expect(classifier.classify(change('public.refunds', { refund_id: 'R1', order_no: 'Z', status: 'SUCCESS' }), none)).toMatchObject({
      kind: 'bad', reason: expect.stringContaining('order Z is unknown'),
    });
  });

  it('ignores deletes, other tables and statuses without rules', () => {
    expect(classifier.classify(change('public.orders', null), none)).toEqual({ kind: 'ignored' });
    expect(classifier.classify(change('public.other', { order_no: 'A', status: 'PAID' }), none)).toEqual({ kind: 'ignored' });
    expect(classifier.classify(change('public.orders', { order_no: 'A', status: 'CANCELLED' }), none)).toMatchObject({ kind: 'events', events: [] });
  });

  it('makes VISIT events from visit records', () => {
    const r = classifier.classify(
      { ...change('visits', null), visit: { visitId: 'v1', page: 'SHARE_LANDING_PAGE', visitor: { type: 'PHONE', id: '13800138000' } } },
      none,
    );
    expect(r.kind === 'events' && r.events[0]).toMatchObject({ code: 'SHARE_LANDING_PAGE', kind: 'VISIT', id: eventId(['p1', 'VISIT', 'v1', 'SHARE_LANDING_PAGE']) });
  });
});

describe('classifier: identities that arrive as rounded JSON numbers', () => {
  it('refuses an order number or refund id beyond 2^53 instead of minting ids from lost digits', () => {
    // 12345678901234567993 parsed from JSON is already …568000: no id may be made from it.
    const big = JSON.parse('{"order_no": 12345678901234567993, "status": "PAID"}') as Row;
    const r = classifier.classify(change('public.orders', big), none);
    expect(r.kind).toBe('bad');
    expect(r.kind === 'bad' && r.reason).toMatch(/order_no.*beyond 2\^53.*as text/);
    const refund = JSON.parse('{"refund_id": 90071992547409931, "order_no": "A", "status": "SUCCESS"}') as Row;
    const rr = classifier.classify(change('refunds', refund), () => ({ order_no: 'A', status: 'PAID' }));
    expect(rr.kind === 'bad' && rr.reason).toMatch(/refund_id.*beyond 2\^53/);
    // A safe integer is an exact identity, as before.
    const ok = classifier.classify(change('public.orders', { order_no: 9007199254740991, status: 'PAID' }), none);
    expect(ok.kind === 'events' && ok.orderNo).toBe('9007199254740991');
  });
});
