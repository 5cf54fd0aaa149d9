// Each procedure's contract (DESIGN.md) through createCaller(createContextInner({ db, session })).
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { asOwnerInTenant, type SkillSpec } from '../db/seed.ts';
import { createContextInner } from '../server/context.ts';
import { createCaller } from '../server/router.ts';
import { callerFor, countViews, expectTrpcError } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { createTenant, daysAgo, insertFeedback, insertView, skillSpec, type TenantFixture } from './support/factory.ts';

/** Sets skills.updated_at to an exact timestamptz (SQL text, microseconds allowed), as the owner. */
async function setSkillUpdatedAt(h: DbHandle, t: TenantFixture, skillId: string, timestamptz: string) {
  await asOwnerInTenant(h.db, t.tenantId, (tx) =>
    tx.execute(sql`update skills set updated_at = ${timestamptz}::timestamptz where id = ${skillId}::uuid`),
  );
}

/** Publishes version `version` of a skill (the trigger moves updated_at to now()), as the owner. */
async function publish(h: DbHandle, t: TenantFixture, skillId: string, version: number) {
  await asOwnerInTenant(h.db, t.tenantId, (tx) =>
    tx.execute(sql`update skills set published_version_id =
      (select id from skill_versions where skill_id = ${skillId}::uuid and version = ${version}) where id = ${skillId}::uuid`),
  );
}

async function viewRow(h: DbHandle, t: TenantFixture, userId: string, skillId: string) {
  const rows = await query<Record<string, unknown>>(
    h.db,
    sql`select first_viewed_at::text as first, last_viewed_at::text as last, last_viewed_version, view_count
        from user_skill_views where tenant_id = ${t.tenantId}::uuid and user_id = ${userId}::uuid and skill_id = ${skillId}::uuid`,
  );
  return rows[0] ?? null;
}

