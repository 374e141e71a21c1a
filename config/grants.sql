-- What order-relay needs from the ticketing database, with least privilege.
-- Run as the owner of the order tables (or a superuser), once:
--   psql "$ADMIN_URL" -v relay_password='…' -v orders_table=sales.ticket_orders -v refunds_table=sales.ticket_refunds -f config/grants.sql
-- orders_table and refunds_table are your config's orders.table and refunds.table (default: the
-- sample schema's public.orders and public.refunds); -v refunds_table= (empty) when you have no
-- refunds table. Run it again after changing them: it adds what is missing.
-- Then point order-relay at postgres://order_relay:…@host/db and check with `order-relay doctor`.
-- Server settings (postgresql.conf; a restart is needed for wal_level):
--   wal_level = logical
--   max_replication_slots, max_wal_senders: at least one free each for order-relay
--   max_slot_wal_keep_size = 50GB   (bounds the WAL a stopped connector can pin; past it the
--                                    slot is invalidated and you re-create it and backfill)

\set ON_ERROR_STOP on
\if :{?relay_password}
\else
  \set relay_password 'order-relay-local-only'
\endif
\if :{?orders_table}
\else
  \set orders_table public.orders
\endif
\if :{?refunds_table}
\else
  \set refunds_table public.refunds
\endif

-- The configured tables (::regclass: each must exist; names are quoted as PostgreSQL needs).
CREATE TEMP TABLE order_relay_tables AS
  SELECT t::regclass AS rel FROM unnest(ARRAY[:'orders_table', NULLIF(:'refunds_table', '')]) AS t WHERE t IS NOT NULL;

-- LOGIN + REPLICATION: stream a logical replication slot (it creates the slot itself).
-- On RDS/Aurora use: GRANT rds_replication TO order_relay;  (instead of REPLICATION)
SELECT 'CREATE ROLE order_relay LOGIN REPLICATION'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'order_relay') \gexec
ALTER ROLE order_relay WITH LOGIN REPLICATION PASSWORD :'relay_password';

-- SELECT: backfill and refund lookups read the tables.
SELECT DISTINCT format('GRANT USAGE ON SCHEMA %I TO order_relay', n.nspname)
  FROM order_relay_tables t JOIN pg_class c ON c.oid = t.rel JOIN pg_namespace n ON n.oid = c.relnamespace \gexec
SELECT format('GRANT SELECT ON %s TO order_relay', string_agg(rel::text, ', ')) FROM order_relay_tables \gexec

-- The publication needs the tables' owner, so it is created here (order-relay then finds it);
-- an existing one gets the tables it lacks.
SELECT format('CREATE PUBLICATION order_relay FOR TABLE %s', string_agg(rel::text, ', ')) FROM order_relay_tables
HAVING NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'order_relay') \gexec
SELECT format('ALTER PUBLICATION order_relay ADD TABLE %s', t.rel)
  FROM order_relay_tables t JOIN pg_publication p ON p.pubname = 'order_relay'
 WHERE NOT EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = t.rel) \gexec

-- The ledger lives in its own schema (order_relay); with the ledger in this database the role
-- creates that schema once (`order-relay migrate`). With ledger.url elsewhere, skip this.
SELECT format('GRANT CREATE ON DATABASE %I TO order_relay', current_database()) \gexec

-- REPLICA IDENTITY DEFAULT (a primary key) works, with the SELECT grant above: an UPDATE that
-- leaves a long (TOASTed) value alone is streamed without it, and order-relay reads it back
-- from the table. FULL carries every value. NOTHING, or DEFAULT on a table without a primary
-- key, makes UPDATEs fail once the table is published.
-- ALTER TABLE public.orders REPLICA IDENTITY DEFAULT;

DROP TABLE order_relay_tables;
