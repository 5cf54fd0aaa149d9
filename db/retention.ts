// Retention of view rows (VIEW_RETENTION_DAYS): deletes the rows of every tenant not refreshed for that many days.
// Runs as the owner of the tables (the migration credentials, DATABASE_DIRECT_URL), one process at a time.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { inOwnerTransaction, pinSettings, rowsOf, type DbHandle, type Executor } from './client.ts';

/** Serialises retention runs across processes (transaction-scoped, so it also works behind a transaction pooler). */
const RETENTION_LOCK_KEY = 7_364_219_002;

/** How often a server with VIEW_RETENTION_DAYS prunes: once a day. */
export const RETENTION_INTERVAL_MS = 24 * 60 * 60 * 1000;

export class RetentionError extends Error {
  override name = 'RetentionError';
}

export interface PruneResult {
  /** False when another process was pruning at that moment (it does the work; nothing was deleted here). */
  ran: boolean;
  /** View rows deleted. */
  deleted: number;
}

/**
 * Deletes view rows whose last view is more than `days` days old (by the database clock), in one transaction.
 * Row-level security is forced on the owner too, so the delete passes it only through the owner's retention
 * policies (`skillviews_owner_maintenance()`, migration 0005): the transaction sets `skillviews.maintenance` and
 * must run with the owner's privileges; otherwise RetentionError says so instead of silently deleting nothing.
 * A concurrent run in another process (pg_try_advisory_xact_lock) makes this one return `{ ran: false }`.
 */
export async function pruneExpiredViews(handle: DbHandle, options: { days: number; url?: string }): Promise<PruneResult> {
  if (!Number.isInteger(options.days) || options.days < 1) throw new RangeError('days must be a positive integer');
  return inOwnerTransaction(handle, options.url, 'skill-views retention', (tx) => prune(tx, options.days));
}

async function prune(tx: Executor, days: number): Promise<PruneResult> {
  await pinSettings(tx);
  const [migrated] = rowsOf<{ ok: boolean }>(
    await tx.execute(sql`select pg_catalog.to_regprocedure('public.skillviews_owner_maintenance()') is not null as ok`),
  );
  if (!migrated?.ok) throw new RetentionError('the database has no skill-views tables yet: run npm run db:migrate first');
  await tx.execute(sql`select pg_catalog.set_config('skillviews.maintenance', 'retention', true)`);
  const [state] = rowsOf<{ locked: boolean; owner: boolean }>(
    await tx.execute(sql`select pg_try_advisory_xact_lock(${RETENTION_LOCK_KEY}) as locked,
      public.skillviews_owner_maintenance() as owner`),
  );
  if (!state?.locked) return { ran: false, deleted: 0 };
  if (!state.owner) {
    throw new RetentionError(
      'pruning view rows needs the owner of the tables: run it with the migration credentials (DATABASE_DIRECT_URL)',
    );
  }
  const [row] = rowsOf<{ n: number | string }>(
    await tx.execute(sql`with gone as (
        delete from public.user_skill_views where last_viewed_at < now() - make_interval(days => ${days}::int) returning 1)
      select count(*) as n from gone`),
  );
  return { ran: true, deleted: Number(row?.n ?? 0) };
}

// `npm run db:prune`: prune now with VIEW_RETENTION_DAYS (or --days N), on DATABASE_DIRECT_URL (else DATABASE_URL)
// or the embedded database in PGLITE_DIR.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { runAsOwner } = await import('./cli.ts');
  const { retentionDays } = await import('../server/config.ts');
  await runAsOwner(async (handle, config) => {
    const flag = process.argv.indexOf('--days');
    // --days obeys the same rule as VIEW_RETENTION_DAYS (server/config.ts).
    const parsed = flag >= 0 ? retentionDays.safeParse(process.argv[flag + 1]) : null;
    const days = parsed ? (parsed.success ? parsed.data : undefined) : config.VIEW_RETENTION_DAYS;
    if (days === undefined) {
      throw new RetentionError(
        'Set VIEW_RETENTION_DAYS (or pass --days N, 1 to 36500): how many days a view row is kept since its last view',
      );
    }
    const result = await pruneExpiredViews(handle, { days, url: config.DATABASE_DIRECT_URL ?? config.DATABASE_URL });
    console.log(
      result.ran
        ? `deleted ${result.deleted} view row(s) not viewed for ${days} day(s)`
        : 'another process is pruning right now; nothing done here',
    );
  }, [RetentionError]);
}
