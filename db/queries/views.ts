// Query functions for user_skill_views: the atomic view upsert and the batched lookup behind list badges.
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { query, toDate, toInt, toIntOrNull, uuidArrayParam } from './rows.ts';
import { contentUnseen, hasUnseenFeedback, seenAssignments } from './seen.ts';

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
  tracked: boolean;
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

/** What recordView returns: the view after and before (null when tracking is off), and whether it was recorded. */
export interface RecordViewResult {
  view: SkillView | null;
  previous: SkillView | null;
  tracked: boolean;
}

/**
 * Records that the user opened a skill, in one statement: resolves the skill's current published version, content
 * revision and feedback count, locks and reads the previous view row, and upserts (count + 1, time from the
 * database clock). What was seen only moves forward: `last_viewed_at`, `last_viewed_version`, `seen_revision` and
 * `seen_feedback` keep the greater value, so out-of-order commits or a view while the skill is unpublished never
 * move them back. When the user turned tracking off, nothing is written
 * (`tracked: false`). Returns null when the skill does not exist in the caller's tenant.
 *
 * `prev` takes FOR UPDATE so a concurrent recorder of the same row is waited for and its committed
 * values are what we report as previous. The one case it cannot see is a row inserted concurrently
 * by another first view (not yet visible to this statement's snapshot); then the upsert still counts
 * correctly and `previous` is derived from the new row (see below).
 */
export async function recordView(db: Executor, scope: ViewerScope, skillId: string): Promise<RecordViewResult | null> {
  const rows = await query<RecordViewRow>(
    db,
    sql`
    with target as (
      select s.id, s.published_version as version, s.content_revision, s.feedback_seq,
             not exists (select 1 from user_tracking_preferences p
                         where p.tenant_id = ${scope.tenantId}::uuid and p.user_id = ${scope.userId}::uuid
                           and not p.tracking_enabled) as tracked
      from skills s
      where s.tenant_id = ${scope.tenantId}::uuid and s.id = ${skillId}::uuid
    ),
    prev as (
      select v.first_viewed_at, v.last_viewed_at, v.last_viewed_version, v.view_count
      from user_skill_views v
      where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid and v.skill_id = ${skillId}::uuid
        and (select tracked from target)
      for update
    ),
    up as (
      insert into user_skill_views as v
        (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count,
         seen_revision, seen_feedback)
      -- joining prev makes it run (and lock) before the insert
      select ${scope.tenantId}::uuid, ${scope.userId}::uuid, target.id, now(), now(), target.version, 1,
             target.content_revision, target.feedback_seq
      from target left join prev on true
      where target.tracked
      on conflict (tenant_id, user_id, skill_id) do update set
        last_viewed_at = greatest(v.last_viewed_at, excluded.last_viewed_at),
        last_viewed_version = greatest(v.last_viewed_version, excluded.last_viewed_version),
        view_count = v.view_count + 1,
        ${seenAssignments({ revision: sql`excluded.seen_revision`, feedback: sql`excluded.seen_feedback` })}
      returning v.skill_id, v.first_viewed_at, v.last_viewed_at, v.last_viewed_version, v.view_count
    )
    select target.id as skill_id, target.tracked,
           up.first_viewed_at, up.last_viewed_at, up.last_viewed_version, up.view_count,
           (prev.view_count is not null) as had_previous,
           prev.first_viewed_at as prev_first_viewed_at, prev.last_viewed_at as prev_last_viewed_at,
           prev.last_viewed_version as prev_last_viewed_version, prev.view_count as prev_view_count
    from target left join up on true left join prev on true`,
  );
  const row = rows[0];
  if (!row) return null;
  if (!row.tracked) return { view: null, previous: null, tracked: false };
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
  return { view, previous, tracked: true };
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
 * not in the caller's tenant) are absent. `hasUpdate`: the skill's name, description or published version
 * differs from what the caller last saw (db/queries/seen.ts).
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
           ${contentUnseen} as has_update
    from user_skill_views v
    join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
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

/**
 * Marks skills as seen without counting a visit: for each listed skill the caller viewed that has unseen content
 * or feedback, what the statement sees becomes what was seen (revision and feedback count; view_count, first_viewed_at,
 * last_viewed_at and last_viewed_version unchanged). `skillIds` null: every skill the caller viewed (any window).
 * Never-viewed and other tenants' skills are skipped. Returns how many rows had something unseen.
 */
export async function markSeen(db: Executor, scope: ViewerScope, skillIds: readonly string[] | null): Promise<number> {
  const only = skillIds
    ? sql`and v.skill_id = any(${uuidArrayParam([...new Set(skillIds.map((id) => id.toLowerCase()))])}::uuid[])`
    : sql``;
  // The rows are chosen first, in a MATERIALIZED CTE, and the UPDATE takes them by primary key (`= any(ids)`).
  // Re-evaluating the choice (its correlated subqueries) in the UPDATE's EvalPlanQual recheck, when another
  // transaction has just changed one of the rows, crashed PostgreSQL 15.20 (a segfault in ExecSubPlan,
  // BENCHMARKS.md); the recheck now compares keys only. The index scan over the sorted ids locks rows in key order,
  // so concurrent calls of one user do not deadlock.
  const rows = await query<{ n: unknown }>(
    db,
    sql`
    with targets as materialized (
      select array_agg(v.skill_id) as ids
      from user_skill_views v
      join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
      where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid ${only}
        and (${contentUnseen} or ${hasUnseenFeedback(scope.userId)})
    ),
    marked as (
      update user_skill_views v set
        ${seenAssignments({ revision: sql`s.content_revision`, feedback: sql`s.feedback_seq` })}
      from skills s
      where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid
        and v.skill_id = any((select ids from targets)::uuid[])
        and s.tenant_id = v.tenant_id and s.id = v.skill_id
      returning 1
    )
    select count(*) as n from marked`,
  );
  return toInt(rows[0]?.n ?? 0);
}
