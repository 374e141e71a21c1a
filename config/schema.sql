-- Sample ticketing schema for order-relay: an orders table and a refunds table.
-- REPLICA IDENTITY DEFAULT works: order-relay keeps the last row per order itself, and reads
-- a long (TOASTed) value an UPDATE left out back from this table (the role needs SELECT);
-- FULL carries every value in every update, at the cost of more WAL.
CREATE TABLE IF NOT EXISTS public.orders (
  id                 bigserial PRIMARY KEY,
  order_no           text NOT NULL UNIQUE,
  status             text NOT NULL DEFAULT 'CREATED',     -- CREATED | PAID | USED | REFUNDED | CANCELLED
  buyer_phone        text,                                 -- mainland mobile, e.g. 13800138000
  sharer_phone       text,                                 -- who shared the page, if anyone
  alipay_user_id     text,                                 -- 2088…, when the buyer paid with Alipay
  movie_id           text NOT NULL,
  cinema_id          integer,
  cinema_name        text,
  cinema_address     text,
  cinema_location    text,
  schedule_id        text,
  seat_ids           text,
  show_start         timestamp,                            -- local (Beijing) time, no zone
  show_end           timestamp,
  ticket_count       integer NOT NULL DEFAULT 1,
  original_amount    numeric(12,2) NOT NULL,               -- yuan
  paid_amount        numeric(12,2) NOT NULL,               -- yuan
  paid_at            timestamptz,
  notes              text,
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.refunds (
  refund_id          text PRIMARY KEY,
  order_no           text NOT NULL REFERENCES public.orders (order_no),
  status             text NOT NULL DEFAULT 'SUCCESS',     -- PENDING | SUCCESS | FAILED
  refund_amount      numeric(12,2) NOT NULL,               -- yuan
  refund_count       integer NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now()
);
