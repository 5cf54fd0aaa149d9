// Each procedure's contract (DESIGN.md) through createCaller(createContextInner({ db, session })).
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import type { SkillSpec } from '../db/seed.ts';
import { createContextInner } from '../server/context.ts';
import { createCaller } from '../server/router.ts';
import { callerFor, countViews, expectTrpcError, tracked } from './support/callers.ts';
import { engines } from './support/engines.ts';
import {
  createTenant,
  daysAgo,
  editSkill,
  insertFeedback,
  insertView,
  publishVersion,
  republish,
  setUpdatedAt,
  skillSpec,
  type TenantFixture,
} from './support/factory.ts';

/** A published skill created long before any view in these tests. */
const old = (slug: string, extra: Parameters<typeof skillSpec>[1] = {}) => skillSpec(slug, { changedDaysAgo: 60, ...extra });

async function viewRow(h: DbHandle, t: TenantFixture, userId: string, skillId: string) {
  const rows = await query<Record<string, unknown>>(
    h.db,
    sql`select first_viewed_at::text as first, last_viewed_at::text as last, last_viewed_version, view_count,
               seen_revision::text as seen_revision, seen_feedback::text as seen_feedback
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
        await expectTrpcError(caller.whatsNewCount({}), 'UNAUTHORIZED');
        await expectTrpcError(caller.markSeen({ skillIds: [skillId] }), 'UNAUTHORIZED');
        await expectTrpcError(caller.markAllSeen({}), 'UNAUTHORIZED');
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
      const first = tracked(await caller.recordView({ skillId }));
      expect(first.previous).toBeNull();
      expect(first.view).toMatchObject({ skillId, viewCount: 1, lastViewedVersion: 3 });
      expect(first.view.firstViewedAt).toBeInstanceOf(Date);
      expect(first.view.lastViewedAt).toBeInstanceOf(Date);
      expect(first.view.firstViewedAt.getTime()).toBe(first.view.lastViewedAt.getTime());
      // Database clock on the same machine: within a few seconds of the test's clock.
      expect(Math.abs(first.view.lastViewedAt.getTime() - before)).toBeLessThan(5_000);

      const second = tracked(await caller.recordView({ skillId }));
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
      expect(tracked(await caller.recordView({ skillId: t.skills.s! })).view.lastViewedVersion).toBe(2);
      await republish(h.db, t, t.skills.s!, 3);
      const again = tracked(await caller.recordView({ skillId: t.skills.s! }));
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
      const other = tracked(await callerFor(h.db, t, 1).recordView({ skillId: t.skills.s! }));
      expect(other.previous).toBeNull();
      expect(other.view.viewCount).toBe(1);
    });

    it('accepts an upper-case id and reports the canonical one', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s')] });
      const result = tracked(await callerFor(h.db, t).recordView({ skillId: t.skills.s!.toUpperCase() }));
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
    it('returns a Map of only the viewed skills, with hasUpdate for content changed since the view (new version or in-place edit)', async () => {
      const t = await createTenant(h.db, {
        skills: [old('unchanged'), old('bumped'), old('edited'), old('reverted'), old('unpublished'), old('never-viewed'), old('seen-by-other')],
      });
      const [me, other] = t.userIds as [string, string];
      const s = t.skills as Record<string, string>;
      for (const slug of ['unchanged', 'bumped', 'edited', 'reverted', 'unpublished']) {
        await insertView(h.db, t, { userId: me, skillId: s[slug]!, lastViewedAt: daysAgo(5), viewCount: slug === 'unchanged' ? 4 : 1 });
      }
      await insertView(h.db, t, { userId: other, skillId: s['seen-by-other']!, lastViewedAt: daysAgo(5) });
      // Since the views: a new version; a description edited in place; a name edited and edited back (the revision
      // moved twice, the content is what was seen); unpublished (nothing new to see).
      await publishVersion(h.db, t, s.bumped!, { name: 'bumped v2' });
      await editSkill(h.db, t, s.edited!, { description: 'edited' });
      await editSkill(h.db, t, s.reverted!, { name: 'temporary' });
      await editSkill(h.db, t, s.reverted!, { name: 'reverted v1' });
      await republish(h.db, t, s.unpublished!, null);
      await publishVersion(h.db, t, s['seen-by-other']!);

      const ids = [s.unchanged!, s.bumped!, s.edited!, s.reverted!, s.unpublished!, s['never-viewed']!, s['seen-by-other']!, randomUUID()];
      // Duplicates are allowed; an upper-case id comes back under its canonical key.
      const views = await callerFor(h.db, t).viewsForSkills({ skillIds: [...ids, s.unchanged!, s.bumped!.toUpperCase()] });
      expect(views).toBeInstanceOf(Map);
      expect([...views.keys()].sort()).toEqual([s.unchanged!, s.bumped!, s.edited!, s.reverted!, s.unpublished!].sort());
      expect(views.get(s.unchanged!)).toEqual({
        skillId: s.unchanged,
        firstViewedAt: expect.any(Date),
        lastViewedAt: expect.any(Date),
        lastViewedVersion: 1,
        viewCount: 4,
        hasUpdate: false,
      });
      expect(Math.abs(views.get(s.unchanged!)!.lastViewedAt.getTime() - daysAgo(5).getTime())).toBeLessThan(60_000);
      expect(views.get(s.bumped!)).toMatchObject({ hasUpdate: true, lastViewedVersion: 1 });
      expect(views.get(s.edited!)).toMatchObject({ hasUpdate: true, lastViewedVersion: 1 });
      expect(views.get(s.reverted!)?.hasUpdate).toBe(false);
      expect(views.get(s.unpublished!)?.hasUpdate).toBe(false);
    });

    it('clears hasUpdate once the skill is viewed again', async () => {
      const t = await createTenant(h.db, { skills: [old('s')] });
      const skillId = t.skills.s!;
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId, lastViewedAt: daysAgo(3) });
      await publishVersion(h.db, t, skillId);
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
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(1) });
      const ids = [t.skills.s!, ...Array.from({ length: 499 }, () => randomUUID())];
      const views = await callerFor(h.db, t).viewsForSkills({ skillIds: ids });
      expect([...views.keys()]).toEqual([t.skills.s]);
    });
  });

  describe('whatsNew', () => {
    it('lists published skills whose content changed since the last view, within the window, newest change first', async () => {
      const t = await createTenant(h.db, {
        skills: [
          old('newest'),
          old('older'),
          old('edited'),
          old('seen-since'),
          old('draft', { status: 'draft' }),
          old('archived', { status: 'archived' }),
          old('outside-window'),
          old('never-viewed'),
          old('other-users'),
        ],
      });
      const [me, other] = t.userIds as [string, string];
      const s = t.skills as Record<string, string>;
      const seen = (slug: string, days: number, userId = me) =>
        insertView(h.db, t, { userId, skillId: s[slug]!, lastViewedAt: daysAgo(days), viewCount: 3 });
      for (const slug of ['newest', 'older', 'seen-since', 'draft', 'archived']) await seen(slug, 5);
      await seen('edited', 10);
      await seen('outside-window', 50);
      await seen('other-users', 5, other);
      // What happened since (updated_at backdated to place each change in the window).
      await publishVersion(h.db, t, s.newest!, { name: 'newest v2', updatedAt: daysAgo(0.5) });
      await publishVersion(h.db, t, s.older!, { name: 'older v2', updatedAt: daysAgo(2) });
      await editSkill(h.db, t, s.edited!, { name: 'Edited name', updatedAt: daysAgo(3) });
      await publishVersion(h.db, t, s['seen-since']!, { updatedAt: daysAgo(3) });
      await callerFor(h.db, t).recordView({ skillId: s['seen-since']! });
      await editSkill(h.db, t, s.draft!, { name: 'Draft renamed', updatedAt: daysAgo(1) });
      await publishVersion(h.db, t, s.archived!, { updatedAt: daysAgo(1) });
      await publishVersion(h.db, t, s['outside-window']!, { updatedAt: daysAgo(40) });
      await publishVersion(h.db, t, s['never-viewed']!, { updatedAt: daysAgo(1) });
      await publishVersion(h.db, t, s['other-users']!, { updatedAt: daysAgo(1) });

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
      const t = await createTenant(h.db, { skills: [old('s')] });
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(4) });
      await publishVersion(h.db, t, t.skills.s!);
      const caller = callerFor(h.db, t);
      expect((await caller.whatsNew({})).items).toHaveLength(1);
      await caller.recordView({ skillId: t.skills.s! });
      expect((await caller.whatsNew({})).items).toHaveLength(0);
    });

    it('pages with nextCursor strings: no gaps or repeats across ties and microsecond differences', async () => {
      const slugs = Array.from({ length: 7 }, (_, i) => `p${i}`);
      const t = await createTenant(h.db, { skills: slugs.map((slug) => old(slug)) });
      const s = t.skills as Record<string, string>;
      for (const slug of slugs) {
        await insertView(h.db, t, { userId: t.userIds[0]!, skillId: s[slug]!, lastViewedAt: daysAgo(6) });
        await editSkill(h.db, t, s[slug]!, { description: `${slug}, edited since the view` });
      }
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
      for (const slug of slugs) await setUpdatedAt(h.db, t, s[slug]!, stamps[slug]!);
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
      const t = await createTenant(h.db, { skills: slugs.map((slug) => old(slug)) });
      for (const [i, slug] of slugs.entries()) {
        await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills[slug]!, lastViewedAt: daysAgo(5) });
        await publishVersion(h.db, t, t.skills[slug]!, { updatedAt: daysAgo(1 + i / 10) });
      }
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

    it('reports no changes when nothing happened since the last view (feedback before it, own feedback after it)', async () => {
      const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 2, changedDaysAgo: 10 })] });
      await insertFeedback(h.db, t, { skillId: t.skills.s!, userId: t.userIds[1]!, createdAt: daysAgo(6) });
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(5) });
      await insertFeedback(h.db, t, { skillId: t.skills.s!, userId: t.userIds[0]! });
      const summary = await callerFor(h.db, t).changeSummary({ skillId: t.skills.s! });
      expect(summary).toMatchObject({ firstView: false, lastViewedVersion: 2, currentVersion: 2, changes: [] });
      expect(summary.lastViewedAt).toBeInstanceOf(Date);
    });

    it('reports a version bump with the changed details, and feedback by others since the last view', async () => {
      const t = await createTenant(h.db, { userCount: 3, skills: [old('s')] });
      const [me, other, third] = t.userIds as [string, string, string];
      const skillId = t.skills.s!;
      await insertFeedback(h.db, t, { skillId, userId: other }); // before the view: not counted
      await insertView(h.db, t, { userId: me, skillId, lastViewedAt: daysAgo(4) });
      await publishVersion(h.db, t, skillId, { name: 's v2', description: 'About s, edition 2' });
      await publishVersion(h.db, t, skillId, { name: 's v3', description: 'About s, edition 3' });
      await insertFeedback(h.db, t, { skillId, userId: other });
      await insertFeedback(h.db, t, { skillId, userId: third });
      await insertFeedback(h.db, t, { skillId, userId: null });
      await insertFeedback(h.db, t, { skillId, userId: me }); // the caller's own: not counted

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
      const t = await createTenant(h.db, { skills: [old('s')] });
      await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.s!, lastViewedAt: daysAgo(5) });
      await editSkill(h.db, t, t.skills.s!, { name: 'Renamed' });
      const summary = await callerFor(h.db, t).changeSummary({ skillId: t.skills.s! });
      expect(summary.changes).toEqual([{ kind: 'details_updated', fields: ['name'] }]);
    });

    it('is a pure read: user_skill_views is unchanged, for viewed and unviewed skills', async () => {
      const t = await createTenant(h.db, { skills: [old('seen'), skillSpec('unseen')] });
      const me = t.userIds[0]!;
      await insertView(h.db, t, { userId: me, skillId: t.skills.seen!, lastViewedAt: daysAgo(4), viewCount: 2 });
      await publishVersion(h.db, t, t.skills.seen!);
      await insertFeedback(h.db, t, { skillId: t.skills.seen!, userId: t.userIds[1]! });
      const before = await viewRow(h, t, me, t.skills.seen!);
      const caller = callerFor(h.db, t);
      await caller.changeSummary({ skillId: t.skills.seen! });
      await caller.changeSummary({ skillId: t.skills.unseen! });
      expect(await viewRow(h, t, me, t.skills.seen!)).toEqual(before);
      expect(await viewRow(h, t, me, t.skills.unseen!)).toBeNull();
      expect(await countViews(h.db, t.tenantId)).toBe(1);
      // A later summary still reports the same changes: nothing was marked as seen.
      const again = await caller.changeSummary({ skillId: t.skills.seen! });
      expect(again.changes).toEqual([
        { kind: 'version_bump', from: 1, to: 2 },
        { kind: 'new_feedback', count: 1 },
      ]);
    });

    it('is NOT_FOUND for a skill that does not exist', async () => {
      const t = await createTenant(h.db);
      const error = await expectTrpcError(callerFor(h.db, t).changeSummary({ skillId: randomUUID() }), 'NOT_FOUND');
      expect(error.message).toBe('Skill not found');
    });
  });
});
