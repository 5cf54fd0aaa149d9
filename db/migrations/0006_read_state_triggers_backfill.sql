-- What drizzle-kit cannot emit for the read state (0005): FORCE ROW LEVEL SECURITY on the new tables, the triggers
-- that move a skill's content revision and record what each revision held, the trigger that stamps feedback with
-- its transaction, the app role's new grants, and the backfill of existing rows.
--
-- Backfill rule: nothing already seen reappears and nothing unseen disappears. Before this migration a view was
-- "unseen" when the skill's updated_at was after last_viewed_at or its published version was newer than
-- last_viewed_version. Each existing skill gets revisions 1..K for what its unseen viewers last saw (the
-- snapshot of their last seen version; when that cannot be told apart from the current content, unknown name and
-- description, which reads as both changed) and K + 1 for its current content. Seen views point at K + 1, unseen
-- ones at what they saw. Existing feedback has no transaction id and existing views no snapshot: such a view
-- keeps comparing feedback by clock (created_at > last_viewed_at) until it is seen again.

-- The owner runs this; FORCE would hide every tenant's rows from a non-superuser owner. Restored at the end.
ALTER TABLE "skills" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_versions" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_skill_views" NO FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TEMPORARY TABLE "skillviews_legacy_state" ON COMMIT DROP AS
  SELECT v.tenant_id, v.user_id, v.skill_id,
         (s.updated_at > v.last_viewed_at OR coalesce(pv.version, 0) > coalesce(v.last_viewed_version, 0)) AS unseen,
         v.last_viewed_version,
         -- A seen version whose row is gone: its number is known, its name and description are not.
         CASE WHEN lv.id IS NOT NULL THEN lv.name WHEN v.last_viewed_version IS NULL THEN s.name END AS seen_name,
         CASE WHEN lv.id IS NOT NULL THEN lv.description WHEN v.last_viewed_version IS NULL THEN s.description END AS seen_description,
         v.last_viewed_version AS seen_version,
         s.name AS cur_name, s.description AS cur_description, pv.version AS cur_version
  FROM "user_skill_views" v
  JOIN "skills" s ON s.tenant_id = v.tenant_id AND s.id = v.skill_id
  LEFT JOIN "skill_versions" pv ON pv.id = s.published_version_id
  LEFT JOIN "skill_versions" lv ON lv.skill_id = s.id AND lv.version = v.last_viewed_version;--> statement-breakpoint
-- An unseen state whose content equals the current one (an in-place change the old rule saw only by clock): we
-- cannot know which field changed, so both read as changed.
UPDATE "skillviews_legacy_state" SET seen_name = NULL, seen_description = NULL
WHERE unseen
  AND seen_name IS NOT DISTINCT FROM cur_name
  AND seen_description IS NOT DISTINCT FROM cur_description
  AND (cur_version IS NULL OR cur_version IS NOT DISTINCT FROM seen_version);--> statement-breakpoint
CREATE TEMPORARY TABLE "skillviews_legacy_revision" ON COMMIT DROP AS
  SELECT tenant_id, skill_id, last_viewed_version, seen_name, seen_description, seen_version,
         row_number() OVER (PARTITION BY tenant_id, skill_id ORDER BY last_viewed_version NULLS FIRST) AS revision
  FROM (SELECT DISTINCT tenant_id, skill_id, last_viewed_version, seen_name, seen_description, seen_version
        FROM "skillviews_legacy_state" WHERE unseen) d;--> statement-breakpoint
INSERT INTO "skill_revisions" (tenant_id, skill_id, revision, name, description, published_version)
  SELECT tenant_id, skill_id, revision, seen_name, seen_description, seen_version FROM "skillviews_legacy_revision";--> statement-breakpoint
UPDATE "skills" s SET content_revision = 1 + coalesce(
  (SELECT max(r.revision) FROM "skillviews_legacy_revision" r WHERE r.tenant_id = s.tenant_id AND r.skill_id = s.id), 0);--> statement-breakpoint
INSERT INTO "skill_revisions" (tenant_id, skill_id, revision, name, description, published_version, created_at)
  SELECT s.tenant_id, s.id, s.content_revision, s.name, s.description, pv.version, s.updated_at
  FROM "skills" s LEFT JOIN "skill_versions" pv ON pv.id = s.published_version_id;--> statement-breakpoint
UPDATE "user_skill_views" v SET seen_revision = coalesce(
  (SELECT r.revision FROM "skillviews_legacy_state" st
     JOIN "skillviews_legacy_revision" r
       ON r.tenant_id = st.tenant_id AND r.skill_id = st.skill_id
      AND r.last_viewed_version IS NOT DISTINCT FROM st.last_viewed_version
      AND r.seen_name IS NOT DISTINCT FROM st.seen_name AND r.seen_description IS NOT DISTINCT FROM st.seen_description
   WHERE st.tenant_id = v.tenant_id AND st.user_id = v.user_id AND st.skill_id = v.skill_id AND st.unseen),
  (SELECT s.content_revision FROM "skills" s WHERE s.tenant_id = v.tenant_id AND s.id = v.skill_id));--> statement-breakpoint
