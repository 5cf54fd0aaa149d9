-- Read state (docs: DESIGN.md "What changed since seen" means): content revisions and their history, the
-- transaction that inserted each feedback, what each view saw, the tracking preference, and the feed's
-- skills-first index. Triggers and the backfill of existing rows are in 0006.
-- True only in the table owner's retention job: the owner's privileges and skillviews.maintenance = 'retention'
-- in its transaction. Requests run as the application role, which is never a member of the owner.
-- Every name is schema-qualified and pg_temp comes last: a temporary table named pg_class (any role with TEMP may
-- make one) must not answer for the catalogue.
CREATE OR REPLACE FUNCTION "skillviews_owner_maintenance"() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(pg_catalog.current_setting('skillviews.maintenance', true), '') = 'retention'
     AND pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
  FROM pg_catalog.pg_class c WHERE c.oid = 'public.user_skill_views'::pg_catalog.regclass
$$;--> statement-breakpoint
CREATE TABLE "skill_revisions" (
	"tenant_id" uuid NOT NULL,
	"skill_id" uuid NOT NULL,
	"revision" bigint NOT NULL,
	"name" text,
	"description" text,
	"published_version" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "skill_revisions_pk" PRIMARY KEY("tenant_id","skill_id","revision")
);
--> statement-breakpoint
ALTER TABLE "skill_revisions" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "user_tracking_preferences" (
	"tenant_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"tracking_enabled" boolean NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "user_tracking_preferences_pk" PRIMARY KEY("tenant_id","user_id")
);
--> statement-breakpoint
ALTER TABLE "user_tracking_preferences" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_feedback" ADD COLUMN "created_xid" "xid8";--> statement-breakpoint
ALTER TABLE "skills" ADD COLUMN "content_revision" bigint DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD COLUMN "seen_revision" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD COLUMN "seen_snapshot" "pg_snapshot";--> statement-breakpoint
ALTER TABLE "skill_revisions" ADD CONSTRAINT "skill_revisions_skill_fk" FOREIGN KEY ("tenant_id","skill_id") REFERENCES "public"."skills"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_tracking_preferences" ADD CONSTRAINT "user_tracking_preferences_user_fk" FOREIGN KEY ("tenant_id","user_id") REFERENCES "public"."users"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "skill_feedback_skill_xid_idx" ON "skill_feedback" USING btree ("tenant_id","skill_id","created_xid");--> statement-breakpoint
CREATE INDEX "skills_published_updated_idx" ON "skills" USING btree ("tenant_id","updated_at","id") WHERE "skills"."status" = 'published';--> statement-breakpoint
CREATE POLICY "the owner prunes expired views" ON "user_skill_views" AS PERMISSIVE FOR SELECT TO public USING ((select skillviews_owner_maintenance()));--> statement-breakpoint
CREATE POLICY "the owner deletes expired views" ON "user_skill_views" AS PERMISSIVE FOR DELETE TO public USING ((select skillviews_owner_maintenance()));--> statement-breakpoint
CREATE POLICY "rows are visible only inside their own tenant" ON "skill_revisions" AS PERMISSIVE FOR ALL TO public USING (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "rows are visible only inside their own tenant" ON "user_tracking_preferences" AS PERMISSIVE FOR ALL TO public USING (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "a user sees only their own preference" ON "user_tracking_preferences" AS RESTRICTIVE FOR ALL TO public USING (user_id = (select nullif(current_setting('app.current_user_id', true), '')::uuid)) WITH CHECK (user_id = (select nullif(current_setting('app.current_user_id', true), '')::uuid));--> statement-breakpoint
ALTER POLICY "a user sees only their own views" ON "user_skill_views" TO public USING (user_id = (select nullif(current_setting('app.current_user_id', true), '')::uuid) or (select skillviews_owner_maintenance())) WITH CHECK (user_id = (select nullif(current_setting('app.current_user_id', true), '')::uuid));