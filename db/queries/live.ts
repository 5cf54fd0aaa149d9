// The live-update check: which announced changes are news to one subscriber, decided under that subscriber's own
// request transaction (role, tenant, user; RLS) with the one definition of "changed since seen" (seen.ts).
import { sql } from 'drizzle-orm';
import type { Executor } from '../client.ts';
import { bigintArrayParam, query, uuidArrayParam } from './rows.ts';
import { contentUnseen, feedbackUnseen } from './seen.ts';
import type { ViewerScope } from './views.ts';

/** One change notification (migration 0009): a content revision or a feedback number announced for a skill. */
export interface AnnouncedChange {
  skillId: string;
  /** The content revision announced, or null for feedback. */
  contentRevision: number | null;
  /** The feedback number announced, or null for content. */
  feedbackSeq: number | null;
}

export type ChangeReason = 'content' | 'feedback';

/** One skill the subscriber has news about, with the kinds announced that are unseen (never empty). */
export interface SubscriberChange {
  skillId: string;
  reasons: ChangeReason[];
}

/**
 * For the caller (`scope`, in a request transaction scoped to them), the announced changes that are news to them: a
 * skill they have a view row for (RLS shows them their own rows only, in their tenant only) where what was announced
 * exists and is unseen now: `content` when an announced revision exists, is newer than the one they saw, and their
 * content is unseen (contentUnseen); `feedback` when a feedback row with an announced number exists, by someone else,
 * unseen by them (feedbackUnseen; their own feedback never counts). Several announcements of one skill give one
 * answer. So a forged notification (any role may NOTIFY) can only repeat a real, unseen change; a revision or number
 * that does not exist matches nothing. Skills they never viewed, of another tenant, or that do not exist give nothing.
 * One statement for any number of skills.
 */
export async function unseenAnnounced(db: Executor, scope: ViewerScope, changes: readonly AnnouncedChange[]): Promise<SubscriberChange[]> {
  if (changes.length === 0) return [];
  const ids = uuidArrayParam(changes.map((c) => c.skillId));
  const revisions = bigintArrayParam(changes.map((c) => c.contentRevision));
  const seqs = bigintArrayParam(changes.map((c) => c.feedbackSeq));
  // The lateral join keeps one row even when nothing is news, carrying whether the statement ran as `scope.userId`
  // (unseenAnnouncedForUsers switches users between statements): a check under the wrong user is an error, not silence.
  const rows = await query<{ scoped: boolean; skill_id: string | null; content: boolean | null; feedback: boolean | null }>(
    db,
    sql`select sc.scoped, r.skill_id, r.content, r.feedback
      from (select pg_catalog.current_setting('app.current_user_id', true) = ${scope.userId} as scoped) sc
      left join lateral (
        select v.skill_id,
          bool_or(x.revision is not null and s.content_revision >= x.revision and v.seen_revision < x.revision
            and ${contentUnseen}) as content,
          bool_or(x.seq is not null and exists (select 1 from skill_feedback f
            where f.tenant_id = v.tenant_id and f.skill_id = v.skill_id and f.seq = x.seq
              and ${feedbackUnseen(scope.userId)})) as feedback
        from unnest(${ids}::uuid[], ${revisions}::bigint[], ${seqs}::bigint[]) as x(skill_id, revision, seq)
        join user_skill_views v on v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid and v.skill_id = x.skill_id
        join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
        group by v.skill_id
      ) r on true
      order by r.skill_id`,
  );
  if (rows[0]?.scoped !== true) throw new Error('live re-check did not run as its user: refusing to answer for it');
  const result: SubscriberChange[] = [];
  for (const row of rows) {
    if (row.skill_id === null) continue;
    const reasons: ChangeReason[] = [];
    if (row.content) reasons.push('content');
    if (row.feedback) reasons.push('feedback');
    if (reasons.length > 0) result.push({ skillId: row.skill_id, reasons });
  }
  return result;
}

/**
 * unseenAnnounced for several users of one tenant in one request transaction: the transaction is scoped to the first
 * user (the caller ran the scope statement for them), and before each later user's check one statement switches
 * `app.current_user_id` to that user, so each check runs under RLS as its own user (role and tenant unchanged). The
 * switch is a statement of its own: RLS policies read the setting when the check executes. The statements are issued
 * in order without waiting, so on postgres.js they travel in one round trip. Should a check ever run under another
 * user's setting, RLS shows it none of its own rows: it fails closed (nothing sent), never open.
 */
export async function unseenAnnouncedForUsers(
  db: Executor,
  tenantId: string,
  userIds: readonly string[],
  changes: readonly AnnouncedChange[],
): Promise<Map<string, SubscriberChange[]>> {
  const checks: Promise<SubscriberChange[]>[] = [];
  const switches: Promise<unknown>[] = [];
  userIds.forEach((userId, i) => {
    // Through query(), like the checks: every statement takes the same steps to the driver, so they reach the
    // connection in the order they are issued here.
    if (i > 0) switches.push(query(db, sql`select pg_catalog.set_config('app.current_user_id', ${userId}, true)`));
    checks.push(unseenAnnounced(db, { tenantId, userId }, changes));
  });
  const [results] = await Promise.all([Promise.all(checks), Promise.all(switches)]);
  return new Map(userIds.map((userId, i) => [userId, results[i]!]));
}