ALTER TABLE "skills" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_versions" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_skill_views" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_revisions" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_tracking_preferences" FORCE ROW LEVEL SECURITY;--> statement-breakpoint

-- A skill's content revision: 1 at insert; + 1 when its name, description or published version changes, in the
-- writing transaction (which holds the row lock, so revisions of one skill are numbered in commit order). Any
-- other value written to content_revision is ignored. Each revision's content is recorded in skill_revisions.
CREATE OR REPLACE FUNCTION "skills_content_revision"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.content_revision := 1;
  ELSIF NEW.name IS DISTINCT FROM OLD.name
     OR NEW.description IS DISTINCT FROM OLD.description
     OR NEW.published_version_id IS DISTINCT FROM OLD.published_version_id THEN
    NEW.content_revision := OLD.content_revision + 1;
  ELSE
    NEW.content_revision := OLD.content_revision;
  END IF;
  RETURN NEW;
END
$$;--> statement-breakpoint
CREATE OR REPLACE FUNCTION "skills_record_revision"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.content_revision <> OLD.content_revision THEN
    INSERT INTO public.skill_revisions (tenant_id, skill_id, revision, name, description, published_version)
    VALUES (NEW.tenant_id, NEW.id, NEW.content_revision, NEW.name, NEW.description,
            (SELECT v.version FROM public.skill_versions v WHERE v.id = NEW.published_version_id));
  END IF;
  RETURN NULL;
END
$$;--> statement-breakpoint
DROP TRIGGER IF EXISTS "skills_content_revision" ON "skills";--> statement-breakpoint
CREATE TRIGGER "skills_content_revision" BEFORE INSERT OR UPDATE ON "skills"
  FOR EACH ROW EXECUTE FUNCTION "skills_content_revision"();--> statement-breakpoint
DROP TRIGGER IF EXISTS "skills_record_revision" ON "skills";--> statement-breakpoint
CREATE TRIGGER "skills_record_revision" AFTER INSERT OR UPDATE ON "skills"
  FOR EACH ROW EXECUTE FUNCTION "skills_record_revision"();--> statement-breakpoint

-- Feedback carries its inserting (top-level) transaction, whatever the writer sends.
CREATE OR REPLACE FUNCTION "skill_feedback_stamp_xid"() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  NEW.created_xid := pg_current_xact_id();
  RETURN NEW;
END
$$;--> statement-breakpoint
DROP TRIGGER IF EXISTS "skill_feedback_stamp_xid" ON "skill_feedback";--> statement-breakpoint
CREATE TRIGGER "skill_feedback_stamp_xid" BEFORE INSERT ON "skill_feedback"
  FOR EACH ROW EXECUTE FUNCTION "skill_feedback_stamp_xid"();--> statement-breakpoint

-- The primary key also carries the seen revision, so badges and the feed stay index-only reads of the view rows.
ALTER TABLE "user_skill_views" DROP CONSTRAINT "user_skill_views_pk";--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD CONSTRAINT "user_skill_views_pk" PRIMARY KEY ("tenant_id", "user_id", "skill_id")
  INCLUDE ("first_viewed_at", "last_viewed_at", "last_viewed_version", "view_count", "seen_revision");--> statement-breakpoint

-- The app role's grants, now with the read state: SELECT on the revision history, DELETE on the caller's own view
-- rows (forgetMyViews; the personal policy limits it to them) and the caller's tracking preference.
CREATE OR REPLACE FUNCTION "skillviews_ensure_app_role"(role_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  may_create_roles boolean;
BEGIN
  IF role_name IS NULL OR role_name = '' THEN
    RAISE EXCEPTION 'application role name must not be empty';
  END IF;
  SELECT r.rolsuper OR r.rolcreaterole INTO may_create_roles FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
    IF NOT may_create_roles THEN
      RAISE EXCEPTION 'application role "%" does not exist, and "%" may not create roles', role_name, current_user
        USING HINT = format('Ask a DBA to run: CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS; GRANT %I TO %I;',
                            role_name, role_name, current_user);
    END IF;
    EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION', role_name);
  END IF;
  -- PUBLIC usually has USAGE on schema public; grant only when it is missing (the owner may not own the schema).
  IF NOT has_schema_privilege(role_name, 'public', 'USAGE') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role_name);
  END IF;
  EXECUTE format('GRANT USAGE ON TYPE public.skill_status TO %I', role_name);
  EXECUTE format('GRANT SELECT ON public.tenants, public.users, public.skills, public.skill_versions, public.skill_feedback, public.skill_revisions TO %I', role_name);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.user_skill_views, public.user_tracking_preferences TO %I', role_name);
  -- A login role that is not a superuser must be a member to switch to it with set_config('role', ...).
  IF role_name <> current_user
     AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
     AND NOT pg_has_role(current_user, role_name, 'MEMBER') THEN
    BEGIN
      EXECUTE format('GRANT %I TO %I', role_name, current_user);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION '"%" is not a member of application role "%" and may not make itself one', current_user, role_name
        USING HINT = format('Ask a DBA to run: GRANT %I TO %I;', role_name, current_user);
    END;
  END IF;
END
$$;--> statement-breakpoint
REVOKE ALL ON FUNCTION "skillviews_ensure_app_role"(text) FROM PUBLIC;
