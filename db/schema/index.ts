// Drizzle schema: the six tables, their keys and indexes, and the row-level security policies that isolate tenants.
import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
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

/**
 * True only for the table owner's retention job (db/queries/retention.ts): a role with the owner's privileges
 * that has set `skillviews.maintenance` to 'retention' in its transaction. The application role is never a
 * member of the owner (the start-up check), so requests cannot satisfy it. Defined in migration 0006.
 */
export const ownerMaintenance = sql`(select skillviews_owner_maintenance())`;

/** A personal row: the current user's own (restrictive, so it narrows the tenant policy). */
const personal = sql`user_id = ${currentUserId}`;
const personalPolicy = (name: string) =>
  pgPolicy(name, { as: 'restrictive', for: 'all', using: personal, withCheck: personal });

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
    // The skill's content revision: 1 at insert, + 1 on each change of name, description or published version
    // (triggers in migration 0006, which also record what each revision held in skill_revisions).
    contentRevision: bigint({ mode: 'number' }).notNull().default(1),
    // Kept by the same trigger (migration 0007), so the read procedures need no lookups per skill: the published
    // version's number, and the content key: the first revision whose name and description equal the current
    // ones (an edit changed back gets its old key again).
    publishedVersion: integer(),
    contentKey: bigint({ mode: 'number' }).notNull().default(1),
    // How many feedback rows the skill has had: moved by the feedback trigger in the inserting transaction, under
    // this row's lock, so feedback is numbered in commit order (migration 0008).
    feedbackSeq: bigint({ mode: 'number' }).notNull().default(0),
  },
  (t): PgTableExtraConfigValue[] => [
    unique('skills_tenant_slug_unique').on(t.tenantId, t.slug),
    // The feed and the count walk a tenant's published skills newest change first (skills-first plan; a backward
    // scan gives `updated_at desc, id desc`).
    index('skills_published_updated_idx')
      .on(t.tenantId, t.updatedAt, t.id)
      .where(sql`${t.status} = 'published'`),
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
    // The feedback's number on its skill (1, 2, 3… in commit order; set by a trigger from skills.feedback_seq,
    // migration 0008). Feedback is unseen by a view that saw a lower number: commit order, not clocks.
    seq: bigint({ mode: 'number' }).notNull().default(0), // the trigger always sets it
  },
  (t) => [
    index('skill_feedback_skill_created_idx').on(t.skillId, t.createdAt),
    index('skill_feedback_skill_seq_idx').on(t.tenantId, t.skillId, t.seq),
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
    // What the caller has seen (by recordView or markSeen): the skill's content revision and its feedback count
    // as that statement saw them.
    seenRevision: bigint({ mode: 'number' }).notNull().default(0),
    seenFeedback: bigint({ mode: 'number' }).notNull().default(0),
    // The content key and published version of that revision (what the comparison needs, without a lookup), filled
    // in from skill_revisions by a trigger whenever seen_revision is written (migration 0007).
    seenKey: bigint({ mode: 'number' }).notNull().default(0),
    seenVersion: integer(),
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
      using: sql`user_id = ${currentUserId} or ${ownerMaintenance}`,
      withCheck: sql`user_id = ${currentUserId}`,
    }),
    // The retention job (VIEW_RETENTION_DAYS, npm run db:prune) deletes expired rows of every tenant.
    pgPolicy('the owner prunes expired views', { as: 'permissive', for: 'select', using: ownerMaintenance }),
    pgPolicy('the owner deletes expired views', { as: 'permissive', for: 'delete', using: ownerMaintenance }),
  ],
).enableRLS();

/**
 * What each content revision of a skill held: name, description and published version number. Written by
 * triggers (migration 0006) on every insert and content change of `skills`, never by the module.
 */
export const skillRevisions = pgTable(
  'skill_revisions',
  {
    tenantId: uuid().notNull(),
    skillId: uuid().notNull(),
    revision: bigint({ mode: 'number' }).notNull(),
    name: text(),
    description: text(),
    publishedVersion: integer(),
    // The revision's content key (see skills.content_key): equal keys, equal name and description.
    contentKey: bigint({ mode: 'number' }),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ name: 'skill_revisions_pk', columns: [t.tenantId, t.skillId, t.revision] }),
    foreignKey({
      name: 'skill_revisions_skill_fk',
      columns: [t.tenantId, t.skillId],
      foreignColumns: [skills.tenantId, skills.id],
    }).onDelete('cascade'),
    tenantIsolation(),
  ],
).enableRLS();

/** A user's tracking preference (absent: tracking on). Personal, like their views. */
export const userTrackingPreferences = pgTable(
  'user_tracking_preferences',
  {
    tenantId: uuid().notNull(),
    userId: uuid().notNull(),
    trackingEnabled: boolean().notNull(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'user_tracking_preferences_pk', columns: [t.tenantId, t.userId] }),
    foreignKey({
      name: 'user_tracking_preferences_user_fk',
      columns: [t.tenantId, t.userId],
      foreignColumns: [users.tenantId, users.id],
    }).onDelete('cascade'),
    tenantIsolation(),
    personalPolicy('a user sees only their own preference'),
  ],
).enableRLS();

export type Tenant = typeof tenants.$inferSelect;
export type User = typeof users.$inferSelect;
export type Skill = typeof skills.$inferSelect;
export type SkillVersion = typeof skillVersions.$inferSelect;
export type SkillFeedback = typeof skillFeedback.$inferSelect;
export type UserSkillView = typeof userSkillViews.$inferSelect;
export type SkillRevision = typeof skillRevisions.$inferSelect;
export type UserTrackingPreference = typeof userTrackingPreferences.$inferSelect;

/** Tables under row-level security, checked at start-up and by the tests. */
export const rlsTables = [
  'tenants',
  'users',
  'skills',
  'skill_versions',
  'skill_feedback',
  'user_skill_views',
  'skill_revisions',
  'user_tracking_preferences',
] as const;

/** Tables whose rows belong to one user (the restrictive personal policy). */
export const personalTables = ['user_skill_views', 'user_tracking_preferences'] as const;
