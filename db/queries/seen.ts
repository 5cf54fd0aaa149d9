// The one definition of "changed since seen" (DESIGN.md), as SQL fragments every read and write of the read state
// uses: viewsForSkills, whatsNew, whatsNewCount, changeSummary, markSeen and markAllSeen.
//
// A view row records what the caller's last recordView/markSeen statement saw: the skill's content revision
// (`seen_revision`, moved by a trigger in the writing transaction, so in commit order) and that statement's MVCC
// snapshot (`seen_snapshot`). Content is unseen when the skill's current name, description or published version
// differs from what revision `seen_revision` held. Feedback is unseen when its inserting transaction is not
// visible in `seen_snapshot`: an edit or feedback whose transaction began before a view but committed after it is
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
 * The SET list that moves view `v` forward to what a statement saw: the greater revision (a trigger then copies that
 * revision's content key and published version into seen_key and seen_version, migration 0007) and the later
 * snapshot, so out-of-order commits never move what was seen backwards.
 */
export function seenAssignments(incoming: { revision: SQL; snapshot: SQL }): SQL {
  return sql`seen_revision = greatest(v.seen_revision, ${incoming.revision}),
        seen_snapshot = ${laterSnapshot(sql`v.seen_snapshot`, incoming.snapshot)}`;
}

/**
 * True when feedback row `f` is new to view `v` of user `userId`: written by someone else (own feedback never
 * counts) in a transaction the view's snapshot could not see. Rows from before the read state (no transaction
 * id, or a view without a snapshot) are compared by clock, as they were then. `f.created_xid >= xmin` lets the
 * (tenant_id, skill_id, created_xid) index skip everything the snapshot certainly saw.
 */
export function feedbackUnseen(userId: string): SQL {
  return sql`(f.user_id is distinct from ${userId}::uuid and (
      (v.seen_snapshot is not null and f.created_xid >= pg_snapshot_xmin(v.seen_snapshot)
        and not pg_visible_in_snapshot(f.created_xid, v.seen_snapshot))
      or (v.seen_snapshot is null and (f.created_xid is not null or f.created_at > v.last_viewed_at))))`;
}

/** True when view `v` (of user `userId`) has new feedback; needs `v` in scope. */
export function hasUnseenFeedback(userId: string): SQL {
  return sql`exists (select 1 from skill_feedback f
      where f.tenant_id = v.tenant_id and f.skill_id = v.skill_id and ${feedbackUnseen(userId)})`;
}

/**
 * The seen snapshot to keep when a statement with snapshot `incoming` marks a row whose stored one is `stored`:
 * the later of the two (by xmax, the next transaction id when it was taken), so concurrent views committing out
 * of order never move what was seen backwards. Equal xmax: the incoming one, taken no earlier in practice.
 */
export function laterSnapshot(stored: SQL, incoming: SQL): SQL {
  return sql`case when ${stored} is not null and pg_snapshot_xmax(${stored}) > pg_snapshot_xmax(${incoming})
      then ${stored} else ${incoming} end`;
}
