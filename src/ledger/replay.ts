import type pg from 'pg';
import type { BusinessEvent, JsonValue } from '../core/events.js';

/**
 * What `order-relay replay` does to parked deliveries, as ledger statements: re-queue them
 * (with the payload re-rendered from the fixed source row, when the caller can render it),
 * skip them, and hold what waits behind a skipped one. Each call is one transaction; with
 * `dryRun` the very same statements run and are rolled back, so a dry run reports exactly
 * what the real run would do.
 *
 * Held deliveries. Skipping a parked delivery must not let the deliveries of the same order
 * waiting behind it (for that sink) go out ahead of it: a TRADE_CONFIRM or REFUND_SUCCESS
 * without its TRADE_SUCCESS is an order violation at the API. So a skip parks them too:
 * status `rejected`, last_code HELD, a message naming the skipped delivery. A parked
 * delivery is what the FIFO claim (and the append's hand-over) already waits behind, so
 * whatever the order stores later waits as well; `status` counts them as parked, with the
 * held ones apart. They come back with the delivery they are held behind (re-queued with
 * --include-skipped), when named by event id, or they are skipped with --skip-order.
 *
 * Refreshed payloads. The stored payload is what every sink is sent, and the claim reads it
 * from the event: re-rendering it changes what every sink sends from then on. So it is
 * re-rendered only when no sink is sending it at the time (a pending delivery with an
 * attempt behind it may have reached its API with the stored payload: its retries must
 * carry the same content). Sinks that delivered the event are never sent it again; their
 * delivery keeps the payload they were sent in its result (`sent_payload`), the others get
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

const COLUMNS = `d.id::text AS id, d.event_id, d.sink, d.order_key, e.code, e.order_no, d.status, d.attempts, d.last_code, d.last_message`;

function toRow(r: RawRow): DeliveryRow {
  return {
    id: r.id, eventId: r.event_id, sink: r.sink, orderKey: r.order_key, code: r.code, orderNo: r.order_no,
    status: r.status, attempts: r.attempts, lastCode: r.last_code, lastMessage: r.last_message,
  };
}

export function checkFilter(f: DeliveryFilter): void {
  if (!f.all && !f.eventIds?.length && !f.sink && !f.code) {
    throw new Error('say which parked deliveries: --event <id>, --sink <name>, --code <EVENT_CODE>, or --all');
  }
}

/** The ids among `ids` the ledger holds no event for. */
export async function unknownEvents(db: Pick<pg.Pool, 'query'>, schema: string, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<{ id: string }>(`SELECT id FROM ${schema}.events WHERE id = ANY($1::text[])`, [ids]);
  const known = new Set(rows.map((r) => r.id));
  return [...new Set(ids)].filter((i) => !known.has(i));
}

/** Per event, its deliveries' sinks and statuses (to say why nothing matched). */
export async function deliveryStates(db: Pick<pg.Pool, 'query'>, schema: string, ids: string[]): Promise<Map<string, Array<{ sink: string; status: string; lastCode: string | null }>>> {
  const out = new Map<string, Array<{ sink: string; status: string; lastCode: string | null }>>();
  if (ids.length === 0) return out;
  const { rows } = await db.query<{ event_id: string; sink: string; status: string; last_code: string | null }>(
    `SELECT event_id, sink, status, last_code FROM ${schema}.deliveries WHERE event_id = ANY($1::text[]) ORDER BY event_id, sink`,
    [ids],
  );
  for (const r of rows) out.set(r.event_id, [...(out.get(r.event_id) ?? []), { sink: r.sink, status: r.status, lastCode: r.last_code }]);
  return out;
}

/** Deliveries in `statuses` matching the filter; held ones only when named by event id. */
async function match(c: Client | pg.Pool, schema: string, f: DeliveryFilter, statuses: string[], lock: boolean): Promise<{ rows: DeliveryRow[]; heldLeft: DeliveryRow[] }> {
  const { rows } = await c.query<RawRow>(
    `SELECT ${COLUMNS}
       FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.id = d.event_id
      WHERE d.status = ANY($4::text[])
        AND ($1::text[] IS NULL OR d.event_id = ANY($1::text[]))
        AND ($2::text IS NULL OR d.sink = $2)
        AND ($3::text IS NULL OR e.code = $3)
      ORDER BY d.id${lock ? ' FOR UPDATE OF d' : ''}`,
    [f.eventIds?.length ? f.eventIds : null, f.sink ?? null, f.code ?? null, statuses],
  );
  const named = new Set(f.eventIds ?? []);
  const all = rows.map(toRow);
  const isHeld = (r: DeliveryRow) => r.status === 'rejected' && r.lastCode === HELD && !named.has(r.eventId);
  return { rows: all.filter((r) => !isHeld(r)), heldLeft: all.filter(isHeld) };
}

