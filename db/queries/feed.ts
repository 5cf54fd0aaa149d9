// Query function for the "what's new" feed: skills the user viewed that changed since, keyset-paginated.
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { isUuid, query, toDate, toInt, toIntOrNull } from './rows.ts';
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
 * Published skills the user viewed whose content changed after their last view (newer updated_at or a
 * newer published version) and within the window, newest change first, ties by id. Starts from the
 * user's own view rows, so its cost follows how many skills the user viewed, not the table sizes.
 */
export async function whatsNew(
  db: Executor,
  scope: ViewerScope,
  { limit, windowDays, cursor }: WhatsNewOptions,
): Promise<{ items: WhatsNewItem[]; nextCursor: FeedCursor | null }> {
  const after = cursor
    ? sql`and (s.updated_at, s.id) < (${cursor.updatedAt}::timestamptz, ${cursor.id}::uuid)`
    : sql``;
  const rows = await query<FeedRow>(
    db,
    sql`
    select s.id, s.name, s.slug, s.category, s.updated_at,
           to_char(s.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_ts,
           v.last_viewed_at, v.last_viewed_version, pv.version as current_version, v.view_count
    from user_skill_views v
    join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
    left join skill_versions pv on pv.id = s.published_version_id
    where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid
      and s.status = 'published'
      and s.updated_at >= now() - make_interval(days => ${windowDays}::int)
      and (s.updated_at > v.last_viewed_at or coalesce(pv.version, 0) > coalesce(v.last_viewed_version, 0))
      ${after}
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
