import type pg from 'pg';
import type { BusinessEvent, JsonValue } from '../core/events.js';
import * as q from './replay-sql.js';

/**
 * What `order-relay replay` does to parked deliveries, as ledger statements (`replay-sql.ts`):
 * re-queue them (with the payload re-rendered from the fixed source row, when the caller can
 * render it), skip them, and hold what waits behind a skipped one. Each call is one
 * transaction; with `dryRun` the very same statements run and are rolled back, so a dry run
 * reports exactly what the real run would do.
 *
 * The deliveries acted on are rows of `deliveries` (schema version 3 keeps only the
 * exceptions as rows: retrying, parked, skipped, and what waits behind those), each with its
 * own code, order number and payload; a row's `id` is its event's seq, so FIFO per (sink,
 * order) is `id` order. What waits behind a parked row may also be an event its sink has not
 * read yet (past the sink's cursor, no row): when the dispatcher reads it, it makes it a row
 * behind the open one. Replay makes that row itself, as the dispatcher would, so that what it
 * decides (held, skipped with the order, waiting with a refreshed payload) holds for it too.
 * It does so only behind a row that is parked (open) now: then no event of the order after it
 * has been sent, or is being sent, from the log.
 *
 * Held deliveries. Skipping a parked delivery must not let the deliveries of the same order
 * waiting behind it (for that sink) go out ahead of it: a TRADE_CONFIRM or REFUND_SUCCESS
 * without its TRADE_SUCCESS is an order violation at the API. So a skip parks them too:
 * status `rejected`, last_code HELD, a message naming the skipped delivery. A parked
 * delivery is what the FIFO claim (and the log reader, and the append's hand-over) already
 * wait behind, so whatever the order stores later waits as well; `status` counts them as
 * parked, with the held ones apart. They come back with the delivery they are held behind
 * (re-queued with --include-skipped), when named by event id, or they are skipped with
 * --skip-order. (A skipped row with nothing held behind it blocks nothing: an event of its
 * order stored later is sent. Holding those needs the dispatcher to treat a skipped row of
 * the order as blocking; see the report of the replay port.)
 *
 * Refreshed payloads. Every copy of the payload a sink may still send is re-rendered: the
 * event's open rows (pending, parked, skipped) and the log row, which the sinks that have not
 * reached the event yet will read. It is re-rendered only when no sink is sending it at the
 * time (a pending row with an attempt behind it may have reached its API with the stored
 * payload: its retries must carry the same content). Sinks that delivered the event are never
 * sent it again; they keep the payload they were sent as `sent_payload` in their result (the
 * outcome's, for an event delivered from the log; the row's, for a row), and the others get
 * the refreshed one under the same event id, so the same idempotency key.
 */

/** last_code of a delivery held behind a skipped delivery of the same order (status stays `rejected`). */
export const HELD = 'HELD';
/** last_code of a delivery skipped by --skip-order because an earlier one of its order was. */
export const SKIPPED_WITH_ORDER = 'SKIPPED_WITH_ORDER';

export interface DeliveryFilter {
  eventIds?: string[];
  sink?: string;
  code?: string;
  all?: boolean;
}

export interface DeliveryRow {
  id: string;
  eventId: string;
  sink: string;
  orderKey: string;
  code: string;
  orderNo: string | null;
  status: string;
  attempts: number;
  lastCode: string | null;
  lastMessage: string | null;
}

/** An event as stored, for the caller to re-render. */
export interface StoredEvent {
  id: string;
  code: string;
  kind: string;
  orderNo: string | null;
  refundId: string | null;
  payload: BusinessEvent;
}

/** How the caller re-rendered a stored event from its source row. */
export type Rendering =
  /** From the current source row, through the classifier: same id. `from` names the row. */
  | { kind: 'rendered'; event: BusinessEvent; from: string }
  /** The event has no source row to re-read (a Kafka visit, no source table): sent as stored. */
  | { kind: 'no-source'; why: string }
  /** The source row no longer yields this event (gone, does not classify, other status). */
  | { kind: 'failed'; why: string };

export type Renderer = (events: StoredEvent[]) => Promise<Map<string, Rendering>>;

export interface PayloadNote {
  /** refreshed: re-rendered and changed; unchanged: re-rendered, identical; as-stored: not re-read; kept: could not re-read. */
  result: 'refreshed' | 'unchanged' | 'as-stored' | 'kept';
  detail: string;
  fields?: string[];
  /** For `kept`: what the operator can do about it. */
  hint?: string;
  /** Sinks that delivered the stored version (they keep it as `sent_payload`, and are not sent it again). */
  deliveredTo?: string[];
}

