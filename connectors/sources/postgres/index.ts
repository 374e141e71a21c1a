export { postgresSourceSchema, type PostgresSourceConfig } from './config.js';
export { createPostgresSource, type PostgresSourceDeps } from './source.js';
export { SlotInUseError, SlotMissingError, PublicationError } from './errors.js';
export { parseLsn, formatLsn, normalizeLsn } from './lsn.js';
export { ensurePublicationAndSlot } from './setup.js';
export { decodeTuple } from './decode.js';
