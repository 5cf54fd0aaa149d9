// Query function for the change summary: what changed on one skill since the user's last visit. Reads only.
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { query, toDateOrNull, toInt, toIntOrNull } from './rows.ts';
import { contentUnseen, feedbackUnseen } from './seen.ts';
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
  content_unseen: boolean | null;
  seen_version: unknown;
  name_changed: boolean | null;
  description_changed: boolean | null;
  new_feedback: unknown;
}

/**
 * One statement, a pure read, by the one definition of "changed since seen" (db/queries/seen.ts): when the
 * content is unseen, `version_bump` (from the published version the caller saw to the current one) and
 * `details_updated` (exactly the fields that differ from the revision the caller saw); `new_feedback` counts
 * others' feedback numbered above what the caller last saw. Empty right after recordView or markSeen.
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
    select s.id, s.published_version as current_version, (v.skill_id is not null) as viewed,
           v.last_viewed_at, v.last_viewed_version,
           ${contentUnseen} as content_unseen,
           r.published_version as seen_version,
           (r.name is distinct from s.name) as name_changed,
           (r.description is distinct from s.description) as description_changed,
           case when v.skill_id is null then 0 else (
             select count(*) from skill_feedback f
             where f.tenant_id = s.tenant_id and f.skill_id = s.id and ${feedbackUnseen(scope.userId)}
           ) end as new_feedback
    from skills s
    left join user_skill_views v
      on v.tenant_id = s.tenant_id and v.user_id = ${scope.userId}::uuid and v.skill_id = s.id
    left join skill_revisions r on r.tenant_id = s.tenant_id and r.skill_id = s.id and r.revision = v.seen_revision
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
  if (row.content_unseen) {
    const seenVersion = toIntOrNull(row.seen_version);
    if (currentVersion !== null && currentVersion !== seenVersion) {
      summary.changes.push({ kind: 'version_bump', from: seenVersion, to: currentVersion });
    }
    const fields: ('name' | 'description')[] = [];
    if (row.name_changed) fields.push('name');
    if (row.description_changed) fields.push('description');
    if (fields.length > 0) summary.changes.push({ kind: 'details_updated', fields });
  }
  const feedback = toInt(row.new_feedback);
  if (feedback > 0) summary.changes.push({ kind: 'new_feedback', count: feedback });
  return summary;
}