export type DeliveryAction =
  /** Set pending: goes out at the next claim, same event id, same idempotency key. */
  | 're-queued'
  /** Matched, but its payload could not be re-read from the source: left as it was. */
  | 'left parked'
  /** Pending behind a re-queued delivery of the same order (its payload re-read with it). */
  | 'waiting'
  | 'skipped'
  /** Parked behind the skipped delivery ahead of it (last_code HELD). */
  | 'held'
  /** Skipped because an earlier delivery of its order was (--skip-order). */
  | 'skipped with order'
  /** Behind a skipped delivery, parked already with its own reason: left as it is. */
  | 'already parked'
  /** --skip-order of a delivery skipped earlier with nothing held behind it: nothing to do. */
  | 'already skipped';

export interface DeliveryOutcome extends DeliveryRow {
  action: DeliveryAction;
  /** matched: by the filter; behind: a later delivery of the same (sink, order), acted on with it. */
  role: 'matched' | 'behind';
  /** For `behind`: the event id of the matched delivery it is behind. */
  behind?: string;
  payload?: PayloadNote;
}

export interface ActionResult {
  outcomes: DeliveryOutcome[];
  /** Held deliveries the filter matched but did not name: left as they are (see HELD). */
  heldLeft: DeliveryRow[];
  /** Deliveries whose status changed (0 for a dry run). */
  changed: number;
}

type Client = pg.PoolClient;
type Db = Pick<pg.Pool, 'query'>;

interface RawRow {
  id: string;
  event_id: string;
  sink: string;
  order_key: string;
  code: string;
  order_no: string | null;
  status: string;
  attempts: number;
  last_code: string | null;
  last_message: string | null;
}

function toRow(r: RawRow): DeliveryRow {
  return {
    id: r.id, eventId: r.event_id, sink: r.sink, orderKey: r.order_key, code: r.code, orderNo: r.order_no,
    status: r.status, attempts: r.attempts, lastCode: r.last_code, lastMessage: r.last_message,
  };
}

/** What a held delivery's message tells the operator to do (see `heldMessage`). */
export const HELD_ADVICE = 're-queue that one with --include-skipped (this one follows), name this one with --event to send it anyway, or --skip-order';

/** Event ids are 32 lowercase hex characters (`core/ids.ts`); anything else names no event. */
const EVENT_ID = /^[0-9a-f]{32}$/;

/** A row is one (event, sink): its `id` (the event's seq) is shared by the event's rows at every sink. */
const rowKey = (r: Pick<DeliveryRow, 'sink' | 'eventId'>) => `${r.sink}\u0000${r.eventId}`;
const groupKey = (r: Pick<DeliveryRow, 'sink' | 'orderKey'>) => `${r.sink}\u0000${r.orderKey}`;
const byFifo = (x: Pick<DeliveryRow, 'id' | 'sink'>, y: Pick<DeliveryRow, 'id' | 'sink'>) => {
  const a = BigInt(x.id), b = BigInt(y.id);
  return a < b ? -1 : a > b ? 1 : x.sink < y.sink ? -1 : x.sink > y.sink ? 1 : 0;
};

export function checkFilter(f: DeliveryFilter): void {
  if (!f.all && !f.eventIds?.length && !f.sink && !f.code) {
    throw new Error('say which parked deliveries: --event <id>, --sink <name>, --code <EVENT_CODE>, or --all');
  }
}

/** The ids among `ids` the ledger holds no event for (`event_ids` keeps them far longer than the payloads). */
export async function unknownEvents(db: Db, schema: string, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const unique = [...new Set(ids)];
  const wellFormed = unique.filter((i) => EVENT_ID.test(i));
  const known = new Set(wellFormed.length ? (await db.query<{ id: string }>(q.knownEvents(schema), [wellFormed])).rows.map((r) => r.id) : []);
  return unique.filter((i) => !known.has(i));
}

/**
 * Per event, its sinks and statuses (to say why nothing matched): a row's status, else the
 * outcome its sink's cursor wrote (delivered, not applicable), else `pending` while the event
 * is past the sink's cursor.
 */
