import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { Kafka } from 'kafkajs';
import pg from 'pg';
import { clientConfig } from '../../connectors/sources/kafka/index.js';
import { rootCertSn } from '../../connectors/sinks/zhima/cert.js';
import { parsePrivateKey, parsePublicKey } from '../../connectors/sinks/zhima/keys.js';
import { APP_AUTH_TOKEN_MAX, SIGN_MAX } from '../../connectors/sinks/zhima/material.js';
import { configuredTables, ledgerUrl, sourceUrl } from '../app.js';
import { qualify } from '../classify/classifier.js';
import type { Config, SinkConfig } from '../config/schema.js';
import { resolveSecret, type SecretRef } from '../config/secrets.js';
import { LATEST_VERSION, schemaVersion } from '../ledger/migrations.js';
import { ledgerSetting } from '../ledger/sql.js';
import { silentLogger } from '../log.js';
import { createSink } from '../registry.js';
import { bytes } from './format.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export interface DoctorOptions {
  env?: NodeJS.ProcessEnv;
  /** Per network check. */
  timeoutMs?: number;
  /** Skips the endpoint probes (no outbound HTTP). */
  offline?: boolean;
}

/** Clock offsets (local minus remote, ms) beyond these warn / fail. The gateways refuse requests 15 min off. */
const CLOCK_WARN_MS = 30_000;
const CLOCK_FAIL_MS = 5 * 60_000;

/**
 * A preflight: checks what `run` needs from the source database, the ledger, the
 * credentials and the endpoints, and says for each problem how to fix it. Read-only: it
 * creates nothing (no slot, no publication, no schema).
 */
