import type { TestProject } from 'vitest/node';
import { startPostgres, type LocalPostgres } from '../../src/sandbox/postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}

let server: LocalPostgres | undefined;

/**
 * One real PostgreSQL (wal_level=logical) for the whole run; every test file makes its
 * own database in it, so slots, publications and ledgers never collide.
 * TEST_DATABASE_URL points the suite at an existing server instead (it needs
 * wal_level=logical and a superuser).
 */
export async function setup(project: TestProject): Promise<void> {
  if (process.env.TEST_DATABASE_URL) {
    project.provide('pgUrl', process.env.TEST_DATABASE_URL);
    return;
  }
  // Debian's packaged server when present (the oldest major we support), else npm's.
  server = await startPostgres({ preferSystem: true, settings: { max_replication_slots: '64', max_wal_senders: '64' } });
  project.provide('pgUrl', server.url);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
