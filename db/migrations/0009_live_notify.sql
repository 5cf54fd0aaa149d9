-- Live updates (DESIGN.md, Live updates): the catalogue announces changes on the channel `skill_views_changes` with
-- ids only, `<tenant id>:<skill id>:<kind>:<number>`, where kind is `content` (the number is the skill's new content
-- revision) or `feedback` (the number is the new feedback row's seq). NOTIFY is transactional: listeners hear of a
-- change only once its transaction commits, and identical payloads in one transaction arrive once. Every listening
-- server re-checks each notification under each subscriber's own RLS scope before telling anyone, so a payload tells
-- nothing by itself and a forged one reaches nobody.
CREATE OR REPLACE FUNCTION "skill_views_notify_content"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pg_catalog.pg_notify('skill_views_changes',
    NEW.tenant_id::text || ':' || NEW.id::text || ':content:' || NEW.content_revision::text);
  RETURN NULL;
END
$$;--> statement-breakpoint
DROP TRIGGER IF EXISTS "skills_notify_content" ON "skills";--> statement-breakpoint
-- Only when the content revision moves (name, description or published version; migration 0005): numbering feedback
-- also updates the skill row (feedback_seq) and must not announce a content change.
CREATE TRIGGER "skills_notify_content" AFTER UPDATE ON "skills"
  FOR EACH ROW WHEN (NEW.content_revision IS DISTINCT FROM OLD.content_revision)
  EXECUTE FUNCTION "skill_views_notify_content"();--> statement-breakpoint
CREATE OR REPLACE FUNCTION "skill_views_notify_feedback"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pg_catalog.pg_notify('skill_views_changes',
    NEW.tenant_id::text || ':' || NEW.skill_id::text || ':feedback:' || NEW.seq::text);
  RETURN NULL;
END
$$;--> statement-breakpoint
DROP TRIGGER IF EXISTS "skill_feedback_notify" ON "skill_feedback";--> statement-breakpoint
CREATE TRIGGER "skill_feedback_notify" AFTER INSERT ON "skill_feedback"
  FOR EACH ROW EXECUTE FUNCTION "skill_views_notify_feedback"();
