// The database engines every suite runs on: PGlite always, Postgres when DATABASE_URL is set.
import { readFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { inject } from 'vitest';
import { createDb, type DbHandle, type Engine } from '../../db/client.ts';

export interface TestEngine {
  name: Engine;
  /** Opens a migrated database: a private in-memory PGlite, or a pool on this run's Postgres database. */
  open: (options?: { poolSize?: number }) => Promise<DbHandle>;
  /** Connection URL for Postgres (null for PGlite). */
  url: string | null;
}

const pglite: TestEngine = {
  name: 'pglite',
  url: null,
  open: async () => {
    const dump = await readFile(inject('pgliteTemplate'));
    const client = await PGlite.create({ loadDataDir: new Blob([dump]) });
    const handle = createDb({ pglite: client });
    return { ...handle, close: () => client.close() };
  },
};

const pgUrl = inject('pgUrl');

const postgresEngine: TestEngine | null = pgUrl
  ? { name: 'postgres', url: pgUrl, open: async (options) => createDb({ url: pgUrl, poolSize: options?.poolSize ?? 4 }) }
  : null;

export const engines: TestEngine[] = postgresEngine ? [pglite, postgresEngine] : [pglite];
