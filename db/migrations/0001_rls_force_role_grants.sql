-- What drizzle-kit cannot emit: FORCE ROW LEVEL SECURITY, the application role and its grants,
-- and the trigger that keeps skills.updated_at for content changes only. Safe to run again.
ALTER TABLE "tenants" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "users" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skills" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_versions" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_feedback" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "user_skill_views" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
-- Creates (if missing) the role requests run as and grants it only what the procedures need.
-- The role name is a parameter so deployments can choose it (DB_APP_ROLE); db/migrate.ts calls this
-- with the configured name after the migrations (no migration names a role: see 0004). An existing role is never altered: the start-up check reports
-- a role that is a superuser or may bypass RLS instead of silently "fixing" it.
CREATE OR REPLACE FUNCTION "skillviews_ensure_app_role"(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF role_name IS NULL OR role_name = '' THEN
    RAISE EXCEPTION 'application role name must not be empty';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION', role_name);
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role_name);
  EXECUTE format('GRANT USAGE ON TYPE public.skill_status TO %I', role_name);
  EXECUTE format('GRANT SELECT ON public.tenants, public.users, public.skills, public.skill_versions, public.skill_feedback TO %I', role_name);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE ON public.user_skill_views TO %I', role_name);
  -- A login role that is not a superuser must be a member to switch to it with set_config('role', ...).
  IF role_name <> current_user
     AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
     AND NOT pg_has_role(current_user, role_name, 'MEMBER') THEN
    EXECUTE format('GRANT %I TO %I', role_name, current_user);
  END IF;
END
$$;--> statement-breakpoint
REVOKE ALL ON FUNCTION "skillviews_ensure_app_role"(text) FROM PUBLIC;--> statement-breakpoint
-- updated_at moves only when content changes (name, description or the published version),
-- never for other column updates; an explicit new updated_at is kept (imports, backfills).
CREATE OR REPLACE FUNCTION "skills_touch_updated_at"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    IF NEW.name IS DISTINCT FROM OLD.name
       OR NEW.description IS DISTINCT FROM OLD.description
       OR NEW.published_version_id IS DISTINCT FROM OLD.published_version_id THEN
      NEW.updated_at := now();
    END IF;
  END IF;
  RETURN NEW;
END
$$;--> statement-breakpoint
DROP TRIGGER IF EXISTS "skills_touch_updated_at" ON "skills";--> statement-breakpoint
CREATE TRIGGER "skills_touch_updated_at" BEFORE UPDATE ON "skills"
  FOR EACH ROW EXECUTE FUNCTION "skills_touch_updated_at"();