export async function deliveryStates(db: Db, schema: string, ids: string[]): Promise<Map<string, Array<{ sink: string; status: string; lastCode: string | null }>>> {
  const out = new Map<string, Array<{ sink: string; status: string; lastCode: string | null }>>();
  const wellFormed = [...new Set(ids)].filter((i) => EVENT_ID.test(i));
  if (wellFormed.length === 0) return out;
  const { rows } = await db.query<{ event_id: string; sink: string; row_status: string | null; last_code: string | null; outcome: string | null; unsettled: boolean }>(
    q.eventStates(schema),
    [wellFormed],
  );
  for (const r of rows) {
    const status = r.row_status ?? r.outcome ?? (r.unsettled ? 'pending' : null);
    if (status === null) continue;
    out.set(r.event_id, [...(out.get(r.event_id) ?? []), { sink: r.sink, status, lastCode: r.row_status ? r.last_code : null }]);
  }
  return out;
}

/** Deliveries in `statuses` matching the filter; held ones only when named by event id. */
async function match(c: Client | pg.Pool, schema: string, f: DeliveryFilter, statuses: string[], lock: boolean): Promise<{ rows: DeliveryRow[]; heldLeft: DeliveryRow[] }> {
  const { rows } = await c.query<RawRow>(q.matchRows(schema, lock), [f.eventIds?.length ? f.eventIds : null, f.sink ?? null, f.code ?? null, statuses]);
  const named = new Set(f.eventIds ?? []);
  const all = rows.map(toRow);
  const isHeld = (r: DeliveryRow) => r.status === 'rejected' && r.lastCode === HELD && !named.has(r.eventId);
  return { rows: all.filter((r) => !isHeld(r)), heldLeft: all.filter(isHeld) };
}

/** Parked (and, with `statuses`, skipped) deliveries the filter matches, read only. */
export async function matchDeliveries(pool: pg.Pool, schema: string, f: DeliveryFilter, statuses: string[] = ['rejected']): Promise<{ rows: DeliveryRow[]; heldLeft: DeliveryRow[] }> {
  return match(pool, schema, f, statuses, false);
}

/** The first of each (sink, order), in delivery order. */
function heads(rows: DeliveryRow[]): DeliveryRow[] {
  const seen = new Map<string, DeliveryRow>();
  for (const r of rows) {
    const k = groupKey(r);
    const h = seen.get(k);
    if (!h || BigInt(r.id) < BigInt(h.id)) seen.set(k, r);
  }
  return [...seen.values()];
}

const headParams = (hs: DeliveryRow[]) => [hs.map((h) => h.sink), hs.map((h) => h.orderKey), hs.map((h) => h.id)];

/**
 * What waits behind the first of `rows` in each (sink, order), in FIFO order: its open
 * (pending or parked) rows, locked. Behind the first of them that is parked now, the events its sink has not read
 * yet (past its cursor, no row) are made rows first, pending, as the dispatcher makes them
 * when it reads them (its own insert then finds the row and leaves it): what the caller
 * decides for them then holds when the dispatcher gets to them. A row the dispatcher wrote
 * meanwhile is taken as it is.
 */
async function behind(c: Client, schema: string, rows: DeliveryRow[], exclude: Set<string>): Promise<DeliveryRow[]> {
  if (rows.length === 0) return [];
  const hs = heads(rows);
  const parked = heads(rows.filter((r) => r.status === 'rejected'));
  const unread = parked.length ? (await c.query<{ seq: string; sink: string }>(q.unreadBehind(schema), headParams(parked))).rows : [];
  if (unread.length) await c.query(q.insertRowsFromLog(schema), [unread.map((u) => u.seq), unread.map((u) => u.sink)]);
  return (await c.query<RawRow>(q.openRowsBehind(schema), headParams(hs))).rows.map(toRow).filter((r) => !exclude.has(rowKey(r)));
}

/** The matched delivery of the same (sink, order) closest before `r`. */
function aheadOf(r: DeliveryRow, matched: DeliveryRow[]): DeliveryRow | undefined {
  let best: DeliveryRow | undefined;
  for (const m of matched) {
    if (groupKey(m) !== groupKey(r) || BigInt(m.id) >= BigInt(r.id)) continue;
    if (!best || BigInt(m.id) > BigInt(best.id)) best = m;
  }
  return best;
}

