-- What order-relay needs from the ticketing database, with least privilege.
-- Run as the owner of the order tables (or a superuser), once:
--   psql "$ADMIN_URL" -v relay_password='…' -f config/grants.sql
-- Then point order-relay at postgres://order_relay:…@host/db and check with `order-relay doctor`.
-- Server settings (postgresql.conf; a restart is needed for wal_level):
--   wal_level = logical
--   max_replication_slots, max_wal_senders: at least one free each for order-relay
--   max_slot_wal_keep_size = 50GB   (bounds the WAL a stopped connector can pin; past it the
--                                    slot is invalidated and you re-create it and backfill)

\if :{?relay_password}
\else
  \set relay_password 'order-relay-local-only'
\endif

-- LOGIN + REPLICATION: stream a logical replication slot (it creates the slot itself).
-- On RDS/Aurora use: GRANT rds_replication TO order_relay;  (instead of REPLICATION)
SELECT 'CREATE ROLE order_relay LOGIN REPLICATION'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'order_relay') \gexec
ALTER ROLE order_relay WITH LOGIN REPLICATION PASSWORD :'relay_password';

-- SELECT: backfill and refund lookups read the tables.
GRANT USAGE ON SCHEMA public TO order_relay;
GRANT SELECT ON public.orders, public.refunds TO order_relay;

-- The publication needs the tables' owner, so it is created here (order-relay then finds it).
SELECT 'CREATE PUBLICATION order_relay FOR TABLE public.orders, public.refunds'
 WHERE NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'order_relay') \gexec

-- The ledger lives in its own schema (order_relay); with the ledger in this database the role
-- creates that schema once (`order-relay migrate`). With ledger.url elsewhere, skip this.
SELECT format('GRANT CREATE ON DATABASE %I TO order_relay', current_database()) \gexec

-- REPLICA IDENTITY DEFAULT (a primary key) works, with the SELECT grant above: an UPDATE that
-- leaves a long (TOASTed) value alone is streamed without it, and order-relay reads it back
-- from the table. FULL carries every value. NOTHING, or DEFAULT on a table without a primary
-- key, makes UPDATEs fail once the table is published.
-- ALTER TABLE public.orders REPLICA IDENTITY DEFAULT;
