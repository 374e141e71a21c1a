import type pg from 'pg';
import type { Logger } from '../../../src/log.js';
import { PublicationError, SetupError, SlotMissingError, pgCode, replicationPrivilegeError, walLevelError } from './errors.js';

export interface SetupOptions {
  slot: string;
  publication: string;
  tables: string[];
  create: boolean;
}

function quoteTable(table: string): string {
  return table.split('.').map((p) => `"${p}"`).join('.');
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Makes sure the publication covers the configured tables and the slot exists, creating
 * them when allowed. The publication comes first: a slot created before its publication
 * cannot see it from the slot's starting point.
 *
 * What no retry can fix (wal_level, a privilege the role lacks, a slot of another plugin or
 * database under the configured name, a missing table) throws a SetupError naming the
 * cause and the fix, in `doctor`'s words.
 */
export async function ensurePublicationAndSlot(client: pg.ClientBase, options: SetupOptions, logger: Logger): Promise<{ slotCreated: boolean }> {
  const { rows: [server] } = await client.query<{ wal_level: string; role: string; db: string }>(
    `SELECT current_setting('wal_level') AS wal_level, current_user AS role, current_database() AS db`,
  );
  const { wal_level: walLevel, role, db } = server!;
  if (walLevel !== 'logical') throw walLevelError(walLevel);
  const tableList = options.tables.join(', ');
  const { rows: pubs } = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [options.publication]);
  if (pubs.length === 0) {
    if (!options.create) throw new PublicationError(`publication "${options.publication}" does not exist (create it, or set source.create: true)`);
    try {
      await client.query(`CREATE PUBLICATION "${options.publication}" FOR TABLE ${options.tables.map(quoteTable).join(', ')}`);
    } catch (err) {
      throw publicationFailure(err, role, `"${options.publication}" does not exist and role "${role}" cannot create it`, `as the tables' owner: CREATE PUBLICATION "${options.publication}" FOR TABLE ${tableList};`);
    }
    logger.info({ publication: options.publication, tables: options.tables }, 'created publication');
  } else {
    const { rows } = await client.query<{ t: string }>(
      `SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1`,
      [options.publication],
    );
    const have = new Set(rows.map((r) => r.t));
    const missing = options.tables.filter((t) => !have.has(t));
    if (missing.length > 0) {
      if (!options.create) throw new PublicationError(`publication "${options.publication}" does not include ${missing.join(', ')}`);
      try {
        await client.query(`ALTER PUBLICATION "${options.publication}" ADD TABLE ${missing.map(quoteTable).join(', ')}`);
      } catch (err) {
        throw publicationFailure(err, role, `"${options.publication}" lacks ${missing.join(', ')} and role "${role}" cannot add them`, `ALTER PUBLICATION "${options.publication}" ADD TABLE ${missing.join(', ')}; (as the tables' owner)`);
      }
      logger.info({ publication: options.publication, tables: missing }, 'added tables to publication');
    }
  }
  const { rows: slots } = await client.query<{ plugin: string; database: string | null; slot_type: string }>(
    'SELECT plugin, database, slot_type FROM pg_replication_slots WHERE slot_name = $1',
    [options.slot],
  );
  if (slots.length > 0) {
    const slot = slots[0]!;
    if (slot.slot_type !== 'logical' || slot.plugin !== 'pgoutput') {
      throw new SetupError(
        'replication slot',
        `"${options.slot}" ${slot.slot_type !== 'logical' ? 'is a physical slot' : `uses plugin ${slot.plugin}`}, not pgoutput`,
        `use another source.slot name, or drop it: SELECT pg_drop_replication_slot('${options.slot}');`,
      );
    }
    if (slot.database !== db) {
      throw new SetupError('replication slot', `"${options.slot}" belongs to database "${slot.database}", not "${db}"`, 'choose another source.slot name (slot names are cluster-wide)');
    }
    return { slotCreated: false };
  }
  if (!options.create) throw new SlotMissingError(options.slot, 'create it with pg_create_logical_replication_slot(slot, \'pgoutput\'), or set source.create: true');
  try {
    await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [options.slot]);
  } catch (err) {
    if (pgCode(err) === '42501') throw replicationPrivilegeError(role, message(err));
    if (pgCode(err) === '53400') {
      throw new SetupError('replication slot', `"${options.slot}" cannot be created: ${message(err)}`, 'raise max_replication_slots (restart needed) or drop an unused slot');
    }
    throw err; // the stream's classification decides (wal_level, a server going away, …)
  }
  logger.info('created replication slot');
  return { slotCreated: true };
}

/** A publication statement that failed: a privilege or a missing table is for good; anything else is retried. */
function publicationFailure(err: unknown, role: string, detail: string, fix: string): unknown {
  const code = pgCode(err);
  if (code === '42501') return new SetupError('publication', `${detail} (${message(err)}; needs CREATE on the database and ownership of the tables)`, `${fix} see config/grants.sql`);
  if (code === '42P01') return new SetupError('publication', `a configured table does not exist or role "${role}" cannot see it (${message(err)})`, 'create it (see config/schema.sql) or fix orders.table / refunds.table');
  if (code === '42809') return new SetupError('publication', `${message(err)}: a publication takes plain tables`, 'point orders.table / refunds.table at the tables themselves');
  return err;
}