/** Parked (and, with `statuses`, skipped) deliveries the filter matches, read only. */
export async function matchDeliveries(pool: pg.Pool, schema: string, f: DeliveryFilter, statuses: string[] = ['rejected']): Promise<{ rows: DeliveryRow[]; heldLeft: DeliveryRow[] }> {
  return match(pool, schema, f, statuses, false);
}

/** The first matched delivery of each (sink, order), in delivery order. */
function heads(rows: DeliveryRow[]): DeliveryRow[] {
  const seen = new Map<string, DeliveryRow>();
  for (const r of rows) {
    const k = groupKey(r);
    const h = seen.get(k);
    if (!h || BigInt(r.id) < BigInt(h.id)) seen.set(k, r);
  }
  return [...seen.values()];
}

const groupKey = (r: Pick<DeliveryRow, 'sink' | 'orderKey'>) => `${r.sink}\u0000${r.orderKey}`;

/** Unfinished (pending or parked) deliveries of the same (sink, order) after each head, locked. */
async function behind(c: Client, schema: string, hs: DeliveryRow[], exclude: Set<string>): Promise<DeliveryRow[]> {
  if (hs.length === 0) return [];
  const { rows } = await c.query<RawRow>(
    `SELECT ${COLUMNS}
       FROM unnest($1::text[], $2::text[], $3::bigint[]) AS h(sink, order_key, id)
       JOIN ${schema}.deliveries d ON d.sink = h.sink AND d.order_key = h.order_key AND d.id > h.id AND d.status IN ('pending', 'rejected')
       JOIN ${schema}.events e ON e.id = d.event_id
      ORDER BY d.id
      FOR UPDATE OF d`,
    [hs.map((h) => h.sink), hs.map((h) => h.orderKey), hs.map((h) => h.id)],
  );
  return rows.map(toRow).filter((r) => !exclude.has(r.id));
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

export function heldMessage(ahead: DeliveryRow): string {
  return `held behind ${ahead.code} ${ahead.eventId} of order ${ahead.orderNo ?? ahead.orderKey}, skipped by replay --skip: `
    + 're-queue that one with --include-skipped (this one follows), name this one with --event to send it anyway, or --skip-order';
}

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
    const ids = new Set(matched.map((m) => m.id));
    const later = await behind(c, schema, heads(matched), ids);
    const outcomes: DeliveryOutcome[] = [];
    const skip: string[] = [];
    const hold: Array<{ id: string; message: string }> = [];
    const withOrder: Array<{ id: string; message: string }> = [];
    if (!options.wholeOrder) {
      for (const m of matched) {
        outcomes.push({ ...m, role: 'matched', action: 'skipped' });
        skip.push(m.id);
      }
      for (const l of later) {
        const ahead = aheadOf(l, matched)!;
        if (l.status === 'pending') {
          const message = heldMessage(ahead);
          outcomes.push({ ...l, role: 'behind', behind: ahead.eventId, action: 'held' });
          hold.push({ id: l.id, message });
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
            skip.push(m.id);
          } else outcomes.push({ ...m, role: 'matched', action: 'already skipped' });
        }
        if (!acts) continue;
        for (const l of g.later) {
          const ahead = aheadOf(l, g.matched)!;
          outcomes.push({ ...l, role: 'behind', behind: ahead.eventId, action: 'skipped with order' });
          withOrder.push({ id: l.id, message: `skipped with the rest of order ${ahead.orderNo ?? ahead.orderKey} behind ${ahead.code} ${ahead.eventId} (replay --skip-order)` });
        }
      }
    }
    let changed = 0;
    if (skip.length) {
      const r = await c.query(
        `UPDATE ${schema}.deliveries SET status = 'skipped', lease_until = NULL, updated_at = now() WHERE id = ANY($1::bigint[]) AND status = 'rejected'`,
        [skip],
      );
      changed += r.rowCount ?? 0;
    }
    if (hold.length) {
      const r = await c.query(
        `UPDATE ${schema}.deliveries d SET status = 'rejected', last_code = '${HELD}', last_message = x.message, lease_until = NULL, updated_at = now()
           FROM unnest($1::bigint[], $2::text[]) AS x(id, message)
          WHERE d.id = x.id AND d.status = 'pending'`,
        [hold.map((h) => h.id), hold.map((h) => h.message)],
      );
      changed += r.rowCount ?? 0;
    }
    if (withOrder.length) {
      // Their own reason (a remote code) is kept; a held or never-tried one says why it was skipped.
      const r = await c.query(
        `UPDATE ${schema}.deliveries d SET status = 'skipped', lease_until = NULL, updated_at = now(),
                last_code = CASE WHEN d.last_code IS NULL OR d.last_code = '${HELD}' OR d.status = 'pending' THEN '${SKIPPED_WITH_ORDER}' ELSE d.last_code END,
                last_message = CASE WHEN d.last_code IS NULL OR d.last_code = '${HELD}' OR d.status = 'pending' THEN x.message ELSE d.last_message END
           FROM unnest($1::bigint[], $2::text[]) AS x(id, message)
          WHERE d.id = x.id AND d.status IN ('pending', 'rejected')`,
        [withOrder.map((h) => h.id), withOrder.map((h) => h.message)],
      );
      changed += r.rowCount ?? 0;
    }
    return { outcomes: sortById(outcomes), heldLeft, changed: options.dryRun ? 0 : changed };
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
    const ids = new Set(matched.map((m) => m.id));
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
    const later = (await behind(c, schema, heads(requeued), ids)).filter(
      (l) => (l.status === 'rejected' && l.lastCode === HELD) || (l.status === 'pending' && l.attempts === 0),
    );
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
    if (requeued.length) {
      const r = await c.query(
        `UPDATE ${schema}.deliveries d SET status = 'pending', next_attempt_at = now(), lease_until = NULL, updated_at = now(),
                last_code = CASE WHEN d.last_code = '${HELD}' THEN NULL ELSE d.last_code END,
                last_message = CASE WHEN d.last_code = '${HELD}' THEN NULL ELSE d.last_message END
          WHERE d.id = ANY($1::bigint[]) AND d.status IN ('rejected', 'skipped')`,
        [requeued.map((r) => r.id)],
      );
      changed = r.rowCount ?? 0;
    }
    return { outcomes: sortById(outcomes), heldLeft, changed: options.dryRun ? 0 : changed };
  });
}

