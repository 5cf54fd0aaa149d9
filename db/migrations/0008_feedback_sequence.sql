-- Feedback in commit order without transaction ids (which are not portable: a dump/restore or logical replication
-- into another cluster starts a new counter, and stored snapshots and ids from the old one then misjudge every new
-- row). Each skill counts its feedback (skills.feedback_seq); a trigger numbers each new row from it in the
-- inserting transaction, under the skill's row lock, so numbers follow commit order; a view stores the number its
-- statement saw (seen_feedback). Feedback by others numbered above it is new.
--
-- Backfill: each skill's feedback is numbered by (created_at, id). A view that compared feedback by clock (no
-- snapshot) has seen everything up to its last view, a prefix of that order; a view with a snapshot (written by
-- 0005–0007) has seen the longest prefix its snapshot could see.
ALTER TABLE "skills" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_feedback" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_skill_views" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_feedback" ADD COLUMN "seq" bigint;--> statement-breakpoint
ALTER TABLE "skills" ADD COLUMN "feedback_seq" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD COLUMN "seen_feedback" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
UPDATE "skill_feedback" f SET seq = n.seq
FROM (SELECT id, row_number() OVER (PARTITION BY tenant_id, skill_id ORDER BY created_at, id) AS seq FROM "skill_feedback") n
WHERE f.id = n.id;--> statement-breakpoint
UPDATE "skills" s SET feedback_seq = n.last
FROM (SELECT tenant_id, skill_id, max(seq) AS last FROM "skill_feedback" GROUP BY tenant_id, skill_id) n
WHERE s.tenant_id = n.tenant_id AND s.id = n.skill_id;--> statement-breakpoint
UPDATE "user_skill_views" v SET seen_feedback = coalesce(
  (SELECT min(f.seq) - 1 FROM "skill_feedback" f
   WHERE f.tenant_id = v.tenant_id AND f.skill_id = v.skill_id
     AND NOT CASE WHEN v.seen_snapshot IS NULL THEN f.created_at <= v.last_viewed_at
                  ELSE f.created_xid IS NULL OR pg_visible_in_snapshot(f.created_xid, v.seen_snapshot) END),
  (SELECT s.feedback_seq FROM "skills" s WHERE s.tenant_id = v.tenant_id AND s.id = v.skill_id),
  0);--> statement-breakpoint
ALTER TABLE "skill_feedback" ALTER COLUMN "seq" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "skill_feedback" ALTER COLUMN "seq" SET DEFAULT 0;--> statement-breakpoint
CREATE INDEX "skill_feedback_skill_seq_idx" ON "skill_feedback" USING btree ("tenant_id","skill_id","seq");--> statement-breakpoint
DROP TRIGGER IF EXISTS "skill_feedback_stamp_xid" ON "skill_feedback";--> statement-breakpoint
DROP FUNCTION IF EXISTS "skill_feedback_stamp_xid"();--> statement-breakpoint
DROP INDEX "skill_feedback_skill_xid_idx";--> statement-breakpoint
ALTER TABLE "skill_feedback" DROP COLUMN "created_xid";--> statement-breakpoint
ALTER TABLE "user_skill_views" DROP COLUMN "seen_snapshot";--> statement-breakpoint
ALTER TABLE "skills" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_feedback" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_skill_views" FORCE ROW LEVEL SECURITY;--> statement-breakpoint

-- Numbers each new feedback row from its skill's counter, whatever the writer sends. The UPDATE takes the skill's
-- row lock until the inserting transaction ends: feedback on one skill is numbered one transaction at a time (a
-- concurrent edit of that skill waits too). A skill that does not exist leaves the row to the foreign key's error.
CREATE OR REPLACE FUNCTION "skill_feedback_number"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  next_seq bigint;
BEGIN
  UPDATE public.skills s SET feedback_seq = s.feedback_seq + 1
  WHERE s.tenant_id = NEW.tenant_id AND s.id = NEW.skill_id
  RETURNING s.feedback_seq INTO next_seq;
  NEW.seq := coalesce(next_seq, 0);
  RETURN NEW;
END
$$;--> statement-breakpoint
DROP TRIGGER IF EXISTS "skill_feedback_number" ON "skill_feedback";--> statement-breakpoint
CREATE TRIGGER "skill_feedback_number" BEFORE INSERT ON "skill_feedback"
  FOR EACH ROW EXECUTE FUNCTION "skill_feedback_number"();
