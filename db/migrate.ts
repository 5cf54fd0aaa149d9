// Applies all migrations to a database on either engine and makes sure the application role exists with its grants.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import type { PgliteDatabase } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { createDb, type DbHandle } from './client.ts';

export const migrationsFolder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
export const DEFAULT_APP_ROLE = 'skillviews_app';

// Serialises concurrent migrators (several server instances starting at once) on one database.
const MIGRATION_LOCK_KEY = 7_364_219_001;

/**
 * Applies pending migrations (already applied ones are skipped), then ensures `appRole`
 * exists with least-privilege grants. Run it with the owner's connection, never the app role.
 */
export async function migrate(handle: DbHandle, appRole: string = DEFAULT_APP_ROLE): Promise<void> {
  if (handle.engine === 'pglite') {
    await migratePglite(handle.db as unknown as PgliteDatabase, { migrationsFolder });
    await handle.db.execute(sql`select skillviews_ensure_app_role(${appRole})`);
    return;
  }
  if (!handle.url) throw new Error('a postgres handle needs its url to migrate');
  // One dedicated connection: the advisory lock is held by a session, and every statement must use it.
  const client = postgres(handle.url, { max: 1, onnotice: () => {} });
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    const db = drizzlePostgres({ client });
    await migratePostgres(db, { migrationsFolder });
    await db.execute(sql`select skillviews_ensure_app_role(${appRole})`);
    await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
  } finally {
    await client.end({ timeout: 5 });
  }
}

// `npm run db:migrate`: migrate DATABASE_URL, or the embedded database in PGLITE_DIR.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { loadConfig } = await import('../server/config.ts');
  const config = loadConfig();
  const handle = config.DATABASE_URL
    ? createDb({ url: config.DATABASE_URL, poolSize: 1 })
    : createDb({ pgliteDir: config.PGLITE_DIR });
  try {
    await migrate(handle, config.DB_APP_ROLE);
    console.log(`migrated ${handle.engine} database`);
  } finally {
    await handle.close();
  }
}
