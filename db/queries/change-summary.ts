// Query function for the change summary: what changed on one skill since the user's last visit. Reads only.
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { query, toDateOrNull, toInt, toIntOrNull } from './rows.ts';
import type { ViewerScope } from './views.ts';

export type Change =
  | { kind: 'version_bump'; from: number | null; to: number }
  | { kind: 'details_updated'; fields: ('name' | 'description')[] }
  | { kind: 'new_feedback'; count: number };

export interface ChangeSummary {
  skillId: string;
  firstView: boolean;
  lastViewedAt: Date | null;
  lastViewedVersion: number | null;
  currentVersion: number | null;
  changes: Change[];
}

interface SummaryRow {
  id: string;
  current_version: unknown;
  viewed: boolean;
  last_viewed_at: unknown;
  last_viewed_version: unknown;
  name_changed: boolean | null;
  description_changed: boolean | null;
  new_feedback: unknown;
}

/**
 * One statement. Details are compared between the snapshot of the version the user last saw and the
 * skill as it is now; feedback counts items created after the last view, not the caller's own.
 * Returns null when the skill does not exist in the caller's tenant.
 */
export async function changeSummary(
  db: Executor,
  scope: ViewerScope,
  skillId: string,
): Promise<ChangeSummary | null> {
  const rows = await query<SummaryRow>(
    db,
    sql`
    select s.id, pv.version as current_version, (v.skill_id is not null) as viewed,
           v.last_viewed_at, v.last_viewed_version,
           (lv.name is distinct from s.name) as name_changed,
           (lv.description is distinct from s.description) as description_changed,
           case when v.skill_id is null then 0 else (
             select count(*) from skill_feedback f
             where f.skill_id = s.id and f.created_at > v.last_viewed_at
               and f.user_id is distinct from ${scope.userId}::uuid
           ) end as new_feedback
    from skills s
    left join skill_versions pv on pv.id = s.published_version_id
    left join user_skill_views v
      on v.tenant_id = s.tenant_id and v.user_id = ${scope.userId}::uuid and v.skill_id = s.id
    left join skill_versions lv on lv.skill_id = s.id and lv.version = v.last_viewed_version
    where s.tenant_id = ${scope.tenantId}::uuid and s.id = ${skillId}::uuid`,
  );
  const row = rows[0];
  if (!row) return null;
  const currentVersion = toIntOrNull(row.current_version);
  const lastViewedVersion = toIntOrNull(row.last_viewed_version);
  const summary: ChangeSummary = {
    skillId: row.id,
    firstView: !row.viewed,
    lastViewedAt: toDateOrNull(row.last_viewed_at),
    lastViewedVersion,
    currentVersion,
    changes: [],
  };
  if (!row.viewed) return summary;
  if (currentVersion !== null && currentVersion > (lastViewedVersion ?? 0)) {
    summary.changes.push({ kind: 'version_bump', from: lastViewedVersion, to: currentVersion });
  }
  // Without a seen snapshot (viewed before anything was published) there is nothing to compare against.
  if (lastViewedVersion !== null) {
    const fields: ('name' | 'description')[] = [];
    if (row.name_changed) fields.push('name');
    if (row.description_changed) fields.push('description');
    if (fields.length > 0) summary.changes.push({ kind: 'details_updated', fields });
  }
  const feedback = toInt(row.new_feedback);
  if (feedback > 0) summary.changes.push({ kind: 'new_feedback', count: feedback });
  return summary;
}
