// Test data: each call creates a fresh tenant with its own ids, so suites can share one database.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database, Transaction } from '../../db/client.ts';
import { query } from '../../db/queries/rows.ts';
import { asOwnerInTenant, insertSkill, type SkillSpec } from '../../db/seed.ts';
import { skillFeedback, tenants, users } from '../../db/schema/index.ts';

export const APP_ROLE = 'skillviews_app';

export interface TenantFixture {
  tenantId: string;
  userIds: string[];
  /** Skills by slug. */
  skills: Record<string, string>;
}

export const daysAgo = (days: number) => new Date(Date.now() - days * 24 * 60 * 60 * 1000);

/**
 * A tenant with `userCount` users and the given skills, written as the owner. `setTenant: false` writes
 * without setting app.current_tenant_id (the superuser test login bypasses RLS), so the connection
 * keeps that setting truly absent.
 */
export async function createTenant(
  db: Database,
  { userCount = 2, skills = [] as SkillSpec[], setTenant = true } = {},
): Promise<TenantFixture> {
  const tenantId = randomUUID();
  const userIds = Array.from({ length: userCount }, () => randomUUID());
  const result: TenantFixture = { tenantId, userIds, skills: {} };
  const write = (fn: (tx: Transaction) => Promise<void>) =>
    setTenant ? asOwnerInTenant(db, tenantId, fn) : db.transaction(fn);
  await write(async (tx) => {
    await tx.insert(tenants).values({ id: tenantId, name: `Tenant ${tenantId.slice(0, 8)}`, slug: `t-${tenantId}` });
    if (userIds.length) {
      await tx.insert(users).values(userIds.map((id, i) => ({ id, tenantId, email: `user${i}@${tenantId}.test`, name: `User ${i}` })));
    }
    for (const spec of skills) result.skills[spec.slug] = (await insertSkill(tx, tenantId, spec)).id;
  });
  return result;
}

/** A published skill spec with `versionCount` versions, the last created `changedDaysAgo`. */
export function skillSpec(slug: string, { versionCount = 1, changedDaysAgo = 1, status = 'published' as SkillSpec['status'] } = {}): SkillSpec {
  return {
    slug,
    category: 'Testing',
    status,
    versions: Array.from({ length: versionCount }, (_, i) => ({
      name: `${slug} v${i + 1}`,
      description: `About ${slug}, edition ${i + 1}`,
      createdDaysAgo: i === versionCount - 1 ? changedDaysAgo : changedDaysAgo + (versionCount - i) * 5,
    })),
  };
}

const ts = (date: Date) => sql`${date.toISOString()}::timestamptz`;

/**
 * Writes a view row meaning "user `userId` saw the skill as it is now", as the owner: the skill's current content
 * revision as `seen_revision`, its feedback count as `seen_feedback` (so feedback committed before it is
 * seen), and the current published version as `last_viewed_version`. Only the clock columns may be backdated
 * (`lastViewedAt`, `firstViewedAt`); they say when, never what, the user saw. To build "viewed, then changed",
 * call this (or recordView), then editSkill / publishVersion / republish / insertFeedback.
 * `lastViewedVersion`, when given, must be the version published now: a view of an older version is history,
 * made by viewing and then publishing.
 */
export async function insertView(
  db: Database,
  t: { tenantId: string },
  row: { userId: string; skillId: string; lastViewedAt?: Date; firstViewedAt?: Date; viewCount?: number; lastViewedVersion?: number | null },
) {
  await asOwnerInTenant(
    db,
    t.tenantId,
    async (tx) => {
      const last = row.lastViewedAt ? ts(row.lastViewedAt) : sql`now()`;
      const first = row.firstViewedAt ? ts(row.firstViewedAt) : last;
      const rows = await query<{ version: unknown }>(
        tx,
        sql`insert into user_skill_views
              (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count,
               seen_revision, seen_feedback)
            select s.tenant_id, ${row.userId}::uuid, s.id, ${first}, ${last}, pv.version, ${row.viewCount ?? 1}::int,
                   s.content_revision, s.feedback_seq
            from skills s left join skill_versions pv on pv.id = s.published_version_id
            where s.tenant_id = ${t.tenantId}::uuid and s.id = ${row.skillId}::uuid
            returning last_viewed_version as version`,
      );
      if (rows.length !== 1) throw new Error(`insertView: no skill ${row.skillId} in tenant ${t.tenantId}`);
      const published = rows[0]!.version === null ? null : Number(rows[0]!.version);
      if (row.lastViewedVersion !== undefined && row.lastViewedVersion !== published) {
        throw new Error(`insertView: version ${row.lastViewedVersion} is not the published one (${published}); view, then publish`);
      }
    },
    { userId: row.userId },
  );
}

/** The optional explicit updated_at of a catalogue write (the skills trigger keeps an explicit one; else now()). */
export interface WriteTime {
  updatedAt?: Date;
}

/**
 * Edits a skill's name and/or description in place (no new version), as the host app does: the trigger moves
 * the content revision, and updated_at to now() unless `updatedAt` is given.
 */
