// changeSummary: what changed on one skill since the user's last view (versions, details, others' feedback), read-only.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { changeSummary } from '../db/queries/change-summary.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import type { SkillSpec, VersionSpec } from '../db/seed.ts';
import { engines } from './support/engines.ts';
import {
  APP_ROLE,
  countAll,
  createTenant,
  daysAgo,
  editSkill,
  insertFeedback,
  insertView,
  publishVersion,
  skillSpec,
  type TenantFixture,
} from './support/factory.ts';
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

  /**
   * One skill, viewed by user 0 as it is after insert (the view backdated `viewedDaysAgo`); then `after` makes what
   * happened since, as the host app (owner) would.
   */
  async function viewed(skill: SkillSpec, viewedDaysAgo: number, after: (t: TenantFixture, skillId: string) => Promise<unknown> = async () => {}) {
    const t = await createTenant(h.db, { skills: [skill] });
    const lastViewedAt = daysAgo(viewedDaysAgo);
    await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt });
    await after(t, t.skills.s!);
    return { t, skillId: t.skills.s!, lastViewedAt };
  }

  it('reports a version bump from the version last seen to the published one', async () => {
    const { t, skillId, lastViewedAt } = await viewed(spec([v('A', 'a', 30)]), 20, async (t, id) => {
      await publishVersion(h.db, t, id);
      await publishVersion(h.db, t, id);
    });
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
  ] as const)('reports details_updated when %s changed in place since the view', async (_, edit, fields) => {
    const { t, skillId } = await viewed(spec([v('A', 'a', 30)]), 10, (t, id) => editSkill(h.db, t, id, edit));
    const summary = await summarize(t, skillId);
    expect(summary?.changes).toEqual([{ kind: 'details_updated', fields: [...fields] }]);
    expect(summary).toMatchObject({ firstView: false, lastViewedVersion: 1, currentVersion: 1 });
  });

  it('compares details with what the user saw, alongside the version bump', async () => {
    const { t, skillId } = await viewed(spec([v('Old name', 'same', 30)]), 10, (t, id) =>
      publishVersion(h.db, t, id, { name: 'New name', description: 'same' }),
    );
    expect((await summarize(t, skillId))?.changes).toEqual([
      { kind: 'version_bump', from: 1, to: 2 },
      { kind: 'details_updated', fields: ['name'] },
    ]);
  });

  it('reports no change when nothing changed since the view', async () => {
    const t = await createTenant(h.db, { skills: [spec([v('A', 'a', 30), v('B', 'b', 10)])] });
    const skillId = t.skills.s!;
    // Feedback from before the view and the user's own feedback after it are not news.
    await insertFeedback(h.db, t, { skillId, userId: t.userIds[1]! });
    const lastViewedAt = daysAgo(5);
    await insertView(h.db, t, { userId: t.userIds[0]!, skillId, lastViewedAt });
    await insertFeedback(h.db, t, { skillId, userId: t.userIds[0]! });
    expect(await summarize(t, skillId)).toEqual({
      skillId,
      firstView: false,
      lastViewedAt,
      lastViewedVersion: 2,
      currentVersion: 2,
      changes: [],
    });
  });

  it("counts others' feedback written after the last view, by commit order not created_at; never the user's own", async () => {
    const t = await createTenant(h.db, { skills: [spec([v('A', 'a', 30)])] });
    const skillId = t.skills.s!;
    const [me, peer] = t.userIds as [string, string];
    // Before the view, though dated in the future: seen.
    await insertFeedback(h.db, t, { skillId, userId: peer, createdAt: daysAgo(-1) });
    await insertView(h.db, t, { userId: me, skillId, lastViewedAt: daysAgo(5) });
    for (const [userId, createdAt] of [
      [peer, undefined], // counts
      [peer, undefined], // counts
      [null, undefined], // anonymous: not the caller's own, counts
      [peer, daysAgo(10)], // written after the view though dated before it: counts
      [me, undefined], // own
      [me, daysAgo(10)], // own
    ] as const) {
      await insertFeedback(h.db, t, { skillId, userId, ...(createdAt ? { createdAt } : {}) });
    }
    expect((await summarize(t, skillId))?.changes).toEqual([{ kind: 'new_feedback', count: 4 }]);
    // From the peer's point of view (who never viewed it) this is a first view: no changes at all.
    expect((await summarize(t, skillId, peer))?.changes).toEqual([]);
  });

  it('reports version, details and feedback together', async () => {
    const { t, skillId } = await viewed(spec([v('A', 'a', 30)]), 10, async (t, id) => {
      await publishVersion(h.db, t, id, { description: 'b' });
      await editSkill(h.db, t, id, { name: 'Z' });
      await insertFeedback(h.db, t, { skillId: id, userId: t.userIds[1]! });
    });
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
    const bump = (t: TenantFixture, id: string) => publishVersion(h.db, t, id);
    const mine = await viewed(spec([v('A', 'a', 30)]), 10, bump);
    const theirs = await viewed(spec([v('A', 'a', 30)]), 10, bump);
    expect(await summarize(mine.t, theirs.skillId)).toBeNull();
    expect(await summarize(mine.t, randomUUID())).toBeNull();
    // The other tenant's own user does get a summary for it.
    expect((await summarize(theirs.t, theirs.skillId))?.changes).toEqual([{ kind: 'version_bump', from: 1, to: 2 }]);
  });

  it('writes nothing, for a viewed skill or a first view', async () => {
    const { t, skillId } = await viewed(spec([v('A', 'a', 30)]), 10, (t, id) => publishVersion(h.db, t, id, { name: 'B', description: 'b' }));
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
