// A database of the suite's own, for tests that change the schema: a fresh PGlite, or a new migrated Postgres database.
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { createDb, type DbHandle } from '../../db/client.ts';
import { migrate } from '../../db/migrate.ts';
import type { TestEngine } from './engines.ts';

export interface PrivateDb {
  handle: DbHandle;
  /** Connection URL of the private Postgres database (null for PGlite). */
  url: string | null;
  /** Closes the handle and, on Postgres, drops the database. */
  drop: () => Promise<void>;
}

/** PGlite: a private copy of the migrated template. Postgres: a new database beside the run's, migrated. */
export async function openPrivateDb(engine: TestEngine): Promise<PrivateDb> {
  if (!engine.url) {
    const handle = await engine.open();
    return { handle, url: null, drop: () => handle.close() };
  }
  const name = `skillviews_private_${randomBytes(6).toString('hex')}`;
  const admin = postgres(engine.url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  const url = new URL(engine.url);
  url.pathname = `/${name}`;
  const handle = createDb({ url: url.toString(), poolSize: 2 });
  await migrate(handle);
  return {
    handle,
    url: url.toString(),
    drop: async () => {
      await handle.close();
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    },
  };
}
