// The user's control over their own tracking data: pause recording, see every row (right of access), erase them
// (right to erasure). Personal rows only: the restrictive personal policy limits every statement to the caller.
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { isUuid, query, toDate, toInt, toIntOrNull } from './rows.ts';
import type { SkillView, ViewerScope } from './views.ts';

/** Whether the caller's views are recorded (no preference row: yes). */
export async function trackingPreference(db: Executor, scope: ViewerScope): Promise<{ enabled: boolean }> {
  const rows = await query<{ tracking_enabled: boolean }>(
    db,
    sql`select tracking_enabled from user_tracking_preferences
        where tenant_id = ${scope.tenantId}::uuid and user_id = ${scope.userId}::uuid`,
  );
  return { enabled: rows[0]?.tracking_enabled ?? true };
}

/** Turns the recording of the caller's views off or on; returns the preference now in force. */
export async function setTracking(db: Executor, scope: ViewerScope, enabled: boolean): Promise<{ enabled: boolean }> {
  const rows = await query<{ tracking_enabled: boolean }>(
    db,
    sql`insert into user_tracking_preferences (tenant_id, user_id, tracking_enabled, updated_at)
        values (${scope.tenantId}::uuid, ${scope.userId}::uuid, ${enabled}, now())
        on conflict (tenant_id, user_id) do update set tracking_enabled = excluded.tracking_enabled, updated_at = now()
        returning tracking_enabled`,
  );
  return { enabled: rows[0]!.tracking_enabled };
}

/** An export cursor: the last skill id of the previous page, base64url-encoded (opaque to clients). */
export function encodeExportCursor(skillId: string): string {
  return Buffer.from(skillId, 'utf8').toString('base64url');
}

/** The skill id in an export cursor, or null when it is not one of ours. */
export function decodeExportCursor(value: string): string | null {
  if (value.length > 64 || !/^[A-Za-z0-9_-]+$/.test(value)) return null;
  const id = Buffer.from(value, 'base64url').toString('utf8');
  return isUuid(id) ? id.toLowerCase() : null;
}

interface ExportRow {
  skill_id: string;
  first_viewed_at: unknown;
  last_viewed_at: unknown;
  last_viewed_version: unknown;
  view_count: unknown;
}

/** Every view row of the caller, by skill id, keyset-paged (`after`: the last skill id of the previous page). */
export async function exportMyViews(
  db: Executor,
  scope: ViewerScope,
  { limit, after }: { limit: number; after: string | null },
): Promise<{ items: SkillView[]; nextAfter: string | null }> {
  const rows = await query<ExportRow>(
    db,
    sql`select skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count
        from user_skill_views
        where tenant_id = ${scope.tenantId}::uuid and user_id = ${scope.userId}::uuid
          ${after ? sql`and skill_id > ${after}::uuid` : sql``}
        order by skill_id
        limit ${limit + 1}::int`,
  );
  const page = rows.slice(0, limit);
  return {
    items: page.map((r) => ({
      skillId: r.skill_id,
      firstViewedAt: toDate(r.first_viewed_at),
      lastViewedAt: toDate(r.last_viewed_at),
      lastViewedVersion: toIntOrNull(r.last_viewed_version),
      viewCount: toInt(r.view_count),
    })),
    nextAfter: rows.length > limit ? page[page.length - 1]!.skill_id : null,
  };
}

/** Deletes every view row of the caller (their tracking preference stays); returns how many. */
export async function forgetMyViews(db: Executor, scope: ViewerScope): Promise<number> {
  const rows = await query<{ n: unknown }>(
    db,
    sql`with gone as (
          delete from user_skill_views where tenant_id = ${scope.tenantId}::uuid and user_id = ${scope.userId}::uuid
          returning 1)
        select count(*) as n from gone`,
  );
  return toInt(rows[0]?.n ?? 0);
}
