import type { BusinessEvent, Row } from '../core/events.js';
import type { Sink } from '../core/sink.js';
import type { BadInput, SourceBatch, SourceChange } from '../core/source.js';
import { qualify, type Classifier } from '../classify/classifier.js';
import type { AppendResult, EventToStore, Ledger } from '../ledger/ledger.js';

export interface IngestDeps {
  sourceId: string;
  ledger: Ledger;
  classifier: Classifier;
  sinks: readonly Sink[];
  /**
   * Reads current order rows straight from the source table: the order of a refund the ledger
   * has never seen (an order older than the connector), and the columns an update left out
   * as unchanged TOAST when neither the ledger nor the batch knows them. Optional: Kafka
   * sources have no table to read.
   */
  fetchOrders?: (orderNos: string[]) => Promise<Map<string, Row>>;
  /** Sinks whose dispatcher takes new events straight from the append now (see `AppendInput.handOver`). */
  handOver?: () => string[];
}

export interface IngestResult extends AppendResult {
  events: number;
  bad: number;
  /**
   * Events the classifier produced, per code, repeats included (a repeat is dropped by its
   * id, here or by the ledger): the same count whichever way changes fall into batches.
   */
  codes: Record<string, number>;
  /**
   * Changes whose status no mapping lists (`Classification.unmapped`), per table and status
   * value: they yielded no events for that reason alone.
   */
  unmapped: Array<{ source: string; table: string; status: string; n: number }>;
}

/**
 * Turns one source batch into ledger rows: classify every change, fan each new event out to
 * the sinks that take it, and store events, deliveries, order rows, parked input and the
 * checkpoint in one statement. Bad input is parked, never thrown: one bad row must not
 * stop the stream.
 */
