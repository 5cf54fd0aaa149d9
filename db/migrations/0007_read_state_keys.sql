ALTER TABLE "skill_revisions" ADD COLUMN "content_key" bigint;--> statement-breakpoint
ALTER TABLE "skills" ADD COLUMN "published_version" integer;--> statement-breakpoint
ALTER TABLE "skills" ADD COLUMN "content_key" bigint DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD COLUMN "seen_key" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD COLUMN "seen_version" integer;--> statement-breakpoint
-- What the read procedures compare, kept on the rows themselves so a feed or a count needs no lookup per skill
-- (BENCHMARKS.md, "Read state"): skills.published_version (the published version's number) and skills.content_key
-- (the first revision whose name and description equal the current ones), and on each view the key and published
-- version of the revision it saw. "Content unseen" (db/queries/seen.ts) is then: key differs, or a published
-- version differs from the one seen. The same answers as comparing with the history row, which changeSummary still
-- reads to name the fields.
ALTER TABLE "skills" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_versions" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_revisions" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_skill_views" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
-- Keys of the history: a revision whose name or description is unknown (0006's backfill) is its own key, equal to
-- no other.
UPDATE "skill_revisions" r SET content_key = CASE WHEN r.name IS NULL OR r.description IS NULL THEN r.revision
  ELSE (SELECT min(r2.revision) FROM "skill_revisions" r2
        WHERE r2.tenant_id = r.tenant_id AND r2.skill_id = r.skill_id AND r2.name = r.name AND r2.description = r.description) END;--> statement-breakpoint
-- Before the triggers below know these columns (0006's leave them alone).
UPDATE "skills" s SET
  published_version = (SELECT v.version FROM "skill_versions" v WHERE v.id = s.published_version_id),
  content_key = coalesce((SELECT r.content_key FROM "skill_revisions" r
                          WHERE r.tenant_id = s.tenant_id AND r.skill_id = s.id AND r.revision = s.content_revision),
                         s.content_revision);--> statement-breakpoint
UPDATE "user_skill_views" v SET seen_key = r.content_key, seen_version = r.published_version
FROM "skill_revisions" r
WHERE r.tenant_id = v.tenant_id AND r.skill_id = v.skill_id AND r.revision = v.seen_revision;--> statement-breakpoint
ALTER TABLE "skills" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_versions" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_revisions" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_skill_views" FORCE ROW LEVEL SECURITY;--> statement-breakpoint

-- The content revision (as in 0006), now with the published version's number and the content key. Any other value
-- written to these three columns is ignored.
CREATE OR REPLACE FUNCTION "skills_content_revision"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.content_revision := 1;
    NEW.content_key := 1;
    NEW.published_version := (SELECT v.version FROM public.skill_versions v WHERE v.id = NEW.published_version_id);
    RETURN NEW;
  END IF;
  IF NEW.published_version_id IS DISTINCT FROM OLD.published_version_id THEN
    NEW.published_version := (SELECT v.version FROM public.skill_versions v WHERE v.id = NEW.published_version_id);
  ELSE
    NEW.published_version := OLD.published_version;
  END IF;
  IF NEW.name IS DISTINCT FROM OLD.name
     OR NEW.description IS DISTINCT FROM OLD.description
     OR NEW.published_version_id IS DISTINCT FROM OLD.published_version_id THEN
    NEW.content_revision := OLD.content_revision + 1;
  ELSE
    NEW.content_revision := OLD.content_revision;
  END IF;
  IF NEW.name IS DISTINCT FROM OLD.name OR NEW.description IS DISTINCT FROM OLD.description THEN
    NEW.content_key := coalesce(
      (SELECT min(r.content_key) FROM public.skill_revisions r
       WHERE r.tenant_id = NEW.tenant_id AND r.skill_id = NEW.id AND r.name = NEW.name AND r.description = NEW.description),
      NEW.content_revision);
  ELSE
    NEW.content_key := OLD.content_key;
  END IF;
  RETURN NEW;
END
$$;--> statement-breakpoint
CREATE OR REPLACE FUNCTION "skills_record_revision"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.content_revision <> OLD.content_revision THEN
    INSERT INTO public.skill_revisions (tenant_id, skill_id, revision, name, description, published_version, content_key)
    VALUES (NEW.tenant_id, NEW.id, NEW.content_revision, NEW.name, NEW.description, NEW.published_version, NEW.content_key);
  END IF;
  RETURN NULL;
END
$$;--> statement-breakpoint

-- A view's seen key and version are those of the revision it saw, whoever writes seen_revision (recordView, markSeen,
-- or the owner importing rows): one primary-key lookup in skill_revisions, only when seen_revision changes. No
-- history row (seen_revision 0): key 0, equal to no skill's, so the content reads as unseen.
CREATE OR REPLACE FUNCTION "user_skill_views_seen_content"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  seen record;
BEGIN
  IF TG_OP = 'INSERT' OR NEW.seen_revision IS DISTINCT FROM OLD.seen_revision THEN
    SELECT r.content_key, r.published_version INTO seen FROM public.skill_revisions r
    WHERE r.tenant_id = NEW.tenant_id AND r.skill_id = NEW.skill_id AND r.revision = NEW.seen_revision;
    IF FOUND THEN
      NEW.seen_key := coalesce(seen.content_key, 0);
      NEW.seen_version := seen.published_version;
    ELSE
      NEW.seen_key := 0;
      NEW.seen_version := NULL;
    END IF;
  ELSE
    NEW.seen_key := OLD.seen_key;
    NEW.seen_version := OLD.seen_version;
  END IF;
  RETURN NEW;
END
$$;--> statement-breakpoint
DROP TRIGGER IF EXISTS "user_skill_views_seen_content" ON "user_skill_views";--> statement-breakpoint
CREATE TRIGGER "user_skill_views_seen_content" BEFORE INSERT OR UPDATE ON "user_skill_views"
  FOR EACH ROW EXECUTE FUNCTION "user_skill_views_seen_content"();--> statement-breakpoint

-- The primary key carries what badges, the feed and the count compare, for index-only reads of the view rows.
ALTER TABLE "user_skill_views" DROP CONSTRAINT "user_skill_views_pk";--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD CONSTRAINT "user_skill_views_pk" PRIMARY KEY ("tenant_id", "user_id", "skill_id")
  INCLUDE ("first_viewed_at", "last_viewed_at", "last_viewed_version", "view_count", "seen_revision", "seen_key", "seen_version");