describe.each(engines)('procedures through createCaller on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open();
  });
  afterAll(() => h.close());

  describe('every procedure', () => {
    it('needs a session: null or non-uuid sessions get UNAUTHORIZED and write nothing', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s')] });
      const skillId = t.skills.s!;
      for (const session of [null, { tenantId: 'acme', userId: t.userIds[0]! }, { tenantId: t.tenantId, userId: "x' or '1'='1" }]) {
        const caller = createCaller(createContextInner({ db: h.db, session }));
        await expectTrpcError(caller.recordView({ skillId }), 'UNAUTHORIZED');
        await expectTrpcError(caller.viewsForSkills({ skillIds: [skillId] }), 'UNAUTHORIZED');
        await expectTrpcError(caller.whatsNew({}), 'UNAUTHORIZED');
        await expectTrpcError(caller.changeSummary({ skillId }), 'UNAUTHORIZED');
      }
      expect(await countViews(h.db, t.tenantId)).toBe(0);
    });
  });

  describe('recordView', () => {
    it('records a first view (count 1, no previous), then a second one returning the first as previous', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 3 })] });
      const skillId = t.skills.s!;
      const caller = callerFor(h.db, t);
      const before = Date.now();
      const first = await caller.recordView({ skillId });
      expect(first.previous).toBeNull();
      expect(first.view).toMatchObject({ skillId, viewCount: 1, lastViewedVersion: 3 });
      expect(first.view.firstViewedAt).toBeInstanceOf(Date);
      expect(first.view.lastViewedAt).toBeInstanceOf(Date);
      expect(first.view.firstViewedAt.getTime()).toBe(first.view.lastViewedAt.getTime());
      // Database clock on the same machine: within a few seconds of the test's clock.
      expect(Math.abs(first.view.lastViewedAt.getTime() - before)).toBeLessThan(5_000);

      const second = await caller.recordView({ skillId });
      expect(second.previous).toEqual(first.view);
      expect(second.view.viewCount).toBe(2);
      expect(second.view.firstViewedAt.getTime()).toBe(first.view.firstViewedAt.getTime());
      expect(second.view.lastViewedAt.getTime()).toBeGreaterThanOrEqual(first.view.lastViewedAt.getTime());
      expect(second.view.lastViewedAt).toBeInstanceOf(Date);

      const row = await viewRow(h, t, t.userIds[0]!, skillId);
      expect(Number(row?.view_count)).toBe(2);
      expect(await countViews(h.db, t.tenantId)).toBe(1);
    });

    it('stores the current published version, not the newest snapshot, and follows a new publication', async () => {
      const spec: SkillSpec = { ...skillSpec('s', { versionCount: 3 }), publishedVersion: 2 };
      const t = await createTenant(h.db, { skills: [spec, skillSpec('draft', { status: 'draft', versionCount: 2 })] });
      const caller = callerFor(h.db, t);
      expect((await caller.recordView({ skillId: t.skills.s! })).view.lastViewedVersion).toBe(2);
      await publish(h, t, t.skills.s!, 3);
      const again = await caller.recordView({ skillId: t.skills.s! });
      expect(again.view.lastViewedVersion).toBe(3);
      expect(again.previous?.lastViewedVersion).toBe(2);
      // A draft has no published version: the view exists, with no version.
      const draft = await caller.recordView({ skillId: t.skills.draft! });
      expect(draft.view).toMatchObject({ viewCount: 1, lastViewedVersion: null });
    });

    it('keeps views personal: another user of the tenant starts at 1', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s')] });
      await callerFor(h.db, t, 0).recordView({ skillId: t.skills.s! });
      await callerFor(h.db, t, 0).recordView({ skillId: t.skills.s! });
      const other = await callerFor(h.db, t, 1).recordView({ skillId: t.skills.s! });
      expect(other.previous).toBeNull();
      expect(other.view.viewCount).toBe(1);
    });

    it('accepts an upper-case id and reports the canonical one', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s')] });
      const result = await callerFor(h.db, t).recordView({ skillId: t.skills.s!.toUpperCase() });
      expect(result.view.skillId).toBe(t.skills.s);
    });

    it('is NOT_FOUND for a skill that does not exist, and writes nothing', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s')] });
      const error = await expectTrpcError(callerFor(h.db, t).recordView({ skillId: randomUUID() }), 'NOT_FOUND');
      expect(error.message).toBe('Skill not found');
      expect(await countViews(h.db, t.tenantId)).toBe(0);
    });
  });

  describe('viewsForSkills', () => {
    it('returns a Map of only the viewed skills, with hasUpdate from updated_at and from the published version', async () => {
      const t = await createTenant(h.db, {
        skills: [
          skillSpec('unchanged', { changedDaysAgo: 10 }),
          // Published v2 one day ago, seen at v1 five days ago: both rules say updated.
          skillSpec('bumped', { versionCount: 2, changedDaysAgo: 1 }),
          // Content edited in place one day ago; the version seen is still the published one.
          { ...skillSpec('edited', { changedDaysAgo: 10 }), description: 'edited', updatedDaysAgo: 1 },
          // Published v2 ten days ago, but the view five days ago recorded v1: only the version rule applies.
          skillSpec('stale-version', { versionCount: 2, changedDaysAgo: 10 }),
          skillSpec('never-viewed'),
          skillSpec('seen-by-other'),
        ],
      });
      const [me, other] = t.userIds as [string, string];
      const s = t.skills as Record<string, string>;
      await insertView(h.db, t, { userId: me, skillId: s.unchanged!, lastViewedAt: daysAgo(5), lastViewedVersion: 1, viewCount: 4 });
      await insertView(h.db, t, { userId: me, skillId: s.bumped!, lastViewedAt: daysAgo(5), lastViewedVersion: 1 });
      await insertView(h.db, t, { userId: me, skillId: s.edited!, lastViewedAt: daysAgo(5), lastViewedVersion: 1 });
      await insertView(h.db, t, { userId: me, skillId: s['stale-version']!, lastViewedAt: daysAgo(5), lastViewedVersion: 1 });
      await insertView(h.db, t, { userId: other, skillId: s['seen-by-other']!, lastViewedAt: daysAgo(5), lastViewedVersion: 1 });

      const ids = [s.unchanged!, s.bumped!, s.edited!, s['stale-version']!, s['never-viewed']!, s['seen-by-other']!, randomUUID()];
      // Duplicates are allowed; an upper-case id comes back under its canonical key.
      const views = await callerFor(h.db, t).viewsForSkills({ skillIds: [...ids, s.unchanged!, s.bumped!.toUpperCase()] });
      expect(views).toBeInstanceOf(Map);
      expect([...views.keys()].sort()).toEqual([s.unchanged!, s.bumped!, s.edited!, s['stale-version']!].sort());
      expect(views.get(s.unchanged!)).toEqual({
        skillId: s.unchanged,
        firstViewedAt: expect.any(Date),
        lastViewedAt: expect.any(Date),
        lastViewedVersion: 1,
        viewCount: 4,
        hasUpdate: false,
      });
      expect(Math.abs(views.get(s.unchanged!)!.lastViewedAt.getTime() - daysAgo(5).getTime())).toBeLessThan(60_000);
      expect(views.get(s.bumped!)?.hasUpdate).toBe(true);
      expect(views.get(s.edited!)?.hasUpdate).toBe(true);
      expect(views.get(s['stale-version']!)?.hasUpdate).toBe(true);
    });

    it('clears hasUpdate once the skill is viewed again', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 2, changedDaysAgo: 1 })] });
      const skillId = t.skills.s!;
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId, lastViewedAt: daysAgo(3), lastViewedVersion: 1 });
      const caller = callerFor(h.db, t);
      expect((await caller.viewsForSkills({ skillIds: [skillId] })).get(skillId)?.hasUpdate).toBe(true);
      await caller.recordView({ skillId });
      const after = (await caller.viewsForSkills({ skillIds: [skillId] })).get(skillId);
      expect(after).toMatchObject({ hasUpdate: false, lastViewedVersion: 2, viewCount: 2 });
    });

    it('returns an empty Map when none of the skills were viewed', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s')] });
      const views = await callerFor(h.db, t).viewsForSkills({ skillIds: [t.skills.s!] });
      expect(views).toBeInstanceOf(Map);
      expect(views.size).toBe(0);
    });

    it('accepts 500 ids', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s')] });
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(1), lastViewedVersion: 1 });
      const ids = [t.skills.s!, ...Array.from({ length: 499 }, () => randomUUID())];
      const views = await callerFor(h.db, t).viewsForSkills({ skillIds: ids });
      expect([...views.keys()]).toEqual([t.skills.s]);
    });
  });

  describe('whatsNew', () => {
    it('lists published skills changed after the last view and within the window, newest first', async () => {
      const t = await createTenant(h.db, {
        skills: [
          skillSpec('newest', { versionCount: 2, changedDaysAgo: 0.5 }),
          skillSpec('older', { versionCount: 2, changedDaysAgo: 2 }),
          { ...skillSpec('edited', { changedDaysAgo: 20 }), name: 'Edited name', updatedDaysAgo: 3 },
          skillSpec('seen-since', { versionCount: 2, changedDaysAgo: 3 }),
          skillSpec('draft', { versionCount: 2, changedDaysAgo: 1, status: 'draft' }),
          skillSpec('archived', { versionCount: 2, changedDaysAgo: 1, status: 'archived' }),
          skillSpec('outside-window', { versionCount: 2, changedDaysAgo: 40 }),
          skillSpec('never-viewed', { versionCount: 2, changedDaysAgo: 1 }),
          skillSpec('other-users', { versionCount: 2, changedDaysAgo: 1 }),
        ],
      });
      const [me, other] = t.userIds as [string, string];
      const s = t.skills as Record<string, string>;
      const seen = (slug: string, days: number, version: number | null, userId = me) =>
        insertView(h.db, t, { userId, skillId: s[slug]!, lastViewedAt: daysAgo(days), lastViewedVersion: version, viewCount: 3 });
      await seen('newest', 5, 1);
      await seen('older', 5, 1);
      await seen('edited', 10, 1);
      await seen('seen-since', 1, 2);
      await seen('draft', 5, null);
      await seen('archived', 5, 1);
      await seen('outside-window', 50, 1);
      await seen('other-users', 5, 1, other);

      const caller = callerFor(h.db, t);
      const page = await caller.whatsNew({});
      expect(page.items.map((i) => i.slug)).toEqual(['newest', 'older', 'edited']);
      expect(page.nextCursor).toBeNull();
      const newest = page.items[0]!;
      expect(newest).toEqual({
        skillId: s.newest,
        name: 'newest v2',
        slug: 'newest',
        category: 'Testing',
        updatedAt: expect.any(Date),
        lastViewedAt: expect.any(Date),
        lastViewedVersion: 1,
        currentVersion: 2,
        viewCount: 3,
      });
      expect(newest.updatedAt.getTime()).toBeGreaterThan(newest.lastViewedAt.getTime());
      expect(page.items[2]).toMatchObject({ name: 'Edited name', currentVersion: 1, lastViewedVersion: 1 });
      const times = page.items.map((i) => i.updatedAt.getTime());
      expect(times).toEqual([...times].sort((a, b) => b - a));

      // A wider window reaches the skill changed 40 days ago; a narrower one drops the older ones.
      expect((await caller.whatsNew({ windowDays: 45 })).items.map((i) => i.slug)).toEqual(['newest', 'older', 'edited', 'outside-window']);
      expect((await caller.whatsNew({ windowDays: 1, limit: 50 })).items.map((i) => i.slug)).toEqual(['newest']);
      // The other user sees their own feed.
      expect((await callerFor(h.db, t, 1).whatsNew({})).items.map((i) => i.slug)).toEqual(['other-users']);
    });

    it('drops a skill from the feed once it is viewed again', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 2, changedDaysAgo: 1 })] });
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(4), lastViewedVersion: 1 });
      const caller = callerFor(h.db, t);
      expect((await caller.whatsNew({})).items).toHaveLength(1);
      await caller.recordView({ skillId: t.skills.s! });
      expect((await caller.whatsNew({})).items).toHaveLength(0);
    });

    it('pages with nextCursor strings: no gaps or repeats across ties and microsecond differences', async () => {
      const slugs = Array.from({ length: 7 }, (_, i) => `p${i}`);
      const t = await createTenant(h.db, { skills: slugs.map((slug) => skillSpec(slug, { versionCount: 2, changedDaysAgo: 1 })) });
      const s = t.skills as Record<string, string>;
      for (const slug of slugs) await insertView(h.db, t, { userId: t.userIds[0]!, skillId: s[slug]!, lastViewedAt: daysAgo(6), lastViewedVersion: 1 });
      const base = daysAgo(2).toISOString().slice(0, 19);
      // Three skills share one timestamp (ties broken by id); two differ only below the millisecond.
      const stamps: Record<string, string> = {
        p0: `${base}.500000Z`,
        p1: `${base}.500000Z`,
        p2: `${base}.500000Z`,
        p3: `${base}.400001Z`,
        p4: `${base}.400000Z`,
        p5: `${base}.300000Z`,
        p6: `${base}.200000Z`,
      };
      for (const slug of slugs) await setSkillUpdatedAt(h, t, s[slug]!, stamps[slug]!);
      const tied = ['p0', 'p1', 'p2'].sort((a, b) => (s[b]! < s[a]! ? -1 : 1)); // id descending
      const expected = [...tied, 'p3', 'p4', 'p5', 'p6'];

      const caller = callerFor(h.db, t);
      expect((await caller.whatsNew({ limit: 50 })).items.map((i) => i.slug)).toEqual(expected);
      for (const limit of [1, 2, 3]) {
        const seen: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page: Awaited<ReturnType<typeof caller.whatsNew>> = await caller.whatsNew({ limit, ...(cursor ? { cursor } : {}) });
          expect(page.items.length).toBeLessThanOrEqual(limit);
          seen.push(...page.items.map((i) => i.slug));
          if (page.nextCursor !== null) expect(typeof page.nextCursor).toBe('string');
          cursor = page.nextCursor;
          pages++;
        } while (cursor && pages < 20);
        expect(seen, `limit ${limit}`).toEqual(expected);
        expect(pages).toBe(Math.ceil(expected.length / limit));
      }
    });

    it('defaults to 10 items per page', async () => {
      const slugs = Array.from({ length: 11 }, (_, i) => `d${i}`);
      const t = await createTenant(h.db, { skills: slugs.map((slug, i) => skillSpec(slug, { versionCount: 2, changedDaysAgo: 1 + i / 10 })) });
      for (const slug of slugs) await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills[slug]!, lastViewedAt: daysAgo(5), lastViewedVersion: 1 });
      const caller = callerFor(h.db, t);
      const first = await caller.whatsNew({});
      expect(first.items.map((i) => i.slug)).toEqual(slugs.slice(0, 10));
      expect(first.nextCursor).toEqual(expect.any(String));
      const second = await caller.whatsNew({ cursor: first.nextCursor! });
      expect(second.items.map((i) => i.slug)).toEqual(['d10']);
      expect(second.nextCursor).toBeNull();
    });
  });

  describe('changeSummary', () => {
    it('is a first view with no changes for a skill never viewed (feedback notwithstanding)', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 3 })] });
      await insertFeedback(h.db, t, { skillId: t.skills.s!, userId: t.userIds[1]!, createdAt: daysAgo(1) });
      const summary = await callerFor(h.db, t).changeSummary({ skillId: t.skills.s! });
      expect(summary).toEqual({
        skillId: t.skills.s,
        firstView: true,
        lastViewedAt: null,
        lastViewedVersion: null,
        currentVersion: 3,
        changes: [],
      });
    });

    it('reports no changes when nothing happened since the last view', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 2, changedDaysAgo: 10 })] });
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(5), lastViewedVersion: 2 });
      await insertFeedback(h.db, t, { skillId: t.skills.s!, userId: t.userIds[1]!, createdAt: daysAgo(6) });
      const summary = await callerFor(h.db, t).changeSummary({ skillId: t.skills.s! });
      expect(summary).toMatchObject({ firstView: false, lastViewedVersion: 2, currentVersion: 2, changes: [] });
      expect(summary.lastViewedAt).toBeInstanceOf(Date);
    });

    it('reports a version bump with the changed details, and feedback by others since the last view', async () => {
      const t = await createTenant(h.db, { userCount: 3, skills: [skillSpec('s', { versionCount: 3, changedDaysAgo: 1 })] });
      const [me, other, third] = t.userIds as [string, string, string];
      const skillId = t.skills.s!;
      await insertView(h.db, t, { userId: me, skillId, lastViewedAt: daysAgo(4), lastViewedVersion: 1 });
      await insertFeedback(h.db, t, { skillId, userId: other, createdAt: daysAgo(3) });
      await insertFeedback(h.db, t, { skillId, userId: third, createdAt: daysAgo(2) });
      await insertFeedback(h.db, t, { skillId, userId: null, createdAt: daysAgo(1) });
      await insertFeedback(h.db, t, { skillId, userId: me, createdAt: daysAgo(1) }); // the caller's own: not counted
      await insertFeedback(h.db, t, { skillId, userId: other, createdAt: daysAgo(5) }); // before the view: not counted

      const summary = await callerFor(h.db, t).changeSummary({ skillId });
      expect(summary).toMatchObject({ skillId, firstView: false, lastViewedVersion: 1, currentVersion: 3 });
      expect(Math.abs(summary.lastViewedAt!.getTime() - daysAgo(4).getTime())).toBeLessThan(60_000);
      expect(summary.changes).toEqual(
        expect.arrayContaining([
          { kind: 'version_bump', from: 1, to: 3 },
          { kind: 'details_updated', fields: ['name', 'description'] },
          { kind: 'new_feedback', count: 3 },
        ]),
      );
      expect(summary.changes).toHaveLength(3);
    });

    it('reports details edited in place without a version bump, naming only the changed field', async () => {
      const t = await createTenant(h.db, { skills: [{ ...skillSpec('s', { changedDaysAgo: 10 }), name: 'Renamed', updatedDaysAgo: 1 }] });
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(5), lastViewedVersion: 1 });
      const summary = await callerFor(h.db, t).changeSummary({ skillId: t.skills.s! });
      expect(summary.changes).toEqual([{ kind: 'details_updated', fields: ['name'] }]);
    });

    it('is a pure read: user_skill_views is unchanged, for viewed and unviewed skills', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('seen', { versionCount: 2 }), skillSpec('unseen')] });
      const me = t.userIds[0]!;
      await insertView(h.db, t, { userId: me, skillId: t.skills.seen!, lastViewedAt: daysAgo(4), lastViewedVersion: 1, viewCount: 2 });
      const before = await viewRow(h, t, me, t.skills.seen!);
      const caller = callerFor(h.db, t);
      await caller.changeSummary({ skillId: t.skills.seen! });
      await caller.changeSummary({ skillId: t.skills.unseen! });
      expect(await viewRow(h, t, me, t.skills.seen!)).toEqual(before);
      expect(await viewRow(h, t, me, t.skills.unseen!)).toBeNull();
      expect(await countViews(h.db, t.tenantId)).toBe(1);
      // A later summary still reports the same changes: nothing was marked as seen.
      const again = await caller.changeSummary({ skillId: t.skills.seen! });
      expect(again.changes).toContainEqual({ kind: 'version_bump', from: 1, to: 2 });
    });

    it('is NOT_FOUND for a skill that does not exist', async () => {
      const t = await createTenant(h.db);
      const error = await expectTrpcError(callerFor(h.db, t).changeSummary({ skillId: randomUUID() }), 'NOT_FOUND');
      expect(error.message).toBe('Skill not found');
    });
  });
});
