// changeSummary: what changed on one skill since the user's last view (versions, details, others' feedback), read-only.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { changeSummary } from '../db/queries/change-summary.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import type { SkillSpec, VersionSpec } from '../db/seed.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, countAll, createTenant, daysAgo, insertFeedback, insertView, skillSpec, type TenantFixture } from './support/factory.ts';
import { fingerprint } from './support/rls.ts';

const v = (name: string, description: string, createdDaysAgo: number): VersionSpec => ({ name, description, createdDaysAgo });
const spec = (versions: VersionSpec[], extra: Partial<SkillSpec> = {}): SkillSpec => ({ slug: 's', category: 'Testing', versions, ...extra });

describe.each(engines)('changeSummary on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open();
  });
  afterAll(() => h.close());

  const summarize = (t: TenantFixture, skillId: string, userId = t.userIds[0]!) => {
    const scope = { role: APP_ROLE, tenantId: t.tenantId, userId };
    return withTenantTransaction(h.db, scope, (tx) => changeSummary(tx, scope, skillId));
  };

  /** One skill, viewed by user 0 `viewedDaysAgo` at version `viewedVersion`. */
  async function viewed(skill: SkillSpec, viewedDaysAgo: number, viewedVersion: number | null) {
    const t = await createTenant(h.db, { skills: [skill] });
    const lastViewedAt = daysAgo(viewedDaysAgo);
    await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt, lastViewedVersion: viewedVersion });
    return { t, skillId: t.skills.s!, lastViewedAt };
  }

  it('reports a version bump from the version last seen to the published one', async () => {
    const { t, skillId, lastViewedAt } = await viewed(spec([v('A', 'a', 30), v('A', 'a', 10), v('A', 'a', 2)]), 20, 1);
    expect(await summarize(t, skillId)).toEqual({
      skillId,
      firstView: false,
      lastViewedAt,
      lastViewedVersion: 1,
      currentVersion: 3,
      changes: [{ kind: 'version_bump', from: 1, to: 3 }],
    });
  });

  it.each([
    ['the name', { name: 'Renamed' }, ['name']],
    ['the description', { description: 'Rewritten' }, ['description']],
    ['both', { name: 'Renamed', description: 'Rewritten' }, ['name', 'description']],
  ] as const)('reports details_updated when %s changed in place since the seen version', async (_, edit, fields) => {
    const { t, skillId } = await viewed(spec([v('A', 'a', 30)], { ...edit, updatedDaysAgo: 2 }), 10, 1);
    const summary = await summarize(t, skillId);
    expect(summary?.changes).toEqual([{ kind: 'details_updated', fields: [...fields] }]);
    expect(summary).toMatchObject({ firstView: false, lastViewedVersion: 1, currentVersion: 1 });
  });

  it('compares details with the snapshot of the version the user saw, alongside the version bump', async () => {
    const { t, skillId } = await viewed(spec([v('Old name', 'same', 30), v('New name', 'same', 2)]), 10, 1);
    expect((await summarize(t, skillId))?.changes).toEqual([
      { kind: 'version_bump', from: 1, to: 2 },
      { kind: 'details_updated', fields: ['name'] },
    ]);
  });

  it('reports no change when nothing changed since the view', async () => {
    const { t, skillId, lastViewedAt } = await viewed(spec([v('A', 'a', 30), v('B', 'b', 10)]), 5, 2);
    // Feedback from before the view and the user's own feedback after it are not news.
    await insertFeedback(h.db, t, { skillId, userId: t.userIds[1]!, createdAt: daysAgo(6) });
    await insertFeedback(h.db, t, { skillId, userId: t.userIds[0]!, createdAt: daysAgo(1) });
    expect(await summarize(t, skillId)).toEqual({
      skillId,
      firstView: false,
      lastViewedAt,
      lastViewedVersion: 2,
      currentVersion: 2,
      changes: [],
    });
  });

  it("counts feedback created after the last view, not the user's own and not earlier feedback", async () => {
    const { t, skillId, lastViewedAt } = await viewed(spec([v('A', 'a', 30)]), 5, 1);
    const [me, peer] = t.userIds as [string, string];
    for (const [userId, createdAt] of [
      [peer, daysAgo(3)], // counts
      [peer, daysAgo(1)], // counts
      [null, daysAgo(1)], // anonymous: not the caller's own, counts
      [me, daysAgo(2)], // own
      [me, daysAgo(1)], // own
      [peer, daysAgo(10)], // before the view
      [peer, lastViewedAt], // at the view, not after it
    ] as const) {
      await insertFeedback(h.db, t, { skillId, userId, createdAt });
    }
    expect((await summarize(t, skillId))?.changes).toEqual([{ kind: 'new_feedback', count: 3 }]);
    // From the peer's point of view (who never viewed it) this is a first view: no changes at all.
    expect((await summarize(t, skillId, peer))?.changes).toEqual([]);
  });

  it('reports version, details and feedback together', async () => {
    const { t, skillId } = await viewed(spec([v('A', 'a', 30), v('A', 'b', 3)], { name: 'Z', updatedDaysAgo: 1 }), 10, 1);
    await insertFeedback(h.db, t, { skillId, userId: t.userIds[1]!, createdAt: daysAgo(2) });
    expect((await summarize(t, skillId))?.changes).toEqual([
      { kind: 'version_bump', from: 1, to: 2 },
      { kind: 'details_updated', fields: ['name', 'description'] },
      { kind: 'new_feedback', count: 1 },
    ]);
  });

  it('is a first view with no changes when the user never viewed the skill', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 3 })] });
    await insertFeedback(h.db, t, { skillId: t.skills.s!, userId: t.userIds[1]!, createdAt: daysAgo(1) });
    expect(await summarize(t, t.skills.s!)).toEqual({
      skillId: t.skills.s!,
      firstView: true,
      lastViewedAt: null,
      lastViewedVersion: null,
      currentVersion: 3,
      changes: [],
    });
  });

  it("is null for another tenant's skill and for a skill that does not exist", async () => {
    const mine = await viewed(spec([v('A', 'a', 30), v('A', 'a', 2)]), 10, 1);
    const theirs = await viewed(spec([v('A', 'a', 30), v('A', 'a', 2)]), 10, 1);
    expect(await summarize(mine.t, theirs.skillId)).toBeNull();
    expect(await summarize(mine.t, randomUUID())).toBeNull();
    // The other tenant's own user does get a summary for it.
    expect((await summarize(theirs.t, theirs.skillId))?.changes).toEqual([{ kind: 'version_bump', from: 1, to: 2 }]);
  });

  it('writes nothing, for a viewed skill or a first view', async () => {
    const { t, skillId } = await viewed(spec([v('A', 'a', 30), v('B', 'b', 2)]), 10, 1);
    const unviewed = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 2 })] });
    const before = { t: await fingerprint(h.db, t.tenantId), u: await fingerprint(h.db, unviewed.tenantId) };
    const viewsBefore = await countAll(h.db, 'user_skill_views', sql`where tenant_id in (${t.tenantId}::uuid, ${unviewed.tenantId}::uuid)`);
    expect(await summarize(t, skillId)).not.toBeNull();
    expect((await summarize(unviewed, unviewed.skills.s!))?.firstView).toBe(true);
    expect(await countAll(h.db, 'user_skill_views', sql`where tenant_id in (${t.tenantId}::uuid, ${unviewed.tenantId}::uuid)`)).toBe(viewsBefore);
    expect(await fingerprint(h.db, t.tenantId)).toEqual(before.t);
    expect(await fingerprint(h.db, unviewed.tenantId)).toEqual(before.u);
  });
});
