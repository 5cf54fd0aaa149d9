// The live-update check: which announced changes are news to one subscriber, decided under that subscriber's own
// request transaction (role, tenant, user; RLS) with the one definition of "changed since seen" (seen.ts).
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { query, uuidArrayParam } from './rows.ts';
import { contentUnseen, feedbackUnseen } from './seen.ts';
import type { ViewerScope } from './views.ts';

/** What was announced about one skill (migration 0009's notifications, merged). */
export interface AnnouncedChange {
  skillId: string;
  /** A content revision was announced. */
  content: boolean;
  /** The lowest feedback number announced, or null when no feedback was. */
  minFeedbackSeq: number | null;
}

export type ChangeReason = 'content' | 'feedback';

/** One skill the subscriber has news about, with the kinds announced that are unseen (never empty). */
export interface SubscriberChange {
  skillId: string;
  reasons: ChangeReason[];
}

/**
 * For the caller (`scope`, in a request transaction scoped to them), the announced changes that are news to them: a
 * skill they have a view row for (RLS shows them their own rows only, in their tenant only) whose announced kind is
 * unseen now: `content` when its content is unseen (contentUnseen), `feedback` when feedback by someone else numbered
 * at or above the announced number is unseen (feedbackUnseen; their own feedback never counts). Skills they never
 * viewed, of another tenant, or that do not exist give nothing. One statement for up to any number of skills.
 */
export async function unseenAnnounced(db: Executor, scope: ViewerScope, changes: readonly AnnouncedChange[]): Promise<SubscriberChange[]> {
  if (changes.length === 0) return [];
  const ids = uuidArrayParam(changes.map((c) => c.skillId));
  const content = `{${changes.map((c) => (c.content ? 't' : 'f')).join(',')}}`;
  const seqs = `{${changes.map((c) => (c.minFeedbackSeq === null ? 'NULL' : String(Math.trunc(c.minFeedbackSeq)))).join(',')}}`;
  const rows = await query<{ skill_id: string; content: boolean; feedback: boolean }>(
    db,
    sql`select v.skill_id,
        (x.content and ${contentUnseen}) as content,
        (x.min_seq is not null and exists (select 1 from skill_feedback f
          where f.tenant_id = v.tenant_id and f.skill_id = v.skill_id and f.seq >= x.min_seq
            and ${feedbackUnseen(scope.userId)})) as feedback
      from unnest(${ids}::uuid[], ${content}::boolean[], ${seqs}::bigint[]) as x(skill_id, content, min_seq)
      join user_skill_views v on v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid and v.skill_id = x.skill_id
      join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
      order by v.skill_id`,
  );
  const result: SubscriberChange[] = [];
  for (const row of rows) {
    const reasons: ChangeReason[] = [];
    if (row.content) reasons.push('content');
    if (row.feedback) reasons.push('feedback');
    if (reasons.length > 0) result.push({ skillId: row.skill_id, reasons });
  }
  return result;
}
