import type { Row, BusinessEvent } from '../core/events.js';
import { storableText } from '../core/trust.js';
import type { AppendInput } from './ledger.js';

/** Joins the payloads of an append (see `sql.append`): JSON text never holds a raw U+001E. */
const RS = '\x1e';

/** An event's JSON, with its order row's text taken from `rowText` (the same document as JSON.stringify's, `order` last). */
function payloadText(event: BusinessEvent, rowText: (row: Row) => string): string {
  if (event.order === undefined) return JSON.stringify(event);
  const { order, ...rest } = event;
  const head = JSON.stringify(rest);
  return `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"order":${rowText(order)}}`;
}

/**
 * The append's parameters $1..$13 (see `sql.append`) for `input`, with `bits` the sinks' bits
 * of the log's mask; $2 (the seq before the batch) is a placeholder the caller fills under
 * the append lock. The connector's share of an ingested event's cost is mostly here.
 */
export function encodeAppend(input: AppendInput, bits: ReadonlyMap<string, number>): unknown[] {
  const n = input.events.length;
  // An order row is usually both an event's `order` and the batch's order row: written once.
  const texts = new Map<Row, string>();
  const rowText = (row: Row) => {
    let t = texts.get(row);
    if (t === undefined) texts.set(row, (t = JSON.stringify(row)));
    return t;
  };
  const ids = new Array<Buffer>(n), masks = new Array<number>(n), codes = new Array<string>(n), keys = new Array<string>(n);
  const times = new Array<string>(n), positions = new Array<string>(n), payloads = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const { event, sinks, position, committedAt } = input.events[i]!;
    ids[i] = Buffer.from(event.id, 'hex');
    let mask = 0;
    for (const name of sinks) mask |= 1 << bits.get(name)!;
    masks[i] = mask;
    codes[i] = event.code;
    keys[i] = event.orderKey;
    times[i] = committedAt;
    positions[i] = position;
    payloads[i] = payloadText(event, rowText);
  }
  return [
    input.source,
    0,
    ids,
    masks,
    codes,
    keys,
    times,
    positions,
    payloads.join(RS),
    input.orders.map((o) => o.orderNo),
    input.orders.map((o) => rowText(o.row)).join(RS),
    // A reason may quote a row's value: a NUL in it would make PostgreSQL refuse the whole append.
    JSON.stringify(input.bad.map((b) => ({ ...b, reason: storableText(b.reason) }))),
    JSON.stringify(input.checkpoints),
  ];
}
