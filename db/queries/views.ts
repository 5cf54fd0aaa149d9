// Query functions for user_skill_views: the atomic view upsert and the batched lookup behind list badges.
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { query, toDate, toInt, toIntOrNull, uuidArrayParam } from './rows.ts';

export interface SkillView {
  skillId: string;
  firstViewedAt: Date;
  lastViewedAt: Date;
  lastViewedVersion: number | null;
  viewCount: number;
}

export interface SkillViewWithUpdate extends SkillView {
  hasUpdate: boolean;
}

export interface ViewerScope {
  tenantId: string;
  userId: string;
}

interface RecordViewRow {
  skill_id: string;
  first_viewed_at: unknown;
  last_viewed_at: unknown;
  last_viewed_version: unknown;
  view_count: unknown;
  had_previous: boolean;
  prev_first_viewed_at: unknown;
  prev_last_viewed_at: unknown;
  prev_last_viewed_version: unknown;
  prev_view_count: unknown;
}

/**
 * Records that the user opened a skill, in one statement: resolves the skill's current published
 * version, locks and reads the previous view row, and upserts (count + 1, time from the database
 * clock, version). Returns null when the skill does not exist in the caller's tenant.
 *
 * `prev` takes FOR UPDATE so a concurrent recorder of the same row is waited for and its committed
 * values are what we report as previous. The one case it cannot see is a row inserted concurrently
 * by another first view (not yet visible to this statement's snapshot); then the upsert still counts
 * correctly and `previous` is derived from the new row (see below).
 */
export async function recordView(
  db: Executor,
  scope: ViewerScope,
  skillId: string,
): Promise<{ view: SkillView; previous: SkillView | null } | null> {
  const rows = await query<RecordViewRow>(
    db,
    sql`
    with target as (
      select s.id, pv.version
      from skills s
      left join skill_versions pv on pv.id = s.published_version_id
      where s.tenant_id = ${scope.tenantId}::uuid and s.id = ${skillId}::uuid
    ),
    prev as (
      select v.first_viewed_at, v.last_viewed_at, v.last_viewed_version, v.view_count
      from user_skill_views v
      where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid and v.skill_id = ${skillId}::uuid
      for update
    ),
    up as (
      insert into user_skill_views as v
        (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count)
      -- joining prev makes it run (and lock) before the insert
      select ${scope.tenantId}::uuid, ${scope.userId}::uuid, target.id, now(), now(), target.version, 1
      from target left join prev on true
      on conflict (tenant_id, user_id, skill_id) do update set
        last_viewed_at = greatest(v.last_viewed_at, excluded.last_viewed_at),
        last_viewed_version = excluded.last_viewed_version,
        view_count = v.view_count + 1
      returning v.skill_id, v.first_viewed_at, v.last_viewed_at, v.last_viewed_version, v.view_count
    )
    select up.skill_id, up.first_viewed_at, up.last_viewed_at, up.last_viewed_version, up.view_count,
           (prev.view_count is not null) as had_previous,
           prev.first_viewed_at as prev_first_viewed_at, prev.last_viewed_at as prev_last_viewed_at,
           prev.last_viewed_version as prev_last_viewed_version, prev.view_count as prev_view_count
    from up left join prev on true`,
  );
  const row = rows[0];
  if (!row) return null;
  const view: SkillView = {
    skillId: row.skill_id,
    firstViewedAt: toDate(row.first_viewed_at),
    lastViewedAt: toDate(row.last_viewed_at),
    lastViewedVersion: toIntOrNull(row.last_viewed_version),
    viewCount: toInt(row.view_count),
  };
  let previous: SkillView | null = null;
  if (row.had_previous) {
    previous = {
      skillId: row.skill_id,
      firstViewedAt: toDate(row.prev_first_viewed_at),
      lastViewedAt: toDate(row.prev_last_viewed_at),
      lastViewedVersion: toIntOrNull(row.prev_last_viewed_version),
      viewCount: toInt(row.prev_view_count),
    };
  } else if (view.viewCount > 1) {
    // Lost a race between two first views: the other one's row is what we updated. Its count is exact;
    // its time and version are those of that first view, which began no later than ours.
    previous = {
      skillId: view.skillId,
      firstViewedAt: view.firstViewedAt,
      lastViewedAt: view.firstViewedAt,
      lastViewedVersion: view.lastViewedVersion,
      viewCount: view.viewCount - 1,
    };
  }
  return { view, previous };
}

interface ViewRow {
  skill_id: string;
  first_viewed_at: unknown;
  last_viewed_at: unknown;
  last_viewed_version: unknown;
  view_count: unknown;
  has_update: boolean;
}

/**
 * The caller's views of up to 500 skills in one statement, keyed by skill id. Skills never viewed (or
 * not in the caller's tenant) are absent. `hasUpdate`: the content changed after the last view, or the
 * published version is newer than the one last seen.
 */
export async function viewsForSkills(
  db: Executor,
  scope: ViewerScope,
  skillIds: readonly string[],
): Promise<Map<string, SkillViewWithUpdate>> {
  const unique = [...new Set(skillIds.map((id) => id.toLowerCase()))];
  const rows = await query<ViewRow>(
    db,
    sql`
    select v.skill_id, v.first_viewed_at, v.last_viewed_at, v.last_viewed_version, v.view_count,
           (s.updated_at > v.last_viewed_at
             or coalesce(pv.version, 0) > coalesce(v.last_viewed_version, 0)) as has_update
    from user_skill_views v
    join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
    left join skill_versions pv on pv.id = s.published_version_id
    where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid
      and v.skill_id = any(${uuidArrayParam(unique)}::uuid[])`,
  );
  const result = new Map<string, SkillViewWithUpdate>();
  for (const row of rows) {
    result.set(row.skill_id, {
      skillId: row.skill_id,
      firstViewedAt: toDate(row.first_viewed_at),
      lastViewedAt: toDate(row.last_viewed_at),
      lastViewedVersion: toIntOrNull(row.last_viewed_version),
      viewCount: toInt(row.view_count),
      hasUpdate: row.has_update,
    });
  }
  return result;
}