export async function doctor(config: Config, options: DoctorOptions = {}): Promise<Check[]> {
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const clockSamples: Array<{ against: string; offsetMs: number; resolutionMs: number }> = [];

  // ---- source database ------------------------------------------------------------------
  if (config.source) {
    const src = config.source;
    const client = new pg.Client({ connectionString: sourceUrl(config), application_name: 'order-relay-doctor', connectionTimeoutMillis: timeoutMs });
    client.on('error', () => {});
    let connected = false;
    try {
      await client.connect();
      connected = true;
    } catch (err) {
      add({ name: 'source database', status: 'fail', detail: `cannot connect: ${msg(err)}`, fix: 'check database.url / source.url (host, port, user, password, sslmode) and pg_hba.conf' });
    }
    if (connected) {
      try {
        const info = await client.query<{ v: string; user: string; db: string; t0: Date; version_num: string }>(
          `SELECT version() AS v, current_user AS user, current_database() AS db, clock_timestamp() AS t0, current_setting('server_version_num') AS version_num`,
        );
        const row = info.rows[0]!;
        const major = Math.floor(Number(row.version_num) / 10_000);
        add({ name: 'source database', status: 'ok', detail: `connected to "${row.db}" as "${row.user}" (PostgreSQL ${major})` });
        await sampleClock(client, 'source database', clockSamples);

        // wal_level
        const wal = (await client.query<{ wal_level: string }>('SHOW wal_level')).rows[0]!.wal_level;
        add(
          wal === 'logical'
            ? { name: 'wal_level', status: 'ok', detail: 'logical' }
            : {
                name: 'wal_level',
                status: 'fail',
                detail: `is "${wal}"; logical decoding needs "logical"`,
                fix: "ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL (RDS/Aurora: rds.logical_replication = 1; Cloud SQL: cloudsql.logical_decoding = on)",
              },
        );

        // replication privilege
        const role = (
          await client.query<{ super: boolean; repl: boolean; rds: boolean | null }>(
            `SELECT r.rolsuper AS super, r.rolreplication AS repl,
                    CASE WHEN to_regrole('rds_replication') IS NULL THEN NULL ELSE pg_has_role(current_user, 'rds_replication', 'member') END AS rds
               FROM pg_roles r WHERE r.rolname = current_user`,
          )
        ).rows[0]!;
        add(
          role.super || role.repl || role.rds
            ? { name: 'replication privilege', status: 'ok', detail: `role "${row.user}" has ${role.super ? 'SUPERUSER' : role.repl ? 'REPLICATION' : 'rds_replication'}` }
            : {
                name: 'replication privilege',
                status: 'fail',
                detail: `role "${row.user}" has neither REPLICATION nor SUPERUSER: it cannot stream a slot`,
                fix: `ALTER ROLE "${row.user}" WITH REPLICATION; (RDS: GRANT rds_replication TO "${row.user}";) see config/grants.sql`,
              },
        );

        // tables, columns, SELECT, replica identity
        const tables = configuredTables(config);
        const needed = new Map<string, string[]>([[qualify(config.orders.table), [config.orders.orderNo, config.orders.status, ...(config.orders.occurredAt ? [config.orders.occurredAt] : [])]]]);
        if (config.refunds) {
          needed.set(qualify(config.refunds.table), [
            config.refunds.orderNo, config.refunds.refundId, ...(config.refunds.status ? [config.refunds.status] : []), ...(config.refunds.occurredAt ? [config.refunds.occurredAt] : []),
          ]);
        }
        let ownsAll = true;
        for (const table of tables) {
          const t = (
            await client.query<{ oid: number | null; ident: string | null; haspk: boolean | null; sel: boolean | null; owner: boolean | null; cols: string[] | null }>(
              `SELECT c.oid::int AS oid, c.relreplident AS ident,
                      EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS haspk,
                      has_table_privilege(c.oid, 'SELECT') AS sel,
                      pg_has_role(c.relowner, 'USAGE') AS owner,
                      ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols
                 FROM pg_class c WHERE c.oid = to_regclass($1)`,
              [quoted(table)],
            )
          ).rows[0];
          if (!t?.oid) {
            add({ name: `table ${table}`, status: 'fail', detail: 'does not exist (or is not visible to this role)', fix: `create it (see config/schema.sql) or fix orders.table / refunds.table` });
            ownsAll = false;
            continue;
          }
          if (!t.owner) ownsAll = false;
          const missing = (needed.get(table) ?? []).filter((c) => !(t.cols ?? []).includes(c));
          if (missing.length) {
            add({ name: `table ${table}`, status: 'fail', detail: `has no column ${missing.map((m) => `"${m}"`).join(', ')}`, fix: 'fix the column names in the orders / refunds section of the config' });
          } else if (!t.sel) {
            add({ name: `table ${table}`, status: 'fail', detail: `role "${row.user}" may not SELECT it (backfill and refund lookups read it)`, fix: `GRANT SELECT ON ${table} TO "${row.user}";` });
          } else {
            add({ name: `table ${table}`, status: 'ok', detail: 'exists, configured columns present, readable' });
            const mapping = statusMapping(config, table);
            if (mapping) add(await statusCheck(client, table, mapping));
          }
          const ident = t.ident;
          // Below FULL, an update's new row has no value for a TOASTed (long, stored out of
          // line) column it left alone: pgoutput sends "unchanged toast". order-relay takes the
          // value from its last row of the order or, for an order it has not seen (older than
          // the slot), reads the row back from the orders table; FULL logs every value instead.
          const orders = table === qualify(config.orders.table);
          const withoutFull = orders
            ? ': no old rows, and an update leaves unchanged TOASTed (long, out-of-line) values out; order-relay fills them from its last row of the order, or reads the row back from this table for an order it has not seen yet (needs SELECT on it)'
            : '';
          if (ident === 'f') add({ name: `replica identity ${table}`, status: 'ok', detail: `FULL (updates carry every value, unchanged TOASTed ones included${orders ? '; DEFAULT also works, with less WAL, as order-relay reads such values back from the table' : ''})` });
          else if (ident === 'i') add({ name: `replica identity ${table}`, status: 'ok', detail: `USING INDEX${withoutFull}` });
          else if (ident === 'd' && t.haspk) add({ name: `replica identity ${table}`, status: 'ok', detail: `DEFAULT (primary key)${withoutFull}` });
          else {
            add({
              name: `replica identity ${table}`,
              status: 'fail',
              detail: ident === 'n' ? 'NOTHING' : 'DEFAULT without a primary key: once the table is in a publication, UPDATE and DELETE on it fail',
              fix: `add a primary key, or ALTER TABLE ${table} REPLICA IDENTITY FULL;`,
            });
          }
        }

        // publication
        const pub = (await client.query<{ ins: boolean; upd: boolean }>('SELECT pubinsert AS ins, pubupdate AS upd FROM pg_publication WHERE pubname = $1', [src.publication])).rows[0];
        if (pub) {
          const { rows } = await client.query<{ t: string }>(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1`, [src.publication]);
          const have = new Set(rows.map((r) => r.t));
          const missing = tables.filter((t) => !have.has(t));
          if (!pub.ins || !pub.upd) {
            add({ name: 'publication', status: 'fail', detail: `"${src.publication}" does not publish ${!pub.ins ? 'inserts' : 'updates'}`, fix: `ALTER PUBLICATION "${src.publication}" SET (publish = 'insert, update, delete');` });
          } else if (missing.length === 0) {
            add({ name: 'publication', status: 'ok', detail: `"${src.publication}" covers ${tables.join(', ')}` });
          } else if (src.create && ownsAll) {
            add({ name: 'publication', status: 'warn', detail: `"${src.publication}" lacks ${missing.join(', ')}; run adds them` });
          } else {
            add({ name: 'publication', status: 'fail', detail: `"${src.publication}" lacks ${missing.join(', ')}`, fix: `ALTER PUBLICATION "${src.publication}" ADD TABLE ${missing.join(', ')}; (as the tables' owner)` });
          }
        } else if (!src.create) {
          add({ name: 'publication', status: 'fail', detail: `"${src.publication}" does not exist and source.create is false`, fix: `CREATE PUBLICATION "${src.publication}" FOR TABLE ${tables.join(', ')}; (as the tables' owner)` });
        } else {
          const mayCreate = (await client.query<{ ok: boolean }>(`SELECT has_database_privilege(current_database(), 'CREATE') AS ok`)).rows[0]!.ok;
          add(
            mayCreate && ownsAll
              ? { name: 'publication', status: 'warn', detail: `"${src.publication}" does not exist yet; run (or backfill) creates it` }
              : {
                  name: 'publication',
                  status: 'fail',
                  detail: `"${src.publication}" does not exist and role "${row.user}" cannot create it (needs CREATE on the database and ownership of the tables)`,
                  fix: `as the tables' owner: CREATE PUBLICATION "${src.publication}" FOR TABLE ${tables.join(', ')};`,
                },
          );
        }

        // slot
        const slot = (
          await client.query<{ plugin: string; database: string | null; active: boolean; pid: number | null; wal_status: string | null; retained: string | null }>(
            `SELECT plugin, database, active, active_pid AS pid, wal_status, (pg_current_wal_lsn() - restart_lsn)::text AS retained
               FROM pg_replication_slots WHERE slot_name = $1`,
            [src.slot],
          )
        ).rows[0];
        let retained: number | null = null;
        if (!slot) {
          const cap = (
            await client.query<{ used: number; max: number }>(`SELECT (SELECT count(*)::int FROM pg_replication_slots) AS used, current_setting('max_replication_slots')::int AS max`)
          ).rows[0]!;
          if (cap.used >= cap.max) {
            add({ name: 'replication slot', status: 'fail', detail: `"${src.slot}" does not exist and all ${cap.max} slots are taken`, fix: 'raise max_replication_slots (restart needed) or drop an unused slot' });
          } else if (src.create) {
            add({ name: 'replication slot', status: 'warn', detail: `"${src.slot}" does not exist yet; run creates it. Orders older than the slot need \`order-relay backfill\`` });
          } else {
            add({ name: 'replication slot', status: 'fail', detail: `"${src.slot}" does not exist and source.create is false`, fix: `SELECT pg_create_logical_replication_slot('${src.slot}', 'pgoutput'); then order-relay backfill` });
          }
        } else if (slot.plugin !== 'pgoutput') {
          add({ name: 'replication slot', status: 'fail', detail: `"${src.slot}" uses plugin ${slot.plugin}, not pgoutput`, fix: `use another source.slot name, or drop it: SELECT pg_drop_replication_slot('${src.slot}');` });
        } else if (slot.database !== row.db) {
          add({ name: 'replication slot', status: 'fail', detail: `"${src.slot}" belongs to database "${slot.database}", not "${row.db}"`, fix: 'choose another source.slot name (slot names are cluster-wide)' });
        } else if (slot.wal_status === 'lost') {
          add({
            name: 'replication slot',
            status: 'fail',
            detail: `"${src.slot}" is invalidated (wal_status lost): the WAL it needed was removed`,
            fix: `SELECT pg_drop_replication_slot('${src.slot}'); then run (re-creates it) and order-relay backfill`,
          });
        } else {
          retained = slot.retained === null ? null : Number(slot.retained);
          add({
            name: 'replication slot',
            status: slot.wal_status === 'unreserved' ? 'warn' : 'ok',
            detail: `"${src.slot}" pgoutput, ${slot.active ? `streaming to pid ${slot.pid}` : 'idle'}, wal_status ${slot.wal_status ?? '?'}, retains ${bytes(retained)}${slot.wal_status === 'unreserved' ? ': about to be invalidated' : ''}`,
          });
        }

        // max_slot_wal_keep_size
        const keep = (await client.query<{ v: string | null }>(`SELECT current_setting('max_slot_wal_keep_size', true) AS v`)).rows[0]!.v;
        if (keep === null) {
          add({ name: 'max_slot_wal_keep_size', status: 'warn', detail: 'not available (PostgreSQL < 13): a stopped connector makes the server keep WAL without bound', fix: 'monitor order_relay_slot_retained_bytes and disk space' });
        } else if (keep === '-1') {
          add({
            name: 'max_slot_wal_keep_size',
            status: 'warn',
            detail: 'unlimited: if order-relay stops, the slot keeps WAL until the disk fills',
            fix: "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf(); and alert on order_relay_slot_retained_bytes (past the limit the slot is invalidated: re-create + backfill)",
          });
        } else {
          add({ name: 'max_slot_wal_keep_size', status: 'ok', detail: `${keep}: a slot further behind is invalidated (then re-create it and backfill)${retained !== null ? `; the slot retains ${bytes(retained)}` : ''}` });
        }
      } catch (err) {
        add({ name: 'source database', status: 'fail', detail: `check failed: ${msg(err)}` });
      } finally {
        await client.end().catch(() => {});
      }
    }
  }

  // ---- Kafka ------------------------------------------------------------------------------
  if (config.kafka) {
    const k = config.kafka;
    let kafkaConfig: ReturnType<typeof clientConfig> | undefined;
    try {
      kafkaConfig = clientConfig(k, env, silentLogger());
      if (k.sasl || (k.ssl && typeof k.ssl === 'object')) add({ name: 'kafka credentials', status: 'ok', detail: 'SASL / TLS material present' });
    } catch (err) {
      add({ name: 'kafka credentials', status: 'fail', detail: msg(err), fix: 'set the environment variable or mount the file kafka.sasl / kafka.ssl names' });
    }
    if (kafkaConfig) {
      const admin = new Kafka({ ...kafkaConfig, connectionTimeout: Math.min(timeoutMs, k.connectionTimeout), retry: { retries: 0 } }).admin();
      try {
        await withTimeout(admin.connect(), timeoutMs);
        add({ name: 'kafka brokers', status: 'ok', detail: `${k.brokers.join(', ')} reachable` });
        const existing = new Set(await withTimeout(admin.listTopics(), timeoutMs));
        for (const t of k.topics) {
          add(
            existing.has(t.topic)
              ? { name: `kafka topic ${t.topic}`, status: 'ok', detail: `exists (${t.format})` }
              : { name: `kafka topic ${t.topic}`, status: 'fail', detail: 'does not exist', fix: 'create it (or fix kafka.topics[].topic)' },
          );
        }
      } catch (err) {
        add({ name: 'kafka brokers', status: 'fail', detail: `${k.brokers.join(', ')}: ${msg(err)}`, fix: 'check kafka.brokers, TLS/SASL settings and the network path to the brokers' });
      } finally {
        await admin.disconnect().catch(() => {});
      }
    }
  }

  // ---- ledger ---------------------------------------------------------------------------
  {
    const client = new pg.Client({ connectionString: ledgerUrl(config), application_name: 'order-relay-doctor', connectionTimeoutMillis: timeoutMs });
    client.on('error', () => {});
    try {
      await client.connect();
      const v = await schemaVersion(client, config.ledger.schema);
      if (v === LATEST_VERSION) add({ name: 'ledger schema', status: 'ok', detail: `${config.ledger.schema} at version ${v}` });
      if (v >= 3 && v <= LATEST_VERSION) {
        // Fixed when the ledger was made: run refuses to start with another ledger.shards.
        const stored = Number((await client.query<{ value: string }>(ledgerSetting(config.ledger.schema), ['shards'])).rows[0]?.value);
        if (stored === config.ledger.shards) add({ name: 'ledger shards', status: 'ok', detail: `${stored} (fixed when the ledger was made)` });
        else {
          add({
            name: 'ledger shards',
            status: 'fail',
            detail: `ledger.shards is ${config.ledger.shards}, but ${config.ledger.schema} was made with ${stored}: run refuses to start`,
            fix: `set ledger.shards: ${stored} (the shard count of a ledger is fixed once it exists)`,
          });
        }
      }
      else if (v > LATEST_VERSION) {
        add({ name: 'ledger schema', status: 'fail', detail: `${config.ledger.schema} is at version ${v}, newer than this order-relay (${LATEST_VERSION})`, fix: 'upgrade order-relay to the version that migrated it' });
      } else {
        const may = (await client.query<{ ok: boolean }>(`SELECT has_database_privilege(current_database(), 'CREATE') OR to_regnamespace($1) IS NOT NULL AS ok`, [config.ledger.schema])).rows[0]!.ok;
        add({
          name: 'ledger schema',
          status: may ? 'warn' : 'fail',
          detail: v === 0 ? `${config.ledger.schema} does not exist yet${may ? '' : ' and this role may not create it'}` : `${config.ledger.schema} at version ${v}, this order-relay needs ${LATEST_VERSION}`,
          fix: may ? 'order-relay migrate -c <config> (run also migrates at start)' : `GRANT CREATE ON DATABASE … TO the connector's role, or create schema ${config.ledger.schema} for it`,
        });
      }
    } catch (err) {
      add({ name: 'ledger', status: 'fail', detail: `cannot check: ${msg(err)}`, fix: 'check ledger.url (or database.url) and that the role may connect' });
    } finally {
      await client.end().catch(() => {});
    }
  }

  // ---- sinks: credentials, keys, endpoints ------------------------------------------------
  const logger = silentLogger();
  for (const [name, sc] of Object.entries(config.sinks)) {
    // Every problem of the sink's secrets, each with its own fix; then the sink itself, which
    // checks whatever else it needs at start.
    const problems = credentialProblems(name, sc, env);
    for (const p of problems) add({ name: `credentials ${name}`, status: 'fail', ...p });
    if (!problems.length) {
      try {
        const sink = createSink(name, sc, { logger, env });
        await sink.close();
        add({
          name: `credentials ${name}`,
          status: 'ok',
          detail: sc.kind === 'antchain' ? 'access key and secret present' : `app private key and ${sc.certMode ? 'certificates' : 'Alipay public key'} readable and well-formed`,
        });
      } catch (err) {
        add({ name: `credentials ${name}`, status: 'fail', detail: msg(err), fix: `check what sinks.${name} names against the message` });
      }
    }
    if (options.offline) continue;
    const started = Date.now();
    try {
      const res = await fetch(sc.endpoint, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel().catch(() => {});
      const ms = Date.now() - started;
      add({ name: `endpoint ${name}`, status: 'ok', detail: `${new URL(sc.endpoint).origin} answers (HTTP ${res.status} in ${ms} ms)` });
      const date = res.headers.get('date');
      if (date && !Number.isNaN(Date.parse(date))) {
        clockSamples.push({ against: `${name} endpoint`, offsetMs: started + ms / 2 - Date.parse(date), resolutionMs: 1_000 + ms });
      }
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (cause?.code ?? cause?.message ?? msg(err));
      add({ name: `endpoint ${name}`, status: 'fail', detail: `${safeOrigin(sc.endpoint)} unreachable: ${why}`, fix: 'check the endpoint URL, DNS, proxy and egress firewall (the API side may also need this host\'s IP whitelisted)' });
    }
  }

  // ---- clock ------------------------------------------------------------------------------
  if (clockSamples.length === 0) {
    add({ name: 'clock', status: 'skip', detail: 'nothing to compare the local clock with' });
  } else {
    const worst = clockSamples.reduce((a, b) => (Math.abs(b.offsetMs) - b.resolutionMs > Math.abs(a.offsetMs) - a.resolutionMs ? b : a));
    const off = Math.abs(worst.offsetMs) - worst.resolutionMs;
    const text = `local clock ${worst.offsetMs >= 0 ? 'ahead of' : 'behind'} ${worst.against} by ~${(Math.abs(worst.offsetMs) / 1000).toFixed(1)} s`;
    add(
      off > CLOCK_FAIL_MS
        ? { name: 'clock', status: 'fail', detail: `${text}; the gateways refuse requests whose timestamp is 15 minutes off`, fix: 'synchronise the clock (chrony / systemd-timesyncd / NTP)' }
        : off > CLOCK_WARN_MS
          ? { name: 'clock', status: 'warn', detail: text, fix: 'synchronise the clock (chrony / systemd-timesyncd / NTP)' }
          : { name: 'clock', status: 'ok', detail: `within ${Math.max(1, Math.ceil((Math.abs(worst.offsetMs) + worst.resolutionMs) / 1000))} s of ${clockSamples.map((s) => s.against).join(', ')}` },
    );
  }
  return checks;
}

interface Problem {
  detail: string;
  fix: string;
}

/**
 * Reads a secret, or says why it cannot be read and what to do about that particular cause:
 * an unset variable is set, a missing file is mounted at the path named, an unreadable one
 * made readable.
 */
function readSecret(ref: SecretRef, path: string, what: string, env: NodeJS.ProcessEnv): { text: string } | { problem: Problem } {
  try {
    return { text: resolveSecret(ref, path, env) };
  } catch (err) {
    const detail = msg(err);
    if (typeof ref === 'object' && 'env' in ref) return { problem: { detail, fix: `set the environment variable ${ref.env} to ${what}` } };
    if (typeof ref === 'object' && 'file' in ref) {
      const code = /: (E[A-Z]+)$/.exec(detail)?.[1];
      const fix =
        code === 'ENOENT' ? `put ${what} in ${ref.file} (mount the secret at that path), or correct ${path}.file`
        : code === 'EACCES' ? `make ${ref.file} readable by the user order-relay runs as`
        : code === 'EISDIR' ? `${ref.file} is a directory: name the file in it in ${path}.file`
        : /is empty$/.test(detail) ? `write ${what} into ${ref.file}`
        : `check ${ref.file}`;
      return { problem: { detail, fix } };
    }
    return { problem: { detail, fix: `give ${path} ${what}` } };
  }
}

function keyProblem(err: unknown, path: string, kind: 'private' | 'public', what: string): Problem {
  const detail = msg(err);
  if (/expected a public key, got a private key/.test(detail)) {
    return { detail, fix: `${path} takes ${what}, a public key; the app's private key belongs in ${path.slice(0, path.lastIndexOf('.'))}.privateKey` };
  }
  if (/expected an RSA key/.test(detail)) return { detail, fix: `Alipay signs RSA2 (SHA256withRSA): use ${what}, an RSA-2048 key` };
  return {
    detail,
    fix:
      kind === 'private'
        ? `${path} must hold ${what} whole, as the key tool wrote it: PEM (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY----- … END) or its bare base64 body, without added spaces, quotes or cut lines`
        : `${path} must hold ${what} whole, as the console shows it: PEM (-----BEGIN PUBLIC KEY----- … END) or its bare base64 body, without added spaces, quotes or cut lines`,
  };
}

function firstCertificate(text: string, path: string): X509Certificate | Problem {
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
  try {
    if (block) return new X509Certificate(block);
  } catch {
    // reported below
  }
  return { detail: `${path}: not a PEM certificate`, fix: `${path} must hold the certificate file the Alipay console issued (-----BEGIN CERTIFICATE----- … END), whole` };
}

const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });

/** Every problem with a sink's credentials and keys, each with the fix for that problem. */
export function credentialProblems(name: string, sc: SinkConfig, env: NodeJS.ProcessEnv): Problem[] {
  const problems: Problem[] = [];
  const path = `sinks.${name}`;
  const read = (ref: SecretRef, field: string, what: string): string | undefined => {
    const r = readSecret(ref, `${path}.${field}`, what, env);
    if ('problem' in r) problems.push(r.problem);
    return 'text' in r ? r.text : undefined;
  };
  if (sc.kind === 'antchain') {
    read(sc.accessKey, 'accessKey', 'the AntChain access key (AccessKey ID)');
    read(sc.accessSecret, 'accessSecret', 'the AntChain access secret');
    return problems;
  }
  let privateKey: KeyObject | undefined;
  const privateText = read(sc.privateKey, 'privateKey', 'the app private key');
  if (privateText !== undefined) {
    if (/-----BEGIN (RSA )?PUBLIC KEY-----/.test(privateText)) {
      problems.push({ detail: `${path}.privateKey: holds a public key, not the app private key`, fix: `${path}.privateKey takes the app private key you generated; its public half is what you upload to the Alipay console` });
    } else {
      try {
        privateKey = parsePrivateKey(privateText, `${path}.privateKey`);
        const bits = privateKey.asymmetricKeyDetails?.modulusLength;
        const length = bits === undefined ? undefined : 4 * Math.ceil(Math.ceil(bits / 8) / 3);
        if (length !== undefined && length > SIGN_MAX) {
          problems.push({
            detail: `${path}.privateKey: a ${bits}-bit key makes ${length}-character signatures; sign is limited to ${SIGN_MAX} (an RSA-2048 key)`,
            fix: 'generate an RSA-2048 app key pair and upload its public key to the Alipay console',
          });
        }
      } catch (err) {
        problems.push(keyProblem(err, `${path}.privateKey`, 'private', 'the app private key'));
      }
    }
  }
  if (sc.appAuthToken) {
    const token = read(sc.appAuthToken, 'appAuthToken', 'the app_auth_token the merchant granted');
    if (token !== undefined && token.length > APP_AUTH_TOKEN_MAX) {
      problems.push({ detail: `${path}.appAuthToken: is ${token.length} characters; the limit is ${APP_AUTH_TOKEN_MAX}`, fix: `${path}.appAuthToken takes the app_auth_token itself (the value Alipay returned when the merchant authorised the app), nothing around it` });
    }
  }
  if (sc.certMode) {
    const certPath = `${path}.certMode`;
    const appText = read(sc.certMode.appCert, 'certMode.appCert', 'the app public-key certificate (appCertPublicKey_….crt)');
    const rootText = read(sc.certMode.alipayRootCert, 'certMode.alipayRootCert', 'the Alipay root certificate (alipayRootCert.crt)');
    const alipayText = read(sc.certMode.alipayCert, 'certMode.alipayCert', 'the Alipay public-key certificate (alipayCertPublicKey_RSA2.crt)');
    if (appText !== undefined) {
      const cert = firstCertificate(appText, `${certPath}.appCert`);
      if (!(cert instanceof X509Certificate)) problems.push(cert);
      else if (privateKey && !spki(cert.publicKey).equals(spki(createPublicKey(privateKey)))) {
        problems.push({
          detail: `${certPath}.appCert: certifies a different key than ${path}.privateKey, so the gateway would refuse every signature`,
          fix: `use the app certificate issued for this private key, or the private key the certificate was issued for (the key pair whose public key you submitted for it)`,
        });
      }
    }
    if (rootText !== undefined) {
      try {
        rootCertSn(rootText, `${certPath}.alipayRootCert`);
      } catch (err) {
        problems.push({ detail: msg(err), fix: `${certPath}.alipayRootCert must hold alipayRootCert.crt as downloaded from the Alipay console, whole` });
      }
    }
    if (alipayText !== undefined) {
      const cert = firstCertificate(alipayText, `${certPath}.alipayCert`);
      if (!(cert instanceof X509Certificate)) problems.push(cert);
      else if (cert.publicKey.asymmetricKeyType !== 'rsa') {
        problems.push({ detail: `${certPath}.alipayCert: certifies a ${cert.publicKey.asymmetricKeyType ?? 'non-RSA'} key, not an RSA one`, fix: `${certPath}.alipayCert takes alipayCertPublicKey_RSA2.crt` });
      }
    }
    return problems;
  }
  if (sc.alipayPublicKey) {
    const text = read(sc.alipayPublicKey, 'alipayPublicKey', 'the Alipay public key');
    if (text !== undefined) {
      try {
        const alipay = parsePublicKey(text, `${path}.alipayPublicKey`);
        // The usual mix-up: the app's own public key (uploaded to Alipay) where Alipay's belongs.
        if (privateKey && spki(alipay).equals(spki(createPublicKey(privateKey)))) {
          problems.push({
            detail: `${path}.alipayPublicKey: is the public half of ${path}.privateKey (your app public key), not the Alipay public key, so no answer of the gateway would verify`,
            fix: `use the Alipay public key the console shows for the app (支付宝公钥, beside the app public key you uploaded)`,
          });
        }
      } catch (err) {
        problems.push(keyProblem(err, `${path}.alipayPublicKey`, 'public', 'the Alipay public key (支付宝公钥) the console shows for the app'));
      }
    }
  }
  return problems;
}

