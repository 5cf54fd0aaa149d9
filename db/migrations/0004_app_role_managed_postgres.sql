-- The application role on managed Postgres, where the owner of the tables is neither a superuser nor has
-- CREATEROLE: a role a DBA created beforehand (DB_APP_ROLE) is only granted to, never created or altered, and
-- nothing needs a privilege the owner lacks. When something is missing, the error says what a DBA should run.
-- db/migrate.ts calls this after every migration run with the configured role name; no migration names a role.
CREATE OR REPLACE FUNCTION "skillviews_ensure_app_role"(role_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
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
  EXECUTE format('GRANT SELECT ON public.tenants, public.users, public.skills, public.skill_versions, public.skill_feedback TO %I', role_name);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE ON public.user_skill_views TO %I', role_name);
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
