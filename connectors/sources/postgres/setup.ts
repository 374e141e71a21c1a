import type pg from 'pg';
import type { Logger } from '../../../src/log.js';
import { PublicationError, SlotMissingError } from './errors.js';

export interface SetupOptions {
  slot: string;
  publication: string;
  tables: string[];
  create: boolean;
}

function quoteTable(table: string): string {
  return table.split('.').map((p) => `"${p}"`).join('.');
}

/**
 * Makes sure the publication covers the configured tables and the slot exists, creating
 * them when allowed. The publication comes first: a slot created before its publication
 * cannot see it from the slot's starting point.
 */
export async function ensurePublicationAndSlot(client: pg.ClientBase, options: SetupOptions, logger: Logger): Promise<{ slotCreated: boolean }> {
  const { rows: pubs } = await client.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [options.publication]);
  if (pubs.length === 0) {
    if (!options.create) throw new PublicationError(`publication "${options.publication}" does not exist (create it, or set source.create: true)`);
    await client.query(`CREATE PUBLICATION "${options.publication}" FOR TABLE ${options.tables.map(quoteTable).join(', ')}`);
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
      await client.query(`ALTER PUBLICATION "${options.publication}" ADD TABLE ${missing.map(quoteTable).join(', ')}`);
      logger.info({ publication: options.publication, tables: missing }, 'added tables to publication');
    }
  }
  const { rows: slots } = await client.query<{ plugin: string; database: string }>(
    'SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1',
    [options.slot],
  );
  if (slots.length > 0) {
    const slot = slots[0]!;
    if (slot.plugin !== 'pgoutput') throw new SlotMissingError(options.slot, `it exists but uses plugin "${slot.plugin}", not pgoutput`);
    return { slotCreated: false };
  }
  if (!options.create) throw new SlotMissingError(options.slot, 'create it with pg_create_logical_replication_slot(slot, \'pgoutput\'), or set source.create: true');
  await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [options.slot]);
  logger.info('created replication slot');
  return { slotCreated: true };
}