async function transaction<T>(pool: pg.Pool, dryRun: boolean, work: (c: Client) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query(dryRun ? 'ROLLBACK' : 'COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

export function heldMessage(ahead: Pick<DeliveryRow, 'code' | 'eventId' | 'orderNo' | 'orderKey'>): string {
  return `held behind ${ahead.code} ${ahead.eventId} of order ${ahead.orderNo ?? ahead.orderKey}, skipped by replay --skip: ${HELD_ADVICE}`;
}

const keyed = (list: DeliveryRow[]) => [list.map((r) => r.eventId), list.map((r) => r.sink)];

/**
 * Skips parked deliveries. Without `wholeOrder`, the pending deliveries of the same order
 * waiting behind a skipped one (for that sink) are held (see HELD); those parked with a
 * reason of their own stay as they are. With `wholeOrder`, everything unfinished behind it
 * is skipped too; a delivery skipped earlier can be named to skip what is held behind it.
 */
export async function skipParked(pool: pg.Pool, schema: string, f: DeliveryFilter, options: { wholeOrder?: boolean; dryRun?: boolean } = {}): Promise<ActionResult> {
  checkFilter(f);
  return transaction(pool, !!options.dryRun, async (c) => {
    const { rows: matched, heldLeft } = await match(c, schema, f, options.wholeOrder ? ['rejected', 'skipped'] : ['rejected'], true);
    const later = await behind(c, schema, matched, new Set(matched.map(rowKey)));
    const outcomes: DeliveryOutcome[] = [];
    const skip: DeliveryRow[] = [];
    const hold: Array<{ row: DeliveryRow; message: string }> = [];
    const withOrder: Array<{ row: DeliveryRow; message: string }> = [];
    if (!options.wholeOrder) {
      for (const m of matched) {
        outcomes.push({ ...m, role: 'matched', action: 'skipped' });
        skip.push(m);
      }
      for (const l of later) {
        const ahead = aheadOf(l, matched)!;
        if (l.status === 'pending') {
          outcomes.push({ ...l, role: 'behind', behind: ahead.eventId, action: 'held' });
          hold.push({ row: l, message: heldMessage(ahead) });
        } else outcomes.push({ ...l, role: 'behind', behind: ahead.eventId, action: 'already parked' });
      }
    } else {
      // Per (sink, order): a parked delivery skips with everything after it; one skipped
      // earlier takes along what is held behind it (and what waits behind those).
      const groups = new Map<string, { matched: DeliveryRow[]; later: DeliveryRow[] }>();
      for (const m of matched) (groups.get(groupKey(m)) ?? groups.set(groupKey(m), { matched: [], later: [] }).get(groupKey(m))!).matched.push(m);
      for (const l of later) groups.get(groupKey(l))!.later.push(l);
      for (const g of groups.values()) {
        const acts = g.matched.some((m) => m.status === 'rejected') || g.later.some((l) => l.status === 'rejected' && l.lastCode === HELD);
        for (const m of g.matched) {
          if (m.status === 'rejected') {
            outcomes.push({ ...m, role: 'matched', action: 'skipped' });
            skip.push(m);
          } else outcomes.push({ ...m, role: 'matched', action: 'already skipped' });
        }
        if (!acts) continue;
        for (const l of g.later) {
          const ahead = aheadOf(l, g.matched)!;
          outcomes.push({ ...l, role: 'behind', behind: ahead.eventId, action: 'skipped with order' });
          withOrder.push({ row: l, message: `skipped with the rest of order ${ahead.orderNo ?? ahead.orderKey} behind ${ahead.code} ${ahead.eventId} (replay --skip-order)` });
        }
      }
    }
    let changed = 0;
    if (skip.length) changed += (await c.query(q.skipRows(schema), keyed(skip))).rowCount ?? 0;
    if (hold.length) changed += (await c.query(q.holdRows(schema, HELD), [...keyed(hold.map((h) => h.row)), hold.map((h) => h.message)])).rowCount ?? 0;
    if (withOrder.length) {
      changed += (await c.query(q.skipRowsWithOrder(schema, HELD, SKIPPED_WITH_ORDER), [...keyed(withOrder.map((h) => h.row)), withOrder.map((h) => h.message)])).rowCount ?? 0;
    }
    return { outcomes: outcomes.sort(byFifo), heldLeft, changed: options.dryRun ? 0 : changed };
  });
}

/**
 * Re-queues parked deliveries (with `includeSkipped`, skipped ones too): the same delivery
 * row, so the same event id and idempotency key. Deliveries held behind a re-queued one
 * come back with it, behind it. With `render`, the payloads of the re-queued deliveries'
 * events, and of the never-tried deliveries of the same order waiting behind them, are
 * re-rendered from their source rows first (see the file comment for when they are not);
 * a matched delivery whose payload cannot be re-read is left parked, with the reason, and
 * so is everything behind it.
 */
export async function requeueParked(
  pool: pg.Pool,
  schema: string,
  f: DeliveryFilter,
  options: { includeSkipped?: boolean; render?: Renderer; dryRun?: boolean } = {},
): Promise<ActionResult> {
  checkFilter(f);
  return transaction(pool, !!options.dryRun, async (c) => {
    const { rows: matched, heldLeft } = await match(c, schema, f, options.includeSkipped ? ['rejected', 'skipped'] : ['rejected'], true);
    // Held deliveries come back with the one ahead of them; never-tried pending ones wait
    // behind it and share its data fix.
    const notes = options.render ? await refreshPayloads(c, schema, matched, options.render, new Map()) : new Map<string, PayloadNote>();
    const asStored: PayloadNote = { result: 'as-stored', detail: 're-sent as stored (--no-refresh)' };
    const outcomes: DeliveryOutcome[] = [];
    const requeued: DeliveryRow[] = [];
    for (const m of matched) {
      const note = notes.get(m.eventId) ?? asStored;
      const action = note.result === 'kept' ? 'left parked' : 're-queued';
      const payload = note.result === 'kept' ? { ...note, detail: `${note.detail}; left parked: ${note.hint}` } : note;
      outcomes.push({ ...m, role: 'matched', action, payload });
      if (action === 're-queued') requeued.push(m);
    }
    // Behind what is re-queued (not behind what is left parked: nothing changes for those).
    const later = (await behind(c, schema, requeued, new Set(matched.map(rowKey)))).filter((l) => (l.status === 'rejected' && l.lastCode === HELD) || (l.status === 'pending' && l.attempts === 0));
    if (options.render) await refreshPayloads(c, schema, later, options.render, notes);
    for (const l of later) {
      const ahead = aheadOf(l, requeued)!;
      const note = notes.get(l.eventId) ?? asStored;
      const payload = note.result === 'kept'
        ? { ...note, detail: `${note.detail}; goes out as stored` }
        : note === asStored && l.status === 'pending' ? { ...note, detail: 'goes out as stored after it (--no-refresh)' } : note;
      if (l.status === 'rejected') {
        outcomes.push({ ...l, role: 'behind', behind: ahead.eventId, action: 're-queued', payload });
        requeued.push(l);
      } else outcomes.push({ ...l, role: 'behind', behind: ahead.eventId, action: 'waiting', payload });
    }
    let changed = 0;
    if (requeued.length) changed = (await c.query(q.requeueRows(schema, HELD), keyed(requeued))).rowCount ?? 0;
    return { outcomes: outcomes.sort(byFifo), heldLeft, changed: options.dryRun ? 0 : changed };
  });
}

/**
 * Re-renders the stored payloads of these deliveries' events (those without a note yet) and
 * stores the changed ones; adds a note per event id to `notes` and returns it. Runs in the
 * caller's transaction, with the events' log rows and all their delivery rows locked: a claim
 * skips locked rows, so none can start with the old payload while this decides.
 */
async function refreshPayloads(c: Client, schema: string, rows: DeliveryRow[], render: Renderer, notes: Map<string, PayloadNote>): Promise<Map<string, PayloadNote>> {
  const eventIds = [...new Set(rows.map((r) => r.eventId))].filter((id) => !notes.has(id));
  if (eventIds.length === 0) return notes;
  const { rows: logRows } = await c.query<{ id: string; seq: string; code: string; payload: BusinessEvent }>(q.lockLogEvents(schema), [eventIds]);
  const { rows: all } = await c.query<{ event_id: string; sink: string; status: string; attempts: number; code: string | null; order_no: string | null; payload: BusinessEvent | null; leased: boolean }>(
    q.lockEventRows(schema),
    [eventIds],
  );
  const { rows: fromLog } = await c.query<{ event_id: string; sink: string }>(q.deliveredOutcomes(schema), [eventIds]);
  const logOf = new Map(logRows.map((l) => [l.id, l]));
  const stored: StoredEvent[] = [];
  for (const id of eventIds) {
    // What the deliveries acted on would send: their own copy, else (not a row yet) the log's.
    const sinks = new Set(rows.filter((r) => r.eventId === id).map((r) => r.sink));
    const own = all.find((d) => d.event_id === id && sinks.has(d.sink) && d.payload !== null);
    const payload = own?.payload ?? logOf.get(id)?.payload;
    if (!payload) {
      notes.set(id, { result: 'kept', detail: 'cannot re-read: the ledger no longer holds its payload', hint: 'skip it, or --no-refresh to re-send as stored' });
      continue;
    }
    const code = logOf.get(id)?.code ?? own?.code ?? payload.code;
    stored.push({ id, code, kind: payload.kind, orderNo: payload.orderNo ?? own?.order_no ?? null, refundId: payload.refundId ?? null, payload });
  }
  const rendered = stored.length ? await render(stored) : new Map<string, Rendering>();
  const updates: Array<{ id: string; payload: BusinessEvent; old: BusinessEvent }> = [];
  for (const e of stored) {
    const ds = all.filter((d) => d.event_id === e.id);
    const busy = ds.find((d) => d.status === 'pending' && (d.attempts > 0 || d.leased));
    const deliveredTo = [...new Set([...ds.filter((d) => d.status === 'delivered').map((d) => d.sink), ...fromLog.filter((o) => o.event_id === e.id).map((o) => o.sink)])].sort();
    const r = rendered.get(e.id) ?? { kind: 'failed' as const, why: 'not re-rendered' };
    if (r.kind === 'no-source') {
      notes.set(e.id, { result: 'as-stored', detail: `re-sent as stored: ${r.why}` });
    } else if (busy) {
      notes.set(e.id, {
        result: 'kept',
        detail: `not re-read: ${busy.sink} is sending it with the stored payload (attempt ${Math.max(busy.attempts, 1)}), and its retries must carry the same content`,
        hint: 'replay again once that settles, or --no-refresh to re-send as stored',
      });
    } else if (r.kind === 'failed') {
      notes.set(e.id, { result: 'kept', detail: `cannot re-read: ${r.why}`, hint: 'fix the row, or --no-refresh to re-send as stored' });
    } else {
      const fields = changedFields(e.payload as unknown as JsonValue, r.event as unknown as JsonValue);
      if (fields.length === 0) {
        notes.set(e.id, { result: 'unchanged', detail: `re-read from source (${r.from}): no field changed; re-sent as stored` });
      } else {
        const kept = deliveredTo.length ? `; ${deliveredTo.join(', ')} delivered the stored version and keeps it (sent_payload), not sent again` : '';
        notes.set(e.id, {
          result: 'refreshed',
          detail: `re-read from source (${r.from}): fields changed: ${fields.join(', ')}${kept}`,
          fields,
          ...(deliveredTo.length ? { deliveredTo } : {}),
        });
        updates.push({ id: e.id, payload: r.event, old: e.payload });
      }
    }
  }
  if (updates.length) {
    const inLog = updates.filter((u) => logOf.has(u.id));
    const json = (v: unknown) => JSON.stringify(v);
    // What delivered it keeps what it was sent: a row its own copy, an outcome the log's.
    await c.query(q.keepSentPayloadOfRows(schema), [updates.map((u) => u.id), updates.map((u) => json(u.old))]);
    if (inLog.length) {
      await c.query(q.keepSentPayloadOfOutcomes(schema), [inLog.map((u) => logOf.get(u.id)!.seq), inLog.map((u) => json(logOf.get(u.id)!.payload))]);
      await c.query(q.refreshLog(schema), [inLog.map((u) => logOf.get(u.id)!.seq), inLog.map((u) => json(u.payload))]);
    }
    await c.query(q.refreshOpenRows(schema), [updates.map((u) => u.id), updates.map((u) => json(u.payload))]);
  }
  return notes;
}

/** Paths (a.b.c) whose values differ between two JSON values; key order does not matter. */
export function changedFields(a: JsonValue | undefined, b: JsonValue | undefined, path = ''): string[] {
  const isObject = (v: JsonValue | undefined): v is { [k: string]: JsonValue } => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => changedFields(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path || '(whole payload)'];
}

// ---- parked source input (replay --inputs) ----

export interface ParkedInputRow {
  id: string;
  stream: string;
  reason: string;
  raw: string;
}

/** Unresolved parked inputs: those with these ids, or all. */
export async function unresolvedInputs(db: Db, schema: string, ids?: string[]): Promise<ParkedInputRow[]> {
  return (await db.query<ParkedInputRow>(q.unresolvedInputs(schema), [ids?.length ? ids : null])).rows;
}

/** Marks parked inputs resolved (`db` may be the client of the transaction that stored their events). */
export async function resolveInputs(db: Db, schema: string, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return (await db.query(q.resolveInputs(schema), [ids])).rowCount ?? 0;
}