/** How many rows the status comparison reads, and how many distinct values it reports. */
export const STATUS_SAMPLE_ROWS = 100_000;
const STATUS_VALUES = 50;

interface StatusMapping {
  /** The config path of the mapping, e.g. `orders.statuses`. */
  path: string;
  column: string;
  values: readonly string[];
}

function statusMapping(config: Config, table: string): StatusMapping | undefined {
  if (table === qualify(config.orders.table)) return { path: 'orders.statuses', column: config.orders.status, values: Object.keys(config.orders.statuses) };
  if (config.refunds?.status && table === qualify(config.refunds.table)) {
    return { path: 'refunds.successStatuses', column: config.refunds.status, values: config.refunds.successStatuses };
  }
  return undefined;
}

/**
 * The mapping against the status values the table holds (in a bounded sample). Statuses are
 * compared exactly, as the classifier compares them (trimmed): a mapping that says `PAID`
 * while the rows hold `paid` turns every such change into no events. Values that match a
 * mapped status but for case warn, naming the two; other values no mapping lists are shown
 * (`CREATED` often means nothing to report) but do not warn, as there is no way to map a
 * status to no event.
 */
async function statusCheck(client: pg.Client, table: string, mapping: StatusMapping): Promise<Check> {
  const name = `statuses ${table}`;
  const col = quoted(mapping.column);
  let rows: Array<{ status: string | null; n: string }>;
  try {
    ({ rows } = await client.query<{ status: string | null; n: string }>(
      `SELECT status, count(*)::text AS n FROM (SELECT ${col}::text AS status FROM ${quoted(table)} LIMIT ${STATUS_SAMPLE_ROWS}) s GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ${STATUS_VALUES}`,
    ));
  } catch (err) {
    return { name, status: 'warn', detail: `cannot read the status values to compare with ${mapping.path}: ${msg(err)}` };
  }
  // As the classifier reads a status: trimmed, blank is none.
  const held = new Map<string, number>();
  for (const r of rows) {
    const v = r.status?.trim();
    if (v) held.set(v, (held.get(v) ?? 0) + Number(r.n));
  }
  const scope = rows.length === STATUS_VALUES ? `the ${STATUS_VALUES} most frequent values of the first ${STATUS_SAMPLE_ROWS.toLocaleString('en-US')} rows` : `the first ${STATUS_SAMPLE_ROWS.toLocaleString('en-US')} rows`;
  if (held.size === 0) return { name, status: 'ok', detail: `no status values to compare with ${mapping.path} yet (${rows.length ? 'only blank ones' : 'the table is empty'})` };
  const mapped = new Set(mapping.values);
  const unmapped = [...held].filter(([v]) => !mapped.has(v));
  const typos: string[] = [];
  const fixes: string[] = [];
  const other: string[] = [];
  for (const [value, n] of unmapped) {
    const like = mapping.values.find((m) => m.toLowerCase() === value.toLowerCase());
    if (like !== undefined) {
      typos.push(`${mapping.path} has ${like} but the table holds "${value}" (${count(n)}): statuses are compared exactly`);
      fixes.push(mapping.path === 'orders.statuses' ? `write "${value}" instead of ${like} in orders.statuses` : `list "${value}" in refunds.successStatuses`);
    } else other.push(`"${value}" (${count(n)})`);
  }
  const mappedHeld = [...held].filter(([v]) => mapped.has(v)).map(([v, n]) => `${v} (${count(n)})`);
  const rest = [
    mappedHeld.length ? `mapped: ${mappedHeld.join(', ')}` : `no row holds a status ${mapping.path} lists`,
    ...(other.length ? [`in no mapping, so they yield no events: ${other.join(', ')}`] : []),
  ].join('; ');
  if (typos.length) return { name, status: 'warn', detail: `${typos.join('; ')} (${rest}; in ${scope})`, fix: fixes.join('; ') };
  return { name, status: 'ok', detail: `${rest} (in ${scope})` };
}

function count(n: number): string {
  return `${n.toLocaleString('en-US')} row${n === 1 ? '' : 's'}`;
}

async function sampleClock(client: pg.Client, against: string, out: Array<{ against: string; offsetMs: number; resolutionMs: number }>): Promise<void> {
  const t0 = Date.now();
  const { rows } = await client.query<{ ms: string }>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS ms`);
  const t1 = Date.now();
  out.push({ against, offsetMs: (t0 + t1) / 2 - Number(rows[0]!.ms), resolutionMs: (t1 - t0) / 2 + 5 });
}

export function renderChecks(checks: Check[]): string {
  const label: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };
  const width = Math.max(...checks.map((c) => c.name.length));
  return checks.map((c) => `${label[c.status]}  ${c.name.padEnd(width)}  ${c.detail}${c.fix && c.status !== 'ok' ? ` — fix: ${c.fix}` : ''}`).join('\n');
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

function quoted(table: string): string {
  return table.split('.').map((p) => `"${p.replace(/"/g, '""')}"`).join('.');
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'the endpoint';
  }
}

function msg(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, '; ');
}