export async function editSkill(
  db: Database,
  t: { tenantId: string },
  skillId: string,
  edit: { name?: string; description?: string } & WriteTime,
) {
  const sets = [
    ...(edit.name !== undefined ? [sql`name = ${edit.name}`] : []),
    ...(edit.description !== undefined ? [sql`description = ${edit.description}`] : []),
    ...(edit.updatedAt ? [sql`updated_at = ${ts(edit.updatedAt)}`] : []),
  ];
  if (sets.length === 0) throw new Error('editSkill: nothing to change');
  await asOwnerInTenant(db, t.tenantId, async (tx) => {
    const rows = await query(
      tx,
      sql`update skills set ${sql.join(sets, sql`, `)} where tenant_id = ${t.tenantId}::uuid and id = ${skillId}::uuid returning id`,
    );
    if (rows.length !== 1) throw new Error(`editSkill: no skill ${skillId}`);
  });
}

/**
 * Publishes a new version (the next number) of a skill, as the host app does: inserts the snapshot (name and
 * description default to the skill's current ones, so only the version moves) and points the skill at it, with
 * its name and description. Returns the new version number.
 */
export async function publishVersion(
  db: Database,
  t: { tenantId: string },
  skillId: string,
  snapshot: { name?: string; description?: string } & WriteTime = {},
): Promise<number> {
  return asOwnerInTenant(db, t.tenantId, async (tx) => {
    const [created] = await query<{ id: string; version: unknown }>(
      tx,
      sql`insert into skill_versions (tenant_id, skill_id, version, name, description)
          select s.tenant_id, s.id,
                 coalesce((select max(x.version) from skill_versions x where x.skill_id = s.id), 0) + 1,
                 coalesce(${snapshot.name ?? null}::text, s.name), coalesce(${snapshot.description ?? null}::text, s.description)
          from skills s where s.tenant_id = ${t.tenantId}::uuid and s.id = ${skillId}::uuid
          returning id, version`,
    );
    if (!created) throw new Error(`publishVersion: no skill ${skillId}`);
    await pointAt(tx, t.tenantId, skillId, created.id, snapshot.updatedAt);
    return Number(created.version);
  });
}

/**
 * Publishes an existing version again (a rollback), or unpublishes (`version` null: no published version, name
 * and description kept), as the owner.
 */
export async function republish(db: Database, t: { tenantId: string }, skillId: string, version: number | null, time: WriteTime = {}) {
  await asOwnerInTenant(db, t.tenantId, async (tx) => {
    if (version === null) return pointAt(tx, t.tenantId, skillId, null, time.updatedAt);
    const [row] = await query<{ id: string }>(
      tx,
      sql`select id from skill_versions where tenant_id = ${t.tenantId}::uuid and skill_id = ${skillId}::uuid and version = ${version}::int`,
    );
    if (!row) throw new Error(`republish: skill ${skillId} has no version ${version}`);
    await pointAt(tx, t.tenantId, skillId, row.id, time.updatedAt);
  });
}

/** Points a skill at a published version (its name and description follow the snapshot), or at none. */
async function pointAt(tx: Transaction, tenantId: string, skillId: string, versionId: string | null, updatedAt?: Date) {
  const time = updatedAt ? sql`, updated_at = ${ts(updatedAt)}` : sql``;
  const rows =
    versionId === null
      ? await query(tx, sql`update skills set published_version_id = null ${time}
            where tenant_id = ${tenantId}::uuid and id = ${skillId}::uuid returning id`)
      : await query(tx, sql`update skills s set published_version_id = v.id, name = v.name, description = v.description ${time}
            from skill_versions v
            where s.tenant_id = ${tenantId}::uuid and s.id = ${skillId}::uuid and v.id = ${versionId}::uuid returning s.id`);
  if (rows.length !== 1) throw new Error(`publish: no skill ${skillId}`);
}

/** Changes a skill's status (draft / published / archived), as the owner. Not a content change. */
export async function setStatus(db: Database, t: { tenantId: string }, skillId: string, status: 'draft' | 'published' | 'archived') {
  await asOwnerInTenant(db, t.tenantId, (tx) =>
    tx.execute(sql`update skills set status = ${status}::skill_status where tenant_id = ${t.tenantId}::uuid and id = ${skillId}::uuid`),
  );
}

/**
 * Adds feedback by `userId` (null: anonymous) as the owner. Whether a viewer has seen it follows its
 * transaction (stamped by trigger), not `createdAt`; `createdAt` (default now) only matters to view rows
 * written before the read state.
 */
export async function insertFeedback(
  db: Database,
  t: { tenantId: string },
  row: { skillId: string; userId: string | null; createdAt?: Date },
) {
  await asOwnerInTenant(db, t.tenantId, (tx) =>
    tx.insert(skillFeedback).values({
      tenantId: t.tenantId,
      skillId: row.skillId,
      userId: row.userId,
      feedbackType: 'comment',
      comment: 'test',
      ...(row.createdAt ? { createdAt: row.createdAt } : {}),
    }),
  );
}

/** Counts rows of a table as the owner, across all tenants (a superuser login bypasses RLS). */
export async function countAll(db: Database, table: string, where = sql``): Promise<number> {
  const rows = await query<{ n: unknown }>(db, sql`select count(*)::int as n from ${sql.identifier(table)} ${where}`);
  return Number(rows[0]?.n ?? 0);
}

/**
 * Sets a skill's updated_at to an exact timestamptz given as SQL text (microseconds allowed), as the owner; not a
 * content change (the revision stays). For tests of the feed's order, window and cursor only.
 */
export async function setUpdatedAt(db: Database, t: { tenantId: string }, skillId: string, timestamptz: string) {
  await asOwnerInTenant(db, t.tenantId, (tx) =>
    tx.execute(sql`update skills set updated_at = ${timestamptz}::timestamptz where id = ${skillId}::uuid`),
  );
}
