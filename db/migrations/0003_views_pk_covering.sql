-- The primary key of user_skill_views carries the view's values (INCLUDE), so reading a user's views
-- (viewsForSkills, whatsNew) is an index-only scan over a few adjacent index pages instead of one heap page per
-- view row, which at scale are scattered over the table. The key columns, and so uniqueness and the ON CONFLICT
-- arbiter, are unchanged. (These columns are already non-HOT: last_viewed_at is in the (tenant, user,
-- last_viewed_at) index.)
ALTER TABLE "user_skill_views" DROP CONSTRAINT "user_skill_views_pk";--> statement-breakpoint
ALTER TABLE "user_skill_views" ADD CONSTRAINT "user_skill_views_pk" PRIMARY KEY ("tenant_id", "user_id", "skill_id")
  INCLUDE ("first_viewed_at", "last_viewed_at", "last_viewed_version", "view_count");
