// Test data: each call creates a fresh tenant with its own ids, so suites can share one database.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database, Transaction } from '../../db/client.ts';
import { query } from '../../db/queries/rows.ts';
import { asOwnerInTenant, insertSkill, type SkillSpec } from '../../db/seed.ts';
import { skillFeedback, tenants, userSkillViews, users } from '../../db/schema/index.ts';

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

/** Writes a view row directly (as the owner), to set up history in the past. */
export async function insertView(
  db: Database,
  t: { tenantId: string },
  row: { userId: string; skillId: string; lastViewedAt: Date; lastViewedVersion: number | null; viewCount?: number },
) {
  await asOwnerInTenant(db, t.tenantId, (tx) =>
    tx.insert(userSkillViews).values({
      tenantId: t.tenantId,
      userId: row.userId,
      skillId: row.skillId,
      firstViewedAt: row.lastViewedAt,
      lastViewedAt: row.lastViewedAt,
      lastViewedVersion: row.lastViewedVersion,
      viewCount: row.viewCount ?? 1,
    }),
  );
}

export async function insertFeedback(
  db: Database,
  t: { tenantId: string },
  row: { skillId: string; userId: string | null; createdAt: Date },
) {
  await asOwnerInTenant(db, t.tenantId, (tx) =>
    tx.insert(skillFeedback).values({ tenantId: t.tenantId, skillId: row.skillId, userId: row.userId, feedbackType: 'comment', comment: 'test', createdAt: row.createdAt }),
  );
}

/** Counts rows of a table as the owner, across all tenants (a superuser login bypasses RLS). */
export async function countAll(db: Database, table: string, where = sql``): Promise<number> {
  const rows = await query<{ n: unknown }>(db, sql`select count(*)::int as n from ${sql.identifier(table)} ${where}`);
  return Number(rows[0]?.n ?? 0);
}

/** Sets a skill's updated_at to an exact timestamptz given as SQL text (microseconds allowed), as the owner. */
export async function setUpdatedAt(db: Database, t: { tenantId: string }, skillId: string, timestamptz: string) {
  await asOwnerInTenant(db, t.tenantId, (tx) =>
    tx.execute(sql`update skills set updated_at = ${timestamptz}::timestamptz where id = ${skillId}::uuid`),
  );
}
