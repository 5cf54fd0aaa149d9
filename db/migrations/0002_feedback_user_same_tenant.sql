-- A feedback row may only name a user of its own tenant; deleting the user keeps the feedback, anonymised.
ALTER TABLE "skill_feedback" DROP CONSTRAINT IF EXISTS "skill_feedback_user_id_users_id_fk";--> statement-breakpoint
ALTER TABLE "skill_feedback" DROP CONSTRAINT IF EXISTS "skill_feedback_user_fk";--> statement-breakpoint
ALTER TABLE "skill_feedback" ADD CONSTRAINT "skill_feedback_user_fk" FOREIGN KEY ("tenant_id","user_id") REFERENCES "public"."users"("tenant_id","id") ON DELETE SET NULL ("user_id");
