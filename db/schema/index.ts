// Drizzle schema: the six tables, their keys and indexes, and the row-level security policies that isolate tenants.
import { sql } from 'drizzle-orm';
import {
  check,
  foreignKey,
  index,
  integer,
  pgEnum,
  pgPolicy,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uuid,
  type PgTableExtraConfigValue,
} from 'drizzle-orm/pg-core';

/** The tenant of the current request transaction; NULL (matching no row) when unset or empty. */
export const currentTenantId = sql`(select nullif(current_setting('app.current_tenant_id', true), '')::uuid)`;
/** The user of the current request transaction; NULL when unset or empty. */
export const currentUserId = sql`(select nullif(current_setting('app.current_user_id', true), '')::uuid)`;

const tenantScoped = sql`tenant_id = ${currentTenantId}`;

/** Every table's tenant isolation policy: rows of other tenants are invisible and cannot be written. */
const tenantIsolation = (name = 'rows are visible only inside their own tenant') =>
  pgPolicy(name, { as: 'permissive', for: 'all', using: tenantScoped, withCheck: tenantScoped });

const createdAt = () => timestamp({ withTimezone: true }).notNull().defaultNow();

export const skillStatus = pgEnum('skill_status', ['draft', 'published', 'archived']);

export const tenants = pgTable(
  'tenants',
  {
    id: uuid().primaryKey().defaultRandom(),
    name: text().notNull(),
    slug: text().notNull().unique(),
    createdAt: createdAt(),
  },
  () => [
    pgPolicy('a tenant sees only itself', {
      as: 'permissive',
      for: 'all',
      using: sql`id = ${currentTenantId}`,
      withCheck: sql`id = ${currentTenantId}`,
    }),
  ],
).enableRLS();

export const users = pgTable(
  'users',
  {
    id: uuid().primaryKey().defaultRandom(),
    tenantId: uuid()
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    email: text().notNull(),
    name: text().notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    unique('users_tenant_email_unique').on(t.tenantId, t.email),
    // Target of composite foreign keys, so a row can only point at a user of its own tenant.
    unique('users_tenant_id_unique').on(t.tenantId, t.id),
    tenantIsolation(),
  ],
).enableRLS();

export const skills = pgTable(
  'skills',
  {
    id: uuid().primaryKey().defaultRandom(),
    tenantId: uuid()
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text().notNull(),
    slug: text().notNull(),
    description: text().notNull().default(''),
    category: text().notNull(),
    status: skillStatus().notNull().default('draft'),
    publishedVersionId: uuid(),
    createdAt: createdAt(),
    // Moves only on a content change; a trigger in the custom migration enforces it.
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t): PgTableExtraConfigValue[] => [
    unique('skills_tenant_slug_unique').on(t.tenantId, t.slug),
    unique('skills_tenant_id_unique').on(t.tenantId, t.id),
    // The published version must be one of this skill's own versions.
    foreignKey({
      name: 'skills_published_version_fk',
      columns: [t.id, t.publishedVersionId],
      foreignColumns: [skillVersions.skillId, skillVersions.id],
    }),
    tenantIsolation(),
  ],
).enableRLS();

export const skillVersions = pgTable(
  'skill_versions',
  {
    id: uuid().primaryKey().defaultRandom(),
    tenantId: uuid().notNull(),
    skillId: uuid().notNull(),
    version: integer().notNull(),
    name: text().notNull(),
    description: text().notNull().default(''),
    createdAt: createdAt(),
  },
  (t): PgTableExtraConfigValue[] => [
    unique('skill_versions_skill_version_unique').on(t.skillId, t.version),
    unique('skill_versions_skill_id_unique').on(t.skillId, t.id),
    foreignKey({
      name: 'skill_versions_skill_fk',
      columns: [t.tenantId, t.skillId],
      foreignColumns: [skills.tenantId, skills.id],
    }).onDelete('cascade'),
    check('skill_versions_version_positive', sql`${t.version} >= 1`),
    tenantIsolation(),
  ],
).enableRLS();

export const skillFeedback = pgTable(
  'skill_feedback',
  {
    id: uuid().primaryKey().defaultRandom(),
    tenantId: uuid().notNull(),
    skillId: uuid().notNull(),
    // References (tenant_id, user_id) → users, ON DELETE SET NULL (user_id): declared in migration 0002,
    // since drizzle-kit cannot emit a SET NULL limited to one column of a composite key.
    userId: uuid(),
    feedbackType: text().notNull(),
    comment: text(),
    createdAt: createdAt(),
  },
  (t) => [
    index('skill_feedback_skill_created_idx').on(t.skillId, t.createdAt),
    foreignKey({
      name: 'skill_feedback_skill_fk',
      columns: [t.tenantId, t.skillId],
      foreignColumns: [skills.tenantId, skills.id],
    }).onDelete('cascade'),
    tenantIsolation(),
  ],
).enableRLS();

export const userSkillViews = pgTable(
  'user_skill_views',
  {
    tenantId: uuid().notNull(),
    userId: uuid().notNull(),
    skillId: uuid().notNull(),
    firstViewedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    lastViewedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    lastViewedVersion: integer(),
    viewCount: integer().notNull().default(1),
  },
  (t) => [
    // The primary key also INCLUDEs the view's columns (migration 0003; drizzle cannot declare INCLUDE), for index-only reads.
    primaryKey({ name: 'user_skill_views_pk', columns: [t.tenantId, t.userId, t.skillId] }),
    index('user_skill_views_user_last_viewed_idx').on(t.tenantId, t.userId, t.lastViewedAt),
    // Serves the cascade when a skill is deleted.
    index('user_skill_views_skill_idx').on(t.tenantId, t.skillId),
    foreignKey({
      name: 'user_skill_views_user_fk',
      columns: [t.tenantId, t.userId],
      foreignColumns: [users.tenantId, users.id],
    }).onDelete('cascade'),
    foreignKey({
      name: 'user_skill_views_skill_fk',
      columns: [t.tenantId, t.skillId],
      foreignColumns: [skills.tenantId, skills.id],
    }).onDelete('cascade'),
    check('user_skill_views_count_positive', sql`${t.viewCount} >= 1`),
    tenantIsolation(),
    pgPolicy('a user sees only their own views', {
      as: 'restrictive',
      for: 'all',
      using: sql`user_id = ${currentUserId}`,
      withCheck: sql`user_id = ${currentUserId}`,
    }),
  ],
).enableRLS();

export type Tenant = typeof tenants.$inferSelect;
export type User = typeof users.$inferSelect;
export type Skill = typeof skills.$inferSelect;
export type SkillVersion = typeof skillVersions.$inferSelect;
export type SkillFeedback = typeof skillFeedback.$inferSelect;
export type UserSkillView = typeof userSkillViews.$inferSelect;

/** Tables under row-level security, checked at start-up and by the tests. */
export const rlsTables = ['tenants', 'users', 'skills', 'skill_versions', 'skill_feedback', 'user_skill_views'] as const;
