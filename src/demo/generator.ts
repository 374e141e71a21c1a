import type pg from 'pg';
import { seededRandom as prng } from '../core/random.js';
import { sleep } from '../core/sleep.js';
import { eventId } from '../core/ids.js';

/**
 * The demo's order traffic: purchases, check-ins, full refunds (a SUCCESS refund row of the
 * whole amount and the order set to REFUNDED: row first, status first, or both in one
 * transaction), partial refunds (rows in the refunds table, some PENDING first), abandoned
 * carts, sharers, and a few bad rows on purpose. Seeded, so a run can be repeated.
 *
 * Every order's lifecycle is planned up front; the generator plays the plan at `rate` new
 * orders per second in 100 ms ticks (one transaction per kind of statement per tick), and
 * knows which events the connector must end up with.
 */

export type Profile = 'paid' | 'checkin' | 'fullRefund' | 'partialRefund' | 'abandoned' | 'badPhone' | 'badStatus' | 'badCinema';

interface Step {
  tick: number;
  /** `fullRefund`: the refund row and the order's REFUNDED status in one transaction. */
  kind: 'status' | 'refund' | 'refundSuccess' | 'fullRefund';
  orderNo: string;
  status?: string;
  refund?: { id: string; status: string; amount: string; count: number };
}

export interface PlannedOrder {
  orderNo: string;
  profile: Profile;
  statuses: string[];
  refunds: Array<{ id: string; finalStatus: string }>;
  alipay: boolean;
}

export interface GeneratorStats {
  ordersCreated: number;
  statements: number;
  byProfile: Record<Profile, number>;
}

const TICK_MS = 100;


const CINEMAS = [
  { id: 7, name: 'Wanda CBD IMAX', address: 'Jianguo Rd 93, Chaoyang, Beijing', location: '116.47,39.91' },
  { id: 12, name: 'CGV Xidan', address: 'Xidan N St 131, Xicheng, Beijing', location: '116.37,39.91' },
  { id: 31, name: 'Broadway Cinematheque', address: 'Dongzhimen Wai 1, Beijing', location: '116.43,39.94' },
];

