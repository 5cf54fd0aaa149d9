// Query function for the "what's new" feed: skills the user viewed that changed since, keyset-paginated.
import { sql, type SQL } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { isUuid, query, toDate, toInt, toIntOrNull } from './rows.ts';
import { contentUnseen } from './seen.ts';
import type { ViewerScope } from './views.ts';

export interface WhatsNewItem {
  skillId: string;
  name: string;
  slug: string;
  category: string;
  updatedAt: Date;
  lastViewedAt: Date;
  lastViewedVersion: number | null;
  currentVersion: number | null;
  viewCount: number;
}

/** Position after the last item of a page: its exact updated_at (microseconds, UTC) and id. */
export interface FeedCursor {
  updatedAt: string;
  id: string;
}

/** The only timestamp spelling a cursor has: what `to_char(…, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` writes. */
const cursorTimestamp = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;

export function encodeCursor(cursor: FeedCursor): string {
  return Buffer.from(`${cursor.updatedAt}|${cursor.id}`, 'utf8').toString('base64url');
}

/** Days in a month of the proleptic Gregorian calendar (Postgres's): leap years every 4, not every 100, every 400. */
function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * True when `value` is a timestamp the encoder could have written, so Postgres accepts it as `timestamptz`:
 * a real calendar date in years 0001–9999 (Postgres has no year 0), hour 00–23, minute and second 00–59.
 * Postgres also takes 24:00:00 and a leap second :60, but to_char never writes them, so no cursor has them.
 * (Date.parse is no check: it takes 2026-02-30 and moves it to March.)
 */
function isCursorTimestamp(value: string): boolean {
  const m = cursorTimestamp.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  return (
    year >= 1 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth(year, month) &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59
  );
}

/** Decodes a cursor from a client; null when it is not one of ours (so every cursor it returns is one Postgres takes). */
export function decodeCursor(value: string): FeedCursor | null {
  if (value.length > 128 || !/^[A-Za-z0-9_-]+$/.test(value)) return null;
  const [updatedAt, id, ...rest] = Buffer.from(value, 'base64url').toString('utf8').split('|');
  if (rest.length > 0 || !updatedAt || !id) return null;
  if (!isCursorTimestamp(updatedAt) || !isUuid(id)) return null;
  return { updatedAt, id: id.toLowerCase() };
}

interface FeedRow {
  id: string;
  name: string;
  slug: string;
  category: string;
  updated_at: unknown;
  cursor_ts: string;
  last_viewed_at: unknown;
  last_viewed_version: unknown;
  current_version: unknown;
  view_count: unknown;
}

export interface WhatsNewOptions {
  limit: number;
  windowDays: number;
  cursor: FeedCursor | null;
}

/**
 * How many rows each side of the feed's join is probed for before choosing where to start: the caller's view
 * rows, or the tenant's published skills changed inside the window. Both probes are index-only and stop here.
 */
export const PLAN_PROBE_LIMIT = 1000;

/**
 * Where the feed and the count start. `views`: the caller's own view rows (primary key), each joined to its skill;
 * cost follows how many skills the caller viewed. `skills`: the tenant's published skills changed inside the
 * window, newest first (skills_published_updated_idx), each probing the caller's view row by primary key; cost
 * follows how many skills changed, and a page stops as soon as it is full. The smaller side wins (at a tie, skills),
 * so neither a user with 20,000 views in a quiet tenant nor a light user in a tenant where thousands of skills
 * changed pays for the other side. Postgres cannot choose this itself: a prepared (generic) plan does not know the caller's numbers.
 */
export type FeedPlan = 'views' | 'skills';

interface Probe {
  since: string;
  views: unknown;
  changed: unknown;
}

/** Measures both sides (each capped at PLAN_PROBE_LIMIT) and fixes the window's start for the main statement. */
async function probe(db: Executor, scope: ViewerScope, windowDays: number): Promise<{ plan: FeedPlan; since: string }> {
  const rows = await query<Probe>(
    db,
    sql`
    with w as (select now() - make_interval(days => ${windowDays}::int) as since)
    select to_char(w.since at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as since,
      (select count(*) from (select 1 from user_skill_views v
         where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid
         limit ${PLAN_PROBE_LIMIT}::int) a) as views,
      (select count(*) from (select 1 from skills s
         where s.tenant_id = ${scope.tenantId}::uuid and s.status = 'published' and s.updated_at >= w.since
         limit ${PLAN_PROBE_LIMIT}::int) b) as changed
    from w`,
  );
  const row = rows[0]!;
  // Both at the cap: skills first, since a page stops as soon as it is full (views first must read every view).
  return { plan: toInt(row.views) < toInt(row.changed) ? 'views' : 'skills', since: row.since };
}

