// The one definition of "changed since seen" (DESIGN.md), as SQL fragments every read and write of the read state
// uses: viewsForSkills, whatsNew, whatsNewCount, changeSummary, markSeen and markAllSeen.
//
// A view row records what the caller's last recordView/markSeen statement saw: the skill's content revision
// (`seen_revision`) and feedback count (`seen_feedback`), both moved by triggers in the writing transaction under
// the skill's row lock, so in commit order. Content is unseen when the skill's current name, description or
// published version differs from what revision `seen_revision` held; feedback by others numbered above
// `seen_feedback` is new. An edit or feedback whose transaction began before a view but committed after it is
// unseen, which no comparison of clocks (`now()` is the transaction's start) can tell.
import { sql, type SQL } from 'drizzle-orm';

/**
 * True when the caller has not seen the current content of skill `s` through view `v` (both in scope): the
 * name or description differs from the revision the caller saw (its content key: the first revision with the same
 * name and description, kept by the skills trigger, migration 0007), or a published version differs from the one
 * they saw. A published version counts only while one is published: unpublishing is not something new to see.
 * Both sides are columns of the two rows, so a feed or a count looks nothing else up; it gives the same answer as
 * comparing with the seen revision's history row (which changeSummary reads to name the fields).
 */
export const contentUnseen: SQL = sql`(s.content_revision > v.seen_revision and (s.content_key <> v.seen_key
      or (s.published_version is not null and s.published_version is distinct from v.seen_version)))`;

/**
 * The SET list that moves view `v` forward to what a statement saw of its skill: the greater content revision (a
 * trigger then copies that revision's content key and published version into seen_key and seen_version, migration
 * 0007) and the greater feedback number, so out-of-order commits never move what was seen backwards.
 */
export function seenAssignments(incoming: { revision: SQL; feedback: SQL }): SQL {
  return sql`seen_revision = greatest(v.seen_revision, ${incoming.revision}),
        seen_feedback = greatest(v.seen_feedback, ${incoming.feedback})`;
}

/**
 * True when feedback row `f` is new to view `v` of user `userId`: written by someone else (own feedback never
 * counts) and numbered above what the view saw. Numbers follow commit order (skills.feedback_seq, moved under the
 * skill's row lock by the inserting transaction), so feedback whose transaction began before a view and committed
 * after it is new. The (tenant_id, skill_id, seq) index serves it.
 */
export function feedbackUnseen(userId: string): SQL {
  return sql`(f.user_id is distinct from ${userId}::uuid and f.seq > v.seen_feedback)`;
}

/** True when view `v` (of user `userId`) has new feedback; needs `v` in scope. */
export function hasUnseenFeedback(userId: string): SQL {
  return sql`exists (select 1 from skill_feedback f
      where f.tenant_id = v.tenant_id and f.skill_id = v.skill_id and ${feedbackUnseen(userId)})`;
}