export function createGenerator(options: { orders: number; rate: number; seed: number; pool: pg.Pool; project: string; statuses: Record<string, string[]>; prefix?: string }) {
  const random = prng(options.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const plan: PlannedOrder[] = [];
  const steps = new Map<number, Step[]>();
  const inserts = new Map<number, Array<{ order: PlannedOrder; row: Record<string, unknown> }>>();
  const perTick = options.rate / (1000 / TICK_MS);
  const stats: GeneratorStats = {
    ordersCreated: 0,
    statements: 0,
    byProfile: { paid: 0, checkin: 0, fullRefund: 0, partialRefund: 0, abandoned: 0, badPhone: 0, badStatus: 0, badCinema: 0 },
  };

  const later = (tick: number, step: Omit<Step, 'tick'>, minGap = 1, maxGap = 8): number => {
    const at = tick + minGap + Math.floor(random() * (maxGap - minGap + 1));
    const list = steps.get(at) ?? [];
    list.push({ ...step, tick: at });
    steps.set(at, list);
    return at;
  };

  for (let i = 0; i < options.orders; i++) {
    const tick = Math.floor(i / perTick);
    const orderNo = `${options.prefix ?? 'D'}${String(i + 1).padStart(7, '0')}`;
    const r = random();
    const profile: Profile =
      r < 0.5 ? 'paid'
      : r < 0.66 ? 'checkin'
      : r < 0.74 ? 'fullRefund'
      : r < 0.86 ? 'partialRefund'
      : r < 0.94 ? 'abandoned'
      : r < 0.965 ? 'badPhone'
      : r < 0.985 ? 'badStatus'
      : 'badCinema';
    stats.byProfile[profile]++;
    const alipay = profile === 'badCinema' || random() < 0.5;
    const tickets = 1 + Math.floor(random() * 4);
    const price = [35, 39.9, 45, 59, 68.5][Math.floor(random() * 5)]!;
    const original = (price * tickets).toFixed(2);
    const paid = (price * tickets * (random() < 0.3 ? 0.8 : 1)).toFixed(2);
    const cinema = pick(CINEMAS);
    const show = new Date(Date.UTC(2026, 11, 1 + Math.floor(random() * 20), 10 + Math.floor(random() * 12), random() < 0.5 ? 0 : 30));
    const showText = show.toISOString().slice(0, 19).replace('T', ' ');
    const startPaid = random() < 0.3 && profile !== 'abandoned';
    const initial = profile === 'badStatus' ? ' ' : startPaid ? 'PAID' : 'CREATED';
    const order: PlannedOrder = { orderNo, profile, statuses: [initial], refunds: [], alipay };
    plan.push(order);
    const row = {
      order_no: orderNo,
      status: initial,
      buyer_phone: profile === 'badPhone' ? `0${Math.floor(random() * 1e6)}` : `13${Math.floor(100_000_000 + random() * 899_999_999)}`,
      sharer_phone: random() < 0.3 ? `15${Math.floor(100_000_000 + random() * 899_999_999)}` : null,
      alipay_user_id: alipay ? `2088${String(Math.floor(random() * 1e12)).padStart(12, '0')}` : null,
      movie_id: pick(['1303902', '1299372', '1311178']),
      cinema_id: profile === 'badCinema' ? null : cinema.id,
      cinema_name: cinema.name,
      cinema_address: cinema.address,
      cinema_location: cinema.location,
      schedule_id: `S${Math.floor(random() * 1e6)}`,
      seat_ids: `${1 + Math.floor(random() * 12)}-${1 + Math.floor(random() * 20)}`,
      show_start: showText,
      show_end: null,
      ticket_count: tickets,
      original_amount: original,
      paid_amount: paid,
    };
    const list = inserts.get(tick) ?? [];
    list.push({ order, row });
    inserts.set(tick, list);
    if (profile === 'badStatus') continue; // parked at ingest; nothing follows
    let t = tick;
    const go = (status: string) => {
      t = later(t, { kind: 'status', orderNo, status });
      order.statuses.push(status);
    };
    if (profile === 'abandoned') {
      go('CANCELLED');
      continue;
    }
    if (!startPaid) go('PAID');
    if (profile === 'checkin') go('USED');
    if (profile === 'fullRefund') {
      // One refund, however it is written: the row carries it (REFUNDED itself stands for the
      // purchase only), in whichever order the two writes arrive.
      const refund = { id: `${orderNo}-R1`, status: 'SUCCESS', amount: paid, count: tickets };
      const way = random();
      if (way < 1 / 3) {
        t = later(t, { kind: 'refund', orderNo, refund });
        go('REFUNDED');
      } else if (way < 2 / 3) {
        go('REFUNDED');
        t = later(t, { kind: 'refund', orderNo, refund });
      } else {
        t = later(t, { kind: 'fullRefund', orderNo, refund });
        order.statuses.push('REFUNDED');
      }
      order.refunds.push({ id: refund.id, finalStatus: 'SUCCESS' });
    }
    if (profile === 'partialRefund') {
      const n = 1 + Math.floor(random() * 2);
      for (let k = 1; k <= n; k++) {
        const id = `${orderNo}-R${k}`;
        const pending = random() < 0.4;
        const amount = (Number(paid) / (n + 1)).toFixed(2);
        t = later(t, { kind: 'refund', orderNo, refund: { id, status: pending ? 'PENDING' : 'SUCCESS', amount, count: 1 } });
        if (pending) t = later(t, { kind: 'refundSuccess', orderNo, refund: { id, status: 'SUCCESS', amount, count: 1 } });
        order.refunds.push({ id, finalStatus: 'SUCCESS' });
      }
    }
  }
  const lastTick = Math.max(0, ...inserts.keys(), ...steps.keys());

  /** The event ids the connector must store: the classifier's rules applied to the plan. */
  function expectedEvents(): Set<string> {
    const ids = new Set<string>();
    for (const o of plan) {
      if (o.profile === 'badStatus') continue;
      for (const s of o.statuses) for (const code of options.statuses[s] ?? []) ids.add(eventId([options.project, o.orderNo, code]));
      for (const r of o.refunds) {
        ids.add(eventId([options.project, o.orderNo, 'TRADE_SUCCESS']));
        ids.add(eventId([options.project, o.orderNo, 'REFUND_SUCCESS', r.id]));
      }
    }
    return ids;
  }

  async function exec(sql: string, params: unknown[]): Promise<void> {
    stats.statements++;
    await options.pool.query(sql, params);
  }

  async function playTick(tick: number): Promise<void> {
    const newOrders = inserts.get(tick) ?? [];
    if (newOrders.length) {
      await exec(
        `INSERT INTO public.orders (order_no, status, buyer_phone, sharer_phone, alipay_user_id, movie_id, cinema_id, cinema_name, cinema_address,
                                    cinema_location, schedule_id, seat_ids, show_start, show_end, ticket_count, original_amount, paid_amount, paid_at)
         SELECT r.order_no, r.status, r.buyer_phone, r.sharer_phone, r.alipay_user_id, r.movie_id, r.cinema_id, r.cinema_name, r.cinema_address,
                r.cinema_location, r.schedule_id, r.seat_ids, r.show_start, r.show_end, r.ticket_count, r.original_amount, r.paid_amount,
                CASE WHEN r.status = 'PAID' THEN now() END
           FROM jsonb_to_recordset($1::jsonb) AS r(order_no text, status text, buyer_phone text, sharer_phone text, alipay_user_id text, movie_id text,
                cinema_id int, cinema_name text, cinema_address text, cinema_location text, schedule_id text, seat_ids text, show_start timestamp,
                show_end timestamp, ticket_count int, original_amount numeric, paid_amount numeric)`,
        [JSON.stringify(newOrders.map((o) => o.row))],
      );
      stats.ordersCreated += newOrders.length;
    }
    const due = steps.get(tick) ?? [];
    const transitions = due.filter((s) => s.kind === 'status');
    if (transitions.length) {
      await exec(
        `UPDATE public.orders o SET status = v.status, updated_at = now(), paid_at = CASE WHEN v.status = 'PAID' THEN now() ELSE o.paid_at END
           FROM jsonb_to_recordset($1::jsonb) AS v(order_no text, status text) WHERE o.order_no = v.order_no`,
        [JSON.stringify(transitions.map((s) => ({ order_no: s.orderNo, status: s.status })))],
      );
    }
    const refunds = due.filter((s) => s.kind === 'refund');
    if (refunds.length) {
      await exec(
        `INSERT INTO public.refunds (refund_id, order_no, status, refund_amount, refund_count)
         SELECT r.refund_id, r.order_no, r.status, r.amount, r.count FROM jsonb_to_recordset($1::jsonb) AS r(refund_id text, order_no text, status text, amount numeric, count int)`,
        [JSON.stringify(refunds.map((s) => ({ refund_id: s.refund!.id, order_no: s.orderNo, status: s.refund!.status, amount: s.refund!.amount, count: s.refund!.count })))],
      );
    }
    const full = due.filter((s) => s.kind === 'fullRefund');
    if (full.length) {
      await exec(
        `WITH r AS (
           INSERT INTO public.refunds (refund_id, order_no, status, refund_amount, refund_count)
           SELECT r.refund_id, r.order_no, r.status, r.amount, r.count FROM jsonb_to_recordset($1::jsonb) AS r(refund_id text, order_no text, status text, amount numeric, count int)
           RETURNING order_no)
         UPDATE public.orders o SET status = 'REFUNDED', updated_at = now() FROM r WHERE o.order_no = r.order_no`,
        [JSON.stringify(full.map((s) => ({ refund_id: s.refund!.id, order_no: s.orderNo, status: s.refund!.status, amount: s.refund!.amount, count: s.refund!.count })))],
      );
    }
    const settled = due.filter((s) => s.kind === 'refundSuccess');
    if (settled.length) {
      await exec(`UPDATE public.refunds SET status = 'SUCCESS' WHERE refund_id = ANY($1::text[])`, [settled.map((s) => s.refund!.id)]);
    }
  }

  return {
    plan,
    stats,
    lastTick,
    expectedEvents,
    /** Plays the whole plan in real time (or as fast as it can, `paced: false`); resolves early when `signal` aborts. */
    async run(signal: AbortSignal, options: { paced?: boolean } = {}): Promise<void> {
      const started = Date.now();
      for (let tick = 0; tick <= lastTick && !signal.aborted; tick++) {
        await playTick(tick);
        if (options.paced === false) continue;
        const wait = started + (tick + 1) * TICK_MS - Date.now();
        if (wait > 0) await sleep(wait, signal); // pacing to the requested rate, not synchronisation
      }
    },
  };
}

