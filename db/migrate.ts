// Applies the migrations in one transaction under a transaction-scoped lock, with their own journal, then grants the app role.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { inOwnerTransaction, pinSettings, rowsOf, type DbHandle, type Executor } from './client.ts';
import { postgresErrorOf } from './errors.ts';

export const migrationsFolder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
export const DEFAULT_APP_ROLE = 'skillviews_app';
/**
 * The journal of applied migrations, `drizzle.skill_views_migrations`: drizzle's schema for journals, but not
 * its default table (`__drizzle_migrations`), so a host app's own drizzle migrations never clash with ours.
 * Outside `public`, where every table is one of the module's RLS-forced tables.
 */
export const MIGRATIONS_TABLE = 'drizzle.skill_views_migrations';

// Serialises concurrent migrators on one database: pg_advisory_xact_lock, released when the transaction ends,
// so it is safe through a transaction pooler and never left held by an idle pooled backend.
const MIGRATION_LOCK_KEY = 7_364_219_001;

export interface MigrationFile {
  /** File name without .sql, e.g. 0001_rls_force_role_grants. */
  tag: string;
  /** drizzle-kit's `when` (ms since the epoch): the migration's identity in the journal, as drizzle keeps it. */
  createdAt: number;
  /** sha256 of the file. */
  hash: string;
  statements: string[];
}

/** The migrations in drizzle-kit's folder layout (meta/_journal.json and one .sql file per entry), in order. */
export function readMigrations(folder = migrationsFolder): MigrationFile[] {
  const journal = JSON.parse(readFileSync(path.join(folder, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string; when: number }[];
  };
  return journal.entries.map(({ tag, when }) => {
    const text = readFileSync(path.join(folder, `${tag}.sql`), 'utf8');
    return {
      tag,
      createdAt: when,
      hash: createHash('sha256').update(text).digest('hex'),
      statements: text.split('--> statement-breakpoint').filter((s) => s.trim() !== ''),
    };
  });
}

export interface MigrateOptions {
  /** Role requests run as (DB_APP_ROLE): created if missing and the owner may, then granted what it needs. */
  appRole?: string;
  /**
   * Postgres only: the connection to migrate over (DATABASE_DIRECT_URL); default the handle's URL. Any URL
   * works, a transaction pooler included, since everything runs in one transaction.
   */
  url?: string;
}

/** Migrating failed; nothing was applied. The message carries Postgres's own message and hint (e.g. the SQL a DBA should run). */
export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** The Postgres error (message, hint) under drizzle's "Failed query" wrapper, as one readable message. */
function migrationError(err: unknown): MigrationError {
  const pg = postgresErrorOf(err);
  const reason = pg ? String(pg.message) : err instanceof Error ? err.message : String(err);
  const hint = pg && typeof pg.hint === 'string' && pg.hint ? `\n${pg.hint}` : '';
  return new MigrationError(`Migration failed, nothing was applied: ${reason}${hint}`, { cause: err });
}

export interface MigrateResult {
  /** Tags applied by this call (empty when the database was up to date). */
  applied: string[];
}

/**
 * Applies pending migrations, then ensures the application role exists with least-privilege grants. Run it as
 * the owner of the tables, never as the app role. Everything happens in one transaction that first takes a
 * transaction-scoped advisory lock: concurrent migrators (several servers starting together) wait for each
 * other and then find nothing to do, and a failure leaves the database as it was.
 *
 * The owner needs neither SUPERUSER nor CREATEROLE when the role already exists and the owner is a member of
 * it (README, "Managed Postgres"); otherwise the error names the SQL a DBA should run.
 */
export async function migrate(handle: DbHandle, options: MigrateOptions = {}): Promise<MigrateResult> {
  const appRole = options.appRole ?? DEFAULT_APP_ROLE;
  const migrations = readMigrations();
  return inOwnerTransaction(handle, options.url, 'skill-views migrate', (tx) => applyAll(tx, migrations, appRole)).catch(
    (err: unknown) => {
      throw migrationError(err);
    },
  );
}

async function applyAll(tx: Executor, migrations: MigrationFile[], appRole: string): Promise<MigrateResult> {
  await pinSettings(tx); // unqualified names in the migrations resolve to public, whatever the database's search_path
  await tx.execute(sql`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
  // drizzle's journal columns (id, hash, created_at), so drizzle-kit reads it too, plus the tag for people.
  await tx.execute(sql.raw('create schema if not exists drizzle'));
  await tx.execute(
    sql.raw(`create table if not exists ${MIGRATIONS_TABLE} (
      id serial primary key,
      hash text not null,
      created_at bigint not null unique,
      tag text,
      applied_at timestamptz not null default now()
    )`),
  );
  await adoptDrizzleJournal(tx, migrations);
  const done = new Set(
    rowsOf<{ created_at: string | number }>(await tx.execute(sql.raw(`select created_at from ${MIGRATIONS_TABLE}`))).map((r) =>
      Number(r.created_at),
    ),
  );
  const applied: string[] = [];
  for (const migration of migrations) {
    if (done.has(migration.createdAt)) continue;
    for (const statement of migration.statements) await tx.execute(sql.raw(statement));
    await recordApplied(tx, migration);
    applied.push(migration.tag);
  }
  await tx.execute(sql`select public.skillviews_ensure_app_role(${appRole})`);
  return { applied };
}

/** Writes `migration` into the journal as applied. */
async function recordApplied(tx: Executor, migration: MigrationFile) {
  await tx.execute(
    sql`insert into drizzle.skill_views_migrations (hash, created_at, tag) values (${migration.hash}, ${migration.createdAt}, ${migration.tag})`,
  );
}

/**
 * Databases migrated before the module kept its own journal recorded its migrations in drizzle's default
 * table (drizzle.__drizzle_migrations). The first time, those entries that are ours (same created_at) are
 * copied, so nothing is applied twice; the old table is left alone (a host app may use it).
 */
async function adoptDrizzleJournal(tx: Executor, migrations: MigrationFile[]) {
  const [ours] = rowsOf<{ n: number | string }>(await tx.execute(sql.raw(`select count(*) as n from ${MIGRATIONS_TABLE}`)));
  if (Number(ours?.n ?? 0) > 0) return;
  const [old] = rowsOf<{ exists: boolean }>(await tx.execute(sql`select to_regclass('drizzle.__drizzle_migrations') is not null as exists`));
  if (!old?.exists) return;
  const seen = new Set(
    rowsOf<{ created_at: string | number }>(await tx.execute(sql.raw('select created_at from drizzle.__drizzle_migrations'))).map((r) =>
      Number(r.created_at),
    ),
  );
  for (const migration of migrations) {
    if (!seen.has(migration.createdAt)) continue;
    await recordApplied(tx, migration);
  }
}

// `npm run db:migrate`: migrate DATABASE_DIRECT_URL (else DATABASE_URL), or the embedded database in PGLITE_DIR.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { runAsOwner } = await import('./cli.ts');
  await runAsOwner(async (handle, config) => {
    const { applied } = await migrate(handle, { appRole: config.DB_APP_ROLE });
    console.log(applied.length ? `applied ${applied.join(', ')} to the ${handle.engine} database` : `the ${handle.engine} database is up to date`);
  }, [MigrationError]);
}