/**
 * Re-renders the stored payloads of these deliveries' events (those without a note yet) and
 * stores the changed ones; adds a note per event id to `notes` and returns it. Runs in the caller's transaction, with the events and all
 * their deliveries locked: a claim skips locked deliveries, so none can start with the old
 * payload while this decides.
 */
async function refreshPayloads(c: Client, schema: string, rows: DeliveryRow[], render: Renderer, notes: Map<string, PayloadNote>): Promise<Map<string, PayloadNote>> {
  const eventIds = [...new Set(rows.map((r) => r.eventId))].filter((id) => !notes.has(id));
  if (eventIds.length === 0) return notes;
  const { rows: events } = await c.query<{ id: string; code: string; kind: string; order_no: string | null; refund_id: string | null; payload: BusinessEvent }>(
    `SELECT id, code, kind, order_no, refund_id, payload FROM ${schema}.events WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`,
    [eventIds],
  );
  const { rows: all } = await c.query<{ event_id: string; sink: string; status: string; attempts: number; leased: boolean }>(
    `SELECT event_id, sink, status, attempts, coalesce(lease_until > now(), false) AS leased
       FROM ${schema}.deliveries WHERE event_id = ANY($1::text[]) ORDER BY id FOR UPDATE`,
    [eventIds],
  );
  const stored: StoredEvent[] = events.map((e) => ({ id: e.id, code: e.code, kind: e.kind, orderNo: e.order_no, refundId: e.refund_id, payload: e.payload }));
  const rendered = await render(stored);
  const updates: Array<{ id: string; payload: BusinessEvent; old: BusinessEvent }> = [];
  for (const e of stored) {
    const ds = all.filter((d) => d.event_id === e.id);
    const busy = ds.find((d) => d.status === 'pending' && (d.attempts > 0 || d.leased));
    const deliveredTo = ds.filter((d) => d.status === 'delivered').map((d) => d.sink);
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
    await c.query(
      `UPDATE ${schema}.events e SET payload = x.payload::json, occurred_at = x.occurred_at::timestamptz
         FROM unnest($1::text[], $2::text[], $3::text[]) AS x(id, payload, occurred_at)
        WHERE e.id = x.id`,
      [updates.map((u) => u.id), updates.map((u) => JSON.stringify(u.payload)), updates.map((u) => u.payload.occurredAt)],
    );
    // A delivered sink's record keeps what it was sent (the first version, if refreshed twice).
    await c.query(
      `UPDATE ${schema}.deliveries d SET result = coalesce(d.result, '{}'::jsonb) || jsonb_build_object('sent_payload', x.old::jsonb), updated_at = now()
         FROM unnest($1::text[], $2::text[]) AS x(id, old)
        WHERE d.event_id = x.id AND d.status = 'delivered' AND NOT (coalesce(d.result, '{}'::jsonb) ? 'sent_payload')`,
      [updates.map((u) => u.id), updates.map((u) => JSON.stringify(u.old))],
    );
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

function sortById(outcomes: DeliveryOutcome[]): DeliveryOutcome[] {
  return outcomes.sort((x, y) => (BigInt(x.id) < BigInt(y.id) ? -1 : BigInt(x.id) > BigInt(y.id) ? 1 : 0));
}
