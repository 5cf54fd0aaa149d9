CREATE TYPE "public"."skill_status" AS ENUM('draft', 'published', 'archived');--> statement-breakpoint
CREATE TABLE "skill_feedback" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"skill_id" uuid NOT NULL,
	"user_id" uuid,
	"feedback_type" text NOT NULL,
	"comment" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "skill_feedback" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "skill_versions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"skill_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "skill_versions_skill_version_unique" UNIQUE("skill_id","version"),
	CONSTRAINT "skill_versions_skill_id_unique" UNIQUE("skill_id","id"),
	CONSTRAINT "skill_versions_version_positive" CHECK ("skill_versions"."version" >= 1)
);
--> statement-breakpoint
ALTER TABLE "skill_versions" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "skills" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"name" text NOT NULL,
	"slug" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"category" text NOT NULL,
	"status" "skill_status" DEFAULT 'draft' NOT NULL,
	"published_version_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "skills_tenant_slug_unique" UNIQUE("tenant_id","slug"),
	CONSTRAINT "skills_tenant_id_unique" UNIQUE("tenant_id","id")
);
--> statement-breakpoint
ALTER TABLE "skills" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "tenants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"slug" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tenants_slug_unique" UNIQUE("slug")
);
--> statement-breakpoint
ALTER TABLE "tenants" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "user_skill_views" (
	"tenant_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"skill_id" uuid NOT NULL,
	"first_viewed_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_viewed_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_viewed_version" integer,
	"view_count" integer DEFAULT 1 NOT NULL,
	CONSTRAINT "user_skill_views_pk" PRIMARY KEY("tenant_id","user_id","skill_id"),
	CONSTRAINT "user_skill_views_count_positive" CHECK ("user_skill_views"."view_count" >= 1)
);
--> statement-breakpoint
ALTER TABLE "user_skill_views" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid NOT NULL,
	"email" text NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "users_tenant_email_unique" UNIQUE("tenant_id","email"),
	CONSTRAINT "users_tenant_id_unique" UNIQUE("tenant_id","id")
);
--> statement-breakpoint
ALTER TABLE "users" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "skill_feedback" ADD CONSTRAINT "skill_feedback_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "skill_feedback" ADD CONSTRAINT "skill_feedback_skill_fk" FOREIGN KEY ("tenant_id","skill_id") REFERENCES "public"."skills"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "skill_versions" ADD CONSTRAINT "skill_versions_skill_fk" FOREIGN KEY ("tenant_id","skill_id") REFERENCES "public"."skills"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "skills" ADD CONSTRAINT "skills_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "skills" ADD CONSTRAINT "skills_published_version_fk" FOREIGN KEY ("id","published_version_id") REFERENCES "public"."skill_versions"("skill_id","id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD CONSTRAINT "user_skill_views_user_fk" FOREIGN KEY ("tenant_id","user_id") REFERENCES "public"."users"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD CONSTRAINT "user_skill_views_skill_fk" FOREIGN KEY ("tenant_id","skill_id") REFERENCES "public"."skills"("tenant_id","id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "users" ADD CONSTRAINT "users_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "skill_feedback_skill_created_idx" ON "skill_feedback" USING btree ("skill_id","created_at");--> statement-breakpoint
CREATE INDEX "user_skill_views_user_last_viewed_idx" ON "user_skill_views" USING btree ("tenant_id","user_id","last_viewed_at");--> statement-breakpoint
CREATE INDEX "user_skill_views_skill_idx" ON "user_skill_views" USING btree ("tenant_id","skill_id");--> statement-breakpoint
CREATE POLICY "rows are visible only inside their own tenant" ON "skill_feedback" AS PERMISSIVE FOR ALL TO public USING (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "rows are visible only inside their own tenant" ON "skill_versions" AS PERMISSIVE FOR ALL TO public USING (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "rows are visible only inside their own tenant" ON "skills" AS PERMISSIVE FOR ALL TO public USING (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "a tenant sees only itself" ON "tenants" AS PERMISSIVE FOR ALL TO public USING (id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "rows are visible only inside their own tenant" ON "user_skill_views" AS PERMISSIVE FOR ALL TO public USING (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "a user sees only their own views" ON "user_skill_views" AS RESTRICTIVE FOR ALL TO public USING (user_id = (select nullif(current_setting('app.current_user_id', true), '')::uuid)) WITH CHECK (user_id = (select nullif(current_setting('app.current_user_id', true), '')::uuid));--> statement-breakpoint
CREATE POLICY "rows are visible only inside their own tenant" ON "users" AS PERMISSIVE FOR ALL TO public USING (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) WITH CHECK (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid));