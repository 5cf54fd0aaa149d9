// The read state (DESIGN "What changed since seen" means): what a view saw, not when it looked. Built from real
// history: the caller views (recordView, or a view row that saw the skill as it is), then the host app edits,
// publishes or comments as the owner, then the caller reads. Every procedure must agree on the one definition.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { asOwnerInTenant } from '../db/seed.ts';
import { callerFor, expectTrpcError, tracked } from './support/callers.ts';
import { engines } from './support/engines.ts';
import {
  createTenant,
  daysAgo,
  editSkill,
  insertFeedback,
  insertView,
  publishVersion,
  republish,
  skillSpec,
} from './support/factory.ts';

type Caller = ReturnType<typeof callerFor>;

/** A published skill created long before any view here (outside every feed window until it changes). */
const old = (slug: string, extra: Parameters<typeof skillSpec>[1] = {}) => skillSpec(slug, { changedDaysAgo: 120, ...extra });

/** Every item whatsNew lists for a window, paged through with `limit`, as skill ids. */
async function pageThrough(caller: Caller, windowDays: number, limit: number): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 2000; pages++) {
    const page: Awaited<ReturnType<Caller['whatsNew']>> = await caller.whatsNew({ windowDays, limit, cursor });
    expect(page.items.length).toBeLessThanOrEqual(limit);
    ids.push(...page.items.map((i) => i.skillId));
    cursor = page.nextCursor;
    if (!cursor) return ids;
  }
  throw new Error('whatsNew did not end');
}

/** What the four read procedures say about one skill for a caller. */
async function readState(caller: Caller, skillId: string) {
  const [views, feed, count, summary] = await Promise.all([
    caller.viewsForSkills({ skillIds: [skillId] }),
    caller.whatsNew({ limit: 50, windowDays: 90 }),
    caller.whatsNewCount({ windowDays: 90 }),
    caller.changeSummary({ skillId }),
  ]);
  return {
    hasUpdate: views.get(skillId)?.hasUpdate,
    inFeed: feed.items.some((i) => i.skillId === skillId),
    count: count.count,
    changes: summary.changes,
  };
}