/**
 * The rows of the feed (published skills the caller viewed with unseen content, changed since `since`), from the
 * side `plan` names; `extra` adds conditions (a cursor). Columns: skill and view fields, cursor_ts.
 */
function feedRows(scope: ViewerScope, plan: FeedPlan, since: string, extra: SQL, columns: SQL): SQL {
  const from =
    plan === 'views'
      ? sql`from user_skill_views v
        join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id`
      : // A lateral lookup, not a join: Postgres would reorder a plain inner join and start from the views anyway.
        sql`from skills s
        cross join lateral (
          select v.* from user_skill_views v
          where v.tenant_id = s.tenant_id and v.user_id = ${scope.userId}::uuid and v.skill_id = s.id
          limit 1) v`;
  const start =
    plan === 'views'
      ? sql`v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid`
      : sql`s.tenant_id = ${scope.tenantId}::uuid`;
  return sql`select ${columns}
    ${from}
    where ${start}
      and s.status = 'published'
      and s.updated_at >= ${since}::timestamptz
      and ${contentUnseen}
      ${extra}`;
}

/**
 * Published skills the user viewed whose content they have not seen (db/queries/seen.ts), changed within the
 * window, newest change first, ties by id, keyset-paginated. Two statements: the probe that picks the plan
 * (FeedPlan), then the page.
 */
export async function whatsNew(
  db: Executor,
  scope: ViewerScope,
  { limit, windowDays, cursor }: WhatsNewOptions,
): Promise<{ items: WhatsNewItem[]; nextCursor: FeedCursor | null }> {
  const { plan, since } = await probe(db, scope, windowDays);
  const after = cursor
    ? sql`and (s.updated_at, s.id) < (${cursor.updatedAt}::timestamptz, ${cursor.id}::uuid)`
    : sql``;
  const rows = await query<FeedRow>(
    db,
    sql`${feedRows(
      scope,
      plan,
      since,
      after,
      sql`s.id, s.name, s.slug, s.category, s.updated_at,
           to_char(s.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_ts,
           v.last_viewed_at, v.last_viewed_version, s.published_version as current_version, v.view_count`,
    )}
    order by s.updated_at desc, s.id desc
    limit ${limit + 1}::int`,
  );
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map((r) => ({
      skillId: r.id,
      name: r.name,
      slug: r.slug,
      category: r.category,
      updatedAt: toDate(r.updated_at),
      lastViewedAt: toDate(r.last_viewed_at),
      lastViewedVersion: toIntOrNull(r.last_viewed_version),
      currentVersion: toIntOrNull(r.current_version),
      viewCount: toInt(r.view_count),
    })),
    nextCursor: rows.length > limit && last ? { updatedAt: last.cursor_ts, id: last.id } : null,
  };
}

/** The nav badge's cap: counting stops after this many (`capped: true`). */
export const WHATS_NEW_COUNT_CAP = { default: 999, min: 999, max: 10_000 } as const;

/**
 * How many items whatsNew would list over all its pages for the same window: the same rows, counted up to `cap`
 * (then `capped: true`, and the count is `cap`). The same plan choice as the feed.
 */
export async function whatsNewCount(
  db: Executor,
  scope: ViewerScope,
  { windowDays, cap }: { windowDays: number; cap: number },
): Promise<{ count: number; capped: boolean }> {
  const { plan, since } = await probe(db, scope, windowDays);
  const rows = await query<{ n: unknown }>(
    db,
    sql`select count(*) as n from (${feedRows(scope, plan, since, sql``, sql`1`)} limit ${cap + 1}::int) x`,
  );
  const n = toInt(rows[0]?.n ?? 0);
  return n > cap ? { count: cap, capped: true } : { count: n, capped: false };
}