export function createIngest(deps: IngestDeps) {
  const { classifier, ledger } = deps;
  // A source may hand over the next batch while the previous one is still being written, so
  // that classifying and serialising overlap the ledger write. Preparations run one after
  // another and writes strictly in call order; a write waits for the one before and fails
  // with it (a later batch must never commit past an earlier one that did not). The order
  // rows of prepared batches not yet committed are taken from here, not from the ledger.
  let preparing: Promise<unknown> = Promise.resolve();
  let writing: Promise<unknown> = Promise.resolve();
  const uncommitted = new Map<string, Row>();

  return async function ingest(batch: SourceBatch): Promise<IngestResult> {
    const prepared = preparing.then(() => prepare(batch));
    preparing = prepared.catch(() => {});
    const written = Promise.all([writing, prepared]).then(([, p]) => p.write());
    writing = written;
    try {
      const stored = await written;
      const p = await prepared;
      return { ...stored, events: p.stored.size, bad: p.bad, codes: p.codes, unmapped: p.unmapped };
    } catch (err) {
      // This batch or one before it failed: the source re-reads from its last committed
      // position, so nothing in flight may be remembered.
      uncommitted.clear();
      if (writing === written) writing = Promise.resolve();
      throw err;
    } finally {
      const p = await prepared.catch(() => undefined);
      // forEach, not for-of: no [key, value] pair per order (this runs for every change).
      if (p) p.orders.forEach((row, orderNo) => void (uncommitted.get(orderNo) === row && uncommitted.delete(orderNo)));
    }
  };

  async function prepare(batch: SourceBatch) {
    // What the ledger knows of an order decides nothing for a plain insert: a repeated insert
    // (a re-read after a crash, a re-created order) yields the same event ids, which the
    // append drops. Only updates, refunds and rows with unseen TOAST columns need a lookup.
    const needsLookup = (c: SourceChange) => c.op !== 'insert' || qualify(c.table) === classifier.refundsTable || !!c.unknownColumns?.length;
    const orderNos = [...new Set(batch.changes.filter(needsLookup).map((c) => classifier.orderNoOf(c)).filter((n): n is string => !!n))];
    // Taken before the ledger is read: a batch that commits meanwhile is either in the
    // ledger's answer or still here, never in neither.
    const pending = new Map<string, Row>();
    for (const n of orderNos) {
      const row = uncommitted.get(n);
      if (row) pending.set(n, row);
    }
    const known = await ledger.loadOrders(orderNos.filter((n) => !pending.has(n)));
    for (const [k, v] of pending) known.set(k, v);
    // Rows read from the source table, by order number. They stand in for the order of a
    // refund nobody has seen, and fill unchanged-TOAST columns; they never count as what the
    // ledger saw (the status they carry is today's, not the last one streamed: taking it for
    // that would skip the transition of an order changed in the same batch, e.g. USED beside
    // a partial refund).
    const unread = deps.fetchOrders ? toRead(batch.changes, known) : [];
    const sourceRows = unread.length ? await deps.fetchOrders!(unread) : new Map<string, Row>();

    const events = new Map<string, EventToStore>();
    const orders = new Map<string, Row>();
    const bad: Array<BadInput & { rowKey?: string | undefined }> = [...batch.bad];
    const codes: Record<string, number> = {};
    const unmapped = new Map<string, { source: string; table: string; status: string; n: number }>();
    const lookup = (orderNo: string) => orders.get(orderNo) ?? known.get(orderNo);
    const refundLookup = (orderNo: string) => lookup(orderNo) ?? sourceRows.get(orderNo);

    for (const original of batch.changes) {
      const isRefund = qualify(original.table) === classifier.refundsTable;
      const change = isRefund ? original : fillUnseen(original, lookup, sourceRows);
      let result;
      try {
        result = classifier.classify(change, isRefund ? refundLookup : lookup);
      } catch (err) {
        result = { kind: 'bad' as const, reason: `cannot classify: ${err instanceof Error ? err.message : String(err)}` };
      }
      if (result.kind === 'bad') {
        bad.push(park(change, result.reason, classifier.rowKeyOf(change)));
        continue;
      }
      if (result.unmapped !== undefined) {
        const table = qualify(change.table);
        const key = JSON.stringify([table, result.unmapped]);
        const u = unmapped.get(key);
        if (u) u.n++;
        else unmapped.set(key, { source: deps.sourceId, table, status: result.unmapped, n: 1 });
      }
      if (result.kind === 'ignored') continue;
      if (result.orderNo && result.orderRow) orders.set(result.orderNo, result.orderRow);
      for (const event of result.events) {
        codes[event.code] = (codes[event.code] ?? 0) + 1;
        if (events.has(event.id)) continue;
        events.set(event.id, { event, sinks: sinksFor(event), position: change.position, committedAt: change.committedAt });
      }
    }

    const write = ledger.prepareAppend({
      source: deps.sourceId,
      events: [...events.values()],
      orders: orderRows(orders),
      bad,
      checkpoints: batch.checkpoints,
      fence: batch.fence,
      ...(deps.handOver ? { handOver: deps.handOver() } : {}),
    });
    orders.forEach((row, orderNo) => uncommitted.set(orderNo, row));
    return { write, orders, stored: events, bad: bad.length, codes, unmapped: [...unmapped.values()] };
  }

  /**
   * Orders to read from the source table: those of refunds the ledger does not know, and
   * those with a change whose unchanged-TOAST columns neither the ledger's row nor an earlier
   * change of the batch carries (an order older than the slot, first seen through an update
   * that left a long column alone, would otherwise become events without that column).
   */
  function toRead(changes: readonly SourceChange[], known: ReadonlyMap<string, Row>): string[] {
    const read = new Set<string>();
    const columns = new Map<string, Set<string>>();
    // Column tracking is for unchanged-TOAST columns: a batch without any needs none.
    const unknown = changes.some((c) => c.unknownColumns?.length);
    for (const c of changes) {
      const table = qualify(c.table);
      const orderNo = classifier.orderNoOf(c);
      if (!orderNo) continue;
      if (table === classifier.refundsTable) {
        if (!known.has(orderNo)) read.add(orderNo);
        continue;
      }
      if (!unknown || table !== classifier.ordersTable || !c.after) continue;
      let seen = columns.get(orderNo);
      if (!seen) columns.set(orderNo, (seen = new Set(Object.keys(known.get(orderNo) ?? {}))));
      if (c.unknownColumns?.some((col) => !seen.has(col))) read.add(orderNo);
      for (const col of Object.keys(c.after)) seen.add(col);
    }
    return [...read];
  }

  /**
   * The change with the unchanged-TOAST columns that what is known before it (the ledger's
   * row, earlier changes of the batch) lacks, taken from the source table's current row. That
   * is the value the update left alone, unless a later transaction changed it since (the
   * stream brings that change too). A column the current row lacks stays unknown.
   */
  function fillUnseen(change: SourceChange, lookup: (orderNo: string) => Row | undefined, sourceRows: ReadonlyMap<string, Row>): SourceChange {
    if (!change.unknownColumns?.length || !change.after || qualify(change.table) !== classifier.ordersTable) return change;
    const orderNo = classifier.orderNoOf(change);
    const current = orderNo === undefined ? undefined : sourceRows.get(orderNo);
    if (!current) return change;
    const prior = lookup(orderNo!);
    const fill = change.unknownColumns.filter((col) => !(prior && Object.hasOwn(prior, col)) && Object.hasOwn(current, col));
    if (fill.length === 0) return change;
    const after: Row = { ...change.after };
    for (const col of fill) after[col] = current[col]!;
    return { ...change, after, unknownColumns: change.unknownColumns.filter((col) => !fill.includes(col)) };
  }

  function sinksFor(event: BusinessEvent): string[] {
    const names: string[] = [];
    for (const s of deps.sinks) if (s.handles(event)) names.push(s.name);
    return names;
  }
}

export type Ingest = ReturnType<typeof createIngest>;

/** The batch's order rows for the append, in the map's order. */
function orderRows(orders: ReadonlyMap<string, Row>): Array<{ orderNo: string; row: Row }> {
  const out: Array<{ orderNo: string; row: Row }> = [];
  orders.forEach((row, orderNo) => out.push({ orderNo, row }));
  return out;
}

/**
 * A change that cannot become events, as parked input: where it came from (table and commit
 * LSN, or a Kafka record's partition and offset) and, when it names a row, that row's key, so
 * the row is parked once however often it is read (the stream again, a backfill).
 */
function park(change: SourceChange, reason: string, rowKey: string | undefined): BadInput & { rowKey?: string } {
  const where = change.parkAs ?? { stream: change.table, position: change.position };
  return { ...where, reason, raw: JSON.stringify(change), ...(rowKey === undefined ? {} : { rowKey }) };
}