describe.each(engines)('read state on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open();
  });
  afterAll(() => h.close());

  describe('an in-place edit (no new version)', () => {
    it('is a change until seen: the summary names exactly that field, hasUpdate is set, whatsNew lists it; recordView clears all', async () => {
      const t = await createTenant(h.db, { skills: [old('s')] });
      const skillId = t.skills.s!;
      const caller = callerFor(h.db, t);
      await caller.recordView({ skillId });
      expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: [] });

      await editSkill(h.db, t, skillId, { description: 'Rewritten in place' });
      expect(await readState(caller, skillId)).toEqual({
        hasUpdate: true,
        inFeed: true,
        count: 1,
        changes: [{ kind: 'details_updated', fields: ['description'] }],
      });
      const summary = await caller.changeSummary({ skillId });
      expect(summary).toMatchObject({ lastViewedVersion: 1, currentVersion: 1 });

      await caller.recordView({ skillId });
      expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: [] });

      // The next edit is news again, and only its field.
      await editSkill(h.db, t, skillId, { name: 'Renamed in place' });
      expect(await readState(caller, skillId)).toEqual({
        hasUpdate: true,
        inFeed: true,
        count: 1,
        changes: [{ kind: 'details_updated', fields: ['name'] }],
      });
    });

    it('details name exactly the fields that differ from what the caller saw: an edit undone is no change', async () => {
      const t = await createTenant(h.db, { skills: [old('s')] });
      const skillId = t.skills.s!;
      const caller = callerFor(h.db, t);
      await caller.recordView({ skillId });
      await editSkill(h.db, t, skillId, { name: 'Renamed', description: 'Rewritten' });
      expect((await readState(caller, skillId)).changes).toEqual([{ kind: 'details_updated', fields: ['name', 'description'] }]);
      // The name goes back to what the caller saw: only the description still differs.
      await editSkill(h.db, t, skillId, { name: 's v1' });
      expect(await readState(caller, skillId)).toEqual({
        hasUpdate: true,
        inFeed: true,
        count: 1,
        changes: [{ kind: 'details_updated', fields: ['description'] }],
      });
      // And the description too: nothing differs, though updated_at moved after the view.
      await editSkill(h.db, t, skillId, { description: 'About s, edition 1' });
      expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: [] });
    });
  });

  describe('lastViewedVersion and lastViewedAt never go backwards', () => {
    it('a rollback to an older version or an unpublish, then a view, keeps the highest version seen', async () => {
      const t = await createTenant(h.db, { skills: [old('s', { versionCount: 3 })] });
      const skillId = t.skills.s!;
      const caller = callerFor(h.db, t);
      expect((await caller.recordView({ skillId })).view?.lastViewedVersion).toBe(3);

      // The host publishes v2 again (a rollback): the content differs from what was seen.
      await republish(h.db, t, skillId, 2);
      expect((await caller.viewsForSkills({ skillIds: [skillId] })).get(skillId)).toMatchObject({ lastViewedVersion: 3, hasUpdate: true });
      const afterRollback = await caller.recordView({ skillId });
      expect(afterRollback.view?.lastViewedVersion).toBe(3);
      expect(afterRollback.previous?.lastViewedVersion).toBe(3);
      expect((await caller.viewsForSkills({ skillIds: [skillId] })).get(skillId)).toMatchObject({ lastViewedVersion: 3, hasUpdate: false });

      // Unpublished: no version to see, and nothing new either.
      await republish(h.db, t, skillId, null);
      expect((await caller.viewsForSkills({ skillIds: [skillId] })).get(skillId)?.hasUpdate).toBe(false);
      const afterUnpublish = await caller.recordView({ skillId });
      expect(afterUnpublish.view).toMatchObject({ lastViewedVersion: 3, viewCount: 3 });
      expect(await caller.changeSummary({ skillId })).toMatchObject({ lastViewedVersion: 3, currentVersion: null, changes: [] });
      // Another user's first view of the unpublished skill has no version.
      expect((await callerFor(h.db, t, 1).recordView({ skillId })).view?.lastViewedVersion).toBeNull();

      // Published again at a newer version: the view follows it up.
      await republish(h.db, t, skillId, 3);
      await publishVersion(h.db, t, skillId, { name: 's v4' });
      expect((await caller.recordView({ skillId })).view?.lastViewedVersion).toBe(4);
    });

    it('a later lastViewedAt already stored (a concurrent view whose transaction began later) is kept by an earlier-stamped view', async () => {
      const t = await createTenant(h.db, { skills: [old('s')] });
      const skillId = t.skills.s!;
      const caller = callerFor(h.db, t);
      await caller.recordView({ skillId });
      const later = new Date(Date.now() + 60 * 60 * 1000);
      await asOwnerInTenant(
        h.db,
        t.tenantId,
        (tx) =>
          tx.execute(sql`update user_skill_views set last_viewed_at = ${later.toISOString()}::timestamptz
                         where tenant_id = ${t.tenantId}::uuid and skill_id = ${skillId}::uuid`),
        { userId: t.userIds[0]! },
      );
      const again = await caller.recordView({ skillId });
      expect(again.previous?.lastViewedAt.getTime()).toBe(later.getTime());
      expect(again.view?.lastViewedAt.getTime()).toBe(later.getTime());
      expect(again.view?.viewCount).toBe(2);
    });
  });

  describe('markSeen and markAllSeen', () => {
    /**
     * User 0 viewed a, b, c, e (a twice); user 1 viewed a. Since: a renamed and commented on by user 2, b at a new
     * version, c commented on by user 1, e commented on by user 0 (own: nothing new), d (never viewed by user 0)
     * at a new version. Another tenant's user viewed x, which then changed.
     */
    async function scenario() {
      const t = await createTenant(h.db, { userCount: 3, skills: ['a', 'b', 'c', 'd', 'e'].map((slug) => old(slug)) });
      const [me, peer, third] = t.userIds as [string, string, string];
      const s = t.skills as Record<'a' | 'b' | 'c' | 'd' | 'e', string>;
      const caller = callerFor(h.db, t);
      for (const id of [s.a, s.a, s.b, s.c, s.e]) await caller.recordView({ skillId: id });
      await callerFor(h.db, t, 1).recordView({ skillId: s.a });
      await editSkill(h.db, t, s.a, { name: 'a renamed' });
      await insertFeedback(h.db, t, { skillId: s.a, userId: third });
      await publishVersion(h.db, t, s.b, { name: 'b v2' });
      await insertFeedback(h.db, t, { skillId: s.c, userId: peer });
      await insertFeedback(h.db, t, { skillId: s.e, userId: me });
      await publishVersion(h.db, t, s.d);
      const foreign = await createTenant(h.db, { skills: [old('x')] });
      await callerFor(h.db, foreign).recordView({ skillId: foreign.skills.x! });
      await publishVersion(h.db, foreign, foreign.skills.x!);
      return { t, s, caller, foreign };
    }

    /** What user `caller` has: badges, feed, count and summaries for the given skills. */
    async function everything(caller: Caller, ids: string[]) {
      const views = await caller.viewsForSkills({ skillIds: ids });
      return {
        rows: Object.fromEntries([...views].map(([id, v]) => [id, { ...v }])),
        feed: (await caller.whatsNew({ limit: 50, windowDays: 90 })).items.map((i) => i.skillId),
        count: await caller.whatsNewCount({ windowDays: 90 }),
        changes: Object.fromEntries(await Promise.all(ids.map(async (id) => [id, (await caller.changeSummary({ skillId: id })).changes]))),
      };
    }

    it('clear badges, the feed, the count and the summaries without counting a visit; marked counts rows that had something unseen', async () => {
      const { t, s, caller, foreign } = await scenario();
      const mine = [s.a, s.b, s.c, s.e];
      const before = await everything(caller, mine);
      expect(Object.values(before.rows).map((v) => [v.skillId, v.hasUpdate])).toEqual(
        expect.arrayContaining([[s.a, true], [s.b, true], [s.c, false], [s.e, false]]),
      );
      expect(before.feed.sort()).toEqual([s.a, s.b].sort());
      expect(before.count).toEqual({ count: 2, capped: false });
      expect(before.changes).toEqual({
        [s.a]: [{ kind: 'details_updated', fields: ['name'] }, { kind: 'new_feedback', count: 1 }],
        [s.b]: [{ kind: 'version_bump', from: 1, to: 2 }, { kind: 'details_updated', fields: ['name'] }],
        [s.c]: [{ kind: 'new_feedback', count: 1 }],
        [s.e]: [],
      });
      const peer = callerFor(h.db, t, 1);
      const peerBefore = await everything(peer, [s.a]);
      const foreignCaller = callerFor(h.db, foreign);
      const foreignBefore = await everything(foreignCaller, [foreign.skills.x!]);

      // a and b had something unseen; e had nothing (own feedback); d was never viewed; x is another tenant's;
      // the last id exists nowhere. None of these is an error, and only a and b count.
      expect(await caller.markSeen({ skillIds: [s.a, s.b, s.e, s.d, foreign.skills.x!, randomUUID()] })).toEqual({ marked: 2 });
      const marked = await everything(caller, mine);
      expect(marked.feed).toEqual([]);
      expect(marked.count).toEqual({ count: 0, capped: false });
      expect(marked.changes).toEqual({ [s.a]: [], [s.b]: [], [s.c]: [{ kind: 'new_feedback', count: 1 }], [s.e]: [] });
      // Marking is not a visit: the view rows are exactly as before, but for hasUpdate.
      const withoutBadge = (rows: typeof before.rows) =>
        Object.fromEntries(Object.entries(rows).map(([id, { hasUpdate: _, ...view }]) => [id, view]));
      expect(withoutBadge(marked.rows)).toEqual(withoutBadge(before.rows));
      expect(Object.values(marked.rows).every((v) => !v.hasUpdate)).toBe(true);
      expect(marked.rows[s.a]).toMatchObject({ viewCount: 2, lastViewedVersion: 1 });
      // Nothing unseen is left among them: marking them again marks nothing.
      expect(await caller.markSeen({ skillIds: [s.a, s.b, s.e] })).toEqual({ marked: 0 });
      // d stays never viewed: still no row, and no summary history.
      expect((await caller.viewsForSkills({ skillIds: [s.d] })).size).toBe(0);
      expect((await caller.changeSummary({ skillId: s.d })).firstView).toBe(true);

      // Other users' rows are untouched: the peer in this tenant, and the other tenant's user.
      expect(await everything(peer, [s.a])).toEqual(peerBefore);
      expect(peerBefore.rows[s.a]?.hasUpdate).toBe(true);
      expect(await everything(foreignCaller, [foreign.skills.x!])).toEqual(foreignBefore);
      expect(foreignBefore.count).toEqual({ count: 1, capped: false });

      // Marking is not a promise about the future: the next change is news.
      await editSkill(h.db, t, s.b, { description: 'b, edited after marking' });
      expect(await readState(caller, s.b)).toEqual({
        hasUpdate: true,
        inFeed: true,
        count: 1,
        changes: [{ kind: 'details_updated', fields: ['description'] }],
      });
    });

    it('markAllSeen marks every viewed skill with something unseen, any window; a second call marks nothing', async () => {
      const { t, s, caller, foreign } = await scenario();
      // A change outside every feed window still counts as unseen for marking.
      const e = s.e;
      await editSkill(h.db, t, e, { name: 'e renamed long ago', updatedAt: daysAgo(200) });
      const mine = [s.a, s.b, s.c, e];
      const before = await everything(caller, mine);
      expect(before.rows[e]?.hasUpdate).toBe(true);
      expect(before.feed).not.toContain(e);
      const peer = callerFor(h.db, t, 1);
      const peerBefore = await everything(peer, [s.a]);
      const foreignCaller = callerFor(h.db, foreign);
      const foreignBefore = await everything(foreignCaller, [foreign.skills.x!]);

      expect(await caller.markAllSeen({})).toEqual({ marked: 4 });
      const after = await everything(caller, mine);
      expect(after.feed).toEqual([]);
      expect(after.count).toEqual({ count: 0, capped: false });
      expect(after.changes).toEqual({ [s.a]: [], [s.b]: [], [s.c]: [], [e]: [] });
      for (const id of mine) {
        const { hasUpdate, ...view } = after.rows[id]!;
        const { hasUpdate: _, ...viewBefore } = before.rows[id]!;
        expect(hasUpdate, id).toBe(false);
        expect(view, id).toEqual(viewBefore);
      }
      expect(await caller.markAllSeen({})).toEqual({ marked: 0 });
      expect(await everything(peer, [s.a])).toEqual(peerBefore);
      expect(await everything(foreignCaller, [foreign.skills.x!])).toEqual(foreignBefore);
      // A user who viewed nothing marks nothing.
      expect(await callerFor(h.db, t, 2).markAllSeen({})).toEqual({ marked: 0 });
    });
  });

  describe('whatsNewCount', () => {
    it('equals the number of items whatsNew pages through, for several windows and page sizes', async () => {
      // Viewed skills changed at various ages, in place or by a new version; some viewed and unchanged, some
      // changed but never viewed, a draft, an edit undone. Narrow windows start from the changed skills, wide ones
      // from the views (the feed's two plans).
      const ages = [0.2, 0.5, 2, 4, 6.5, 9, 15, 29, 31, 45, 80, 100];
      const t = await createTenant(h.db, {
        skills: [
          ...ages.map((_, i) => old(`c${i}`)),
          ...['quiet1', 'quiet2', 'undone', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9', 'n10', 'n11', 'n12', 'n13'].map((slug) =>
            old(slug),
          ),
          old('draft', { status: 'draft' }),
        ],
      });
      const s = t.skills;
      const me = t.userIds[0]!;
      for (const slug of [...ages.map((_, i) => `c${i}`), 'quiet1', 'quiet2', 'undone', 'draft']) {
        await insertView(h.db, t, { userId: me, skillId: s[slug]!, lastViewedAt: daysAgo(150) });
      }
      for (const [i, age] of ages.entries()) {
        if (i % 2 === 0) await publishVersion(h.db, t, s[`c${i}`]!, { updatedAt: daysAgo(age) });
        else await editSkill(h.db, t, s[`c${i}`]!, { description: `c${i} edited`, updatedAt: daysAgo(age) });
      }
      await editSkill(h.db, t, s.undone!, { name: 'temporary', updatedAt: daysAgo(1) });
      await editSkill(h.db, t, s.undone!, { name: 'undone v1', updatedAt: daysAgo(0.9) });
      await editSkill(h.db, t, s.draft!, { name: 'draft renamed', updatedAt: daysAgo(1) });
      for (let i = 1; i <= 13; i++) await publishVersion(h.db, t, s[`n${i}`]!, { updatedAt: daysAgo(i * 0.3) });

      const caller = callerFor(h.db, t);
      const expected: Record<number, number> = { 1: 2, 3: 3, 7: 5, 30: 8, 90: 11 };
      for (const [windowDays, n] of Object.entries(expected).map(([w, n]) => [Number(w), n] as const)) {
        const count = await caller.whatsNewCount({ windowDays });
        expect(count, `window ${windowDays}`).toEqual({ count: n, capped: false });
        for (const limit of [1, 2, 3]) {
          const ids = await pageThrough(caller, windowDays, limit);
          expect(ids.length, `window ${windowDays}, limit ${limit}`).toBe(count.count);
          expect(new Set(ids).size).toBe(ids.length);
        }
      }
      // The default window is 30 days, for both.
      expect(await caller.whatsNewCount({})).toEqual({ count: expected[30], capped: false });
      expect((await caller.whatsNew({ limit: 50 })).items).toHaveLength(expected[30]!);
    });

    it('stops at the cap: more than 999 unseen skills count as 999 (capped) by default, exactly with a cap of 10000', async () => {
      const t = await createTenant(h.db, { userCount: 1 });
      const me = t.userIds[0]!;
      const total = 1000;
      // Cheaply, as the owner: 1000 published skills, a view row of each that saw it as it was, then one rename of all.
      await asOwnerInTenant(
        h.db,
        t.tenantId,
        async (tx) => {
          await tx.execute(sql`insert into skills (tenant_id, name, slug, description, category, status)
            select ${t.tenantId}::uuid, 'bulk ' || g, 'bulk-' || g, 'bulk', 'Testing', 'published'
            from generate_series(1, ${total}::int) g`);
          await tx.execute(sql`insert into user_skill_views
              (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, view_count, seen_revision, seen_feedback)
            select s.tenant_id, ${me}::uuid, s.id, now(), now(), 1, s.content_revision, s.feedback_seq
            from skills s where s.tenant_id = ${t.tenantId}::uuid`);
        },
        { userId: me },
      );
      const caller = callerFor(h.db, t);
      expect(await caller.whatsNewCount({})).toEqual({ count: 0, capped: false });
      await asOwnerInTenant(h.db, t.tenantId, (tx) =>
        tx.execute(sql`update skills set name = name || ' (renamed)' where tenant_id = ${t.tenantId}::uuid`),
      );
      expect(await caller.whatsNewCount({})).toEqual({ count: 999, capped: true });
      expect(await caller.whatsNewCount({ cap: 999 })).toEqual({ count: 999, capped: true });
      expect(await caller.whatsNewCount({ cap: 10_000 })).toEqual({ count: total, capped: false });
      expect(await caller.whatsNewCount({ cap: 1000 })).toEqual({ count: total, capped: false });
      expect(await pageThrough(caller, 30, 50)).toHaveLength(total);
      // One more unseen skill: past a cap of 1000.
      await asOwnerInTenant(h.db, t.tenantId, (tx) =>
        tx.execute(sql`insert into skills (tenant_id, name, slug, description, category, status)
          values (${t.tenantId}::uuid, 'one more', 'one-more', 'bulk', 'Testing', 'published')`),
      );
      const [oneMore] = await query<{ id: string }>(h.db, sql`select id from skills where tenant_id = ${t.tenantId}::uuid and slug = 'one-more'`);
      await insertView(h.db, t, { userId: me, skillId: oneMore!.id });
      await editSkill(h.db, t, oneMore!.id, { name: 'one more (renamed)' });
      expect(await caller.whatsNewCount({ cap: 1000 })).toEqual({ count: total, capped: true });
      expect(await caller.whatsNewCount({ cap: 10_000 })).toEqual({ count: total + 1, capped: false });
    });

    it('rejects a cap below 999 or above 10000 with BAD_REQUEST', async () => {
      const t = await createTenant(h.db, { userCount: 1 });
      const caller = callerFor(h.db, t);
      for (const cap of [0, 998, 10_001]) await expectTrpcError(caller.whatsNewCount({ cap }), 'BAD_REQUEST');
      for (const cap of [999, 10_000]) expect(await caller.whatsNewCount({ cap })).toEqual({ count: 0, capped: false });
    });
  });

  describe('feedback', () => {
    it("others' feedback after a view is new_feedback, own never; cleared by recordView and markSeen; never hasUpdate", async () => {
      const t = await createTenant(h.db, { userCount: 3, skills: [old('s')] });
      const [me, peer, third] = t.userIds as [string, string, string];
      const skillId = t.skills.s!;
      const caller = callerFor(h.db, t);
      await insertFeedback(h.db, t, { skillId, userId: peer }); // before the first view: seen
      tracked(await caller.recordView({ skillId }));
      expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: [] });

      await insertFeedback(h.db, t, { skillId, userId: peer });
      await insertFeedback(h.db, t, { skillId, userId: third });
      await insertFeedback(h.db, t, { skillId, userId: null });
      await insertFeedback(h.db, t, { skillId, userId: me });
      // Feedback is not a content change: no badge, not in the feed nor its count.
      expect(await readState(caller, skillId)).toEqual({
        hasUpdate: false,
        inFeed: false,
        count: 0,
        changes: [{ kind: 'new_feedback', count: 3 }],
      });

      tracked(await caller.recordView({ skillId }));
      expect((await caller.changeSummary({ skillId })).changes).toEqual([]);

      await insertFeedback(h.db, t, { skillId, userId: peer });
      expect((await caller.changeSummary({ skillId })).changes).toEqual([{ kind: 'new_feedback', count: 1 }]);
      expect(await caller.markSeen({ skillIds: [skillId] })).toEqual({ marked: 1 });
      expect((await caller.changeSummary({ skillId })).changes).toEqual([]);

      // The caller's own feedback is never something to see, nor to mark.
      await insertFeedback(h.db, t, { skillId, userId: me });
      expect((await caller.changeSummary({ skillId })).changes).toEqual([]);
      expect(await caller.markSeen({ skillIds: [skillId] })).toEqual({ marked: 0 });
      expect(await caller.markAllSeen({})).toEqual({ marked: 0 });
      // The peer, who never viewed it, has nothing either.
      expect((await callerFor(h.db, t, 1).changeSummary({ skillId })).changes).toEqual([]);
    });
  });
});
