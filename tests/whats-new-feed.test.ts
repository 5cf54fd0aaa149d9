// The "what's new" feed: published skills whose content changed since the user last saw it, in the window, newest first, keyset-paginated.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { decodeCursor, encodeCursor, whatsNew, type FeedCursor, type WhatsNewItem } from '../db/queries/feed.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { recordView } from '../db/queries/views.ts';
import type { SkillSpec } from '../db/seed.ts';
import { engines } from './support/engines.ts';
import {
  APP_ROLE,
  createTenant,
  daysAgo,
  editSkill,
  insertView,
  publishVersion,
  republish,
  setStatus,
  setUpdatedAt,
  skillSpec,
  type TenantFixture,
} from './support/factory.ts';

const HOUR = 60 * 60 * 1000;

describe.each(engines)('whatsNew on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open();
  });
  afterAll(() => h.close());

  const feed = (t: TenantFixture, userId: string, options: { limit?: number; windowDays?: number; cursor?: FeedCursor | null } = {}) => {
    const scope = { role: APP_ROLE, tenantId: t.tenantId, userId };
    return withTenantTransaction(h.db, scope, (tx) =>
      whatsNew(tx, scope, { limit: options.limit ?? 50, windowDays: options.windowDays ?? 30, cursor: options.cursor ?? null }),
    );
  };

  describe('which skills appear', () => {
    let t: TenantFixture;
    let u: string;
    let u2: string;
    const viewedAt: Record<string, Date> = {};
    beforeAll(async () => {
      const old = (slug: string, status: SkillSpec['status'] = 'published') => skillSpec(slug, { changedDaysAgo: 60, status });
      t = await createTenant(h.db, {
        skills: [
          old('bumped'),
          old('edited'),
          old('seen-again'),
          old('unchanged'),
          old('reverted'),
          old('unpublished'),
          old('draft', 'draft'),
          old('archived'),
          old('old-change'),
          old('unviewed'),
          old('others'),
        ],
      });
      [u, u2] = t.userIds as [string, string];
      const s = t.skills;
      const view = async (slug: string, userId: string, at: Date) => {
        viewedAt[`${slug}:${userId}`] = at;
        await insertView(h.db, t, { userId, skillId: s[slug]!, lastViewedAt: at, viewCount: 3 });
      };
      for (const slug of ['bumped', 'seen-again', 'unpublished', 'draft', 'archived']) await view(slug, u, daysAgo(5));
      await view('edited', u, daysAgo(3));
      await view('unchanged', u, daysAgo(1));
      await view('reverted', u, daysAgo(4));
      await view('old-change', u, daysAgo(50));
      await view('others', u2, daysAgo(5));
      // What the host changed since (updated_at backdated to place each change in or out of the window).
      await publishVersion(h.db, t, s.bumped!, { name: 'bumped v2', updatedAt: daysAgo(2) });
      await editSkill(h.db, t, s.edited!, { description: 'Edited in place', updatedAt: daysAgo(0.5) });
      // Changed after the view, then viewed again: seen.
      await publishVersion(h.db, t, s['seen-again']!, { updatedAt: daysAgo(3) });
      const scope = { role: APP_ROLE, tenantId: t.tenantId, userId: u };
      await withTenantTransaction(h.db, scope, (tx) => recordView(tx, scope, s['seen-again']!));
      // Renamed and renamed back after the view: updated_at is after the view, yet there is nothing new to see.
      await editSkill(h.db, t, s.reverted!, { name: 'Temporary', updatedAt: daysAgo(2) });
      await editSkill(h.db, t, s.reverted!, { name: 'reverted v1', updatedAt: daysAgo(1.5) });
      // Unpublished (status still published): no published version is not something new.
      await republish(h.db, t, s.unpublished!, null, { updatedAt: daysAgo(1) });
      await editSkill(h.db, t, s.draft!, { name: 'Draft renamed', updatedAt: daysAgo(2) });
      // A new version, then archived: not in the feed (published skills only).
      await publishVersion(h.db, t, s.archived!, { updatedAt: daysAgo(2) });
      await setStatus(h.db, t, s.archived!, 'archived');
      await publishVersion(h.db, t, s['old-change']!, { updatedAt: daysAgo(40) });
      await publishVersion(h.db, t, s.unviewed!, { updatedAt: daysAgo(1) });
      await publishVersion(h.db, t, s.others!, { updatedAt: daysAgo(1) });
      // Another tenant whose user viewed a skill that changed since: must not show up anywhere here.
      const other = await createTenant(h.db, { skills: [old('bumped')] });
      await insertView(h.db, other, { userId: other.userIds[0]!, skillId: other.skills.bumped!, lastViewedAt: daysAgo(5) });
      await publishVersion(h.db, other, other.skills.bumped!, { updatedAt: daysAgo(1) });
    });

    it('lists only published skills whose content changed since the last view (new version or in-place edit), newest change first', async () => {
      const { items, nextCursor } = await feed(t, u);
      expect(items.map((i) => i.slug)).toEqual(['edited', 'bumped']);
      expect(nextCursor).toBeNull();
    });

    it('returns the view and version details of each item', async () => {
      const { items } = await feed(t, u);
      const bumped = items.find((i) => i.slug === 'bumped');
      expect(bumped).toMatchObject<Partial<WhatsNewItem>>({
        skillId: t.skills.bumped!,
        name: 'bumped v2',
        category: 'Testing',
        lastViewedVersion: 1,
        currentVersion: 2,
        viewCount: 3,
      });
      expect(bumped!.lastViewedAt.getTime()).toBe(viewedAt[`bumped:${u}`]!.getTime());
      expect(Math.abs(bumped!.updatedAt.getTime() - daysAgo(2).getTime())).toBeLessThan(60_000);
      expect(bumped!.updatedAt.getTime()).toBeGreaterThan(bumped!.lastViewedAt.getTime());
      const edited = items.find((i) => i.slug === 'edited');
      expect(edited).toMatchObject({ lastViewedVersion: 1, currentVersion: 1 });
    });

    it('leaves out changes older than the window, and includes them with a wider one', async () => {
      expect((await feed(t, u, { windowDays: 30 })).items.map((i) => i.slug)).not.toContain('old-change');
      expect((await feed(t, u, { windowDays: 45 })).items.map((i) => i.slug)).toEqual(['edited', 'bumped', 'old-change']);
      expect((await feed(t, u, { windowDays: 1 })).items.map((i) => i.slug)).toEqual(['edited']);
    });

    it("shows another user's views only to that user", async () => {
      expect((await feed(t, u2)).items.map((i) => i.slug)).toEqual(['others']);
    });

    it('is empty for a user who viewed nothing', async () => {
      const t3 = await createTenant(h.db, { userCount: 1, skills: [skillSpec('s', { changedDaysAgo: 1 })] });
      expect(await feed(t3, t3.userIds[0]!)).toEqual({ items: [], nextCursor: null });
    });
  });

  describe('keyset pages', () => {
    let t: TenantFixture;
    let u: string;
    /** Skill ids in the order the feed must return them. */
    let expected: string[];
    beforeAll(async () => {
      const slugs = Array.from({ length: 25 }, (_, i) => `p${String(i).padStart(2, '0')}`);
      t = await createTenant(h.db, { userCount: 1, skills: slugs.map((s) => skillSpec(s, { changedDaysAgo: 30 })) });
      u = t.userIds[0]!;
      // Each skill viewed, then edited in place (real history); then its updated_at set exactly (not a content change).
      for (const slug of slugs) {
        await insertView(h.db, t, { userId: u, skillId: t.skills[slug]!, lastViewedAt: daysAgo(20) });
        await editSkill(h.db, t, t.skills[slug]!, { name: `${slug}, renamed since the view` });
      }
      // Timestamps with microseconds. Ties: p00–p04 share one, p05–p08 another; p09–p12 differ only in microseconds.
      // Ordered newest first, the tie groups straddle page boundaries for a page size of 4 (and 5).
      const base = Math.floor(Date.now() / 1000) * 1000 - 2 * 24 * HOUR;
      const at = (hoursAgo: number, micros: number) => ({ ms: base - hoursAgo * HOUR, micros });
      const plan: Record<string, { ms: number; micros: number }> = {
        p13: at(1, 0), p14: at(2, 0), p15: at(3, 0),
        p00: at(4, 500), p01: at(4, 500), p02: at(4, 500), p03: at(4, 500), p04: at(4, 500),
        p16: at(5, 0),
        p05: at(6, 0), p06: at(6, 0), p07: at(6, 0), p08: at(6, 0),
        p09: at(7, 1), p10: at(7, 2), p11: at(7, 3), p12: at(7, 4),
      };
      slugs.slice(17).forEach((s, i) => (plan[s] = at(8 + i, 0)));
      for (const [slug, { ms, micros }] of Object.entries(plan)) {
        const text = `${new Date(ms).toISOString().slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
        await setUpdatedAt(h.db, t, t.skills[slug]!, text);
      }
      expected = Object.entries(plan)
        .map(([slug, { ms, micros }]) => ({ id: t.skills[slug]!, key: BigInt(ms) * 1000n + BigInt(micros) }))
        .sort((x, y) => (x.key === y.key ? (x.id < y.id ? 1 : -1) : x.key < y.key ? 1 : -1))
        .map((x) => x.id);
    });

    async function walk(limit: number) {
      const pages: { ids: string[]; nextCursor: string | null }[] = [];
      let cursor: FeedCursor | null = null;
      for (let guard = 0; guard < 50; guard++) {
        const page = await feed(t, u, { limit, cursor });
        const encoded = page.nextCursor ? encodeCursor(page.nextCursor) : null;
        pages.push({ ids: page.items.map((i) => i.skillId), nextCursor: encoded });
        if (!encoded) return pages;
        // What a client sends back: the opaque string, decoded by the server.
        cursor = decodeCursor(encoded);
        expect(cursor).toEqual(page.nextCursor);
      }
      throw new Error('pagination did not end');
    }

    it('the single full list is ordered newest change first, ties broken by id descending', async () => {
      const full = await feed(t, u, { limit: 50 });
      expect(full.items.map((i) => i.skillId)).toEqual(expected);
      expect(full.nextCursor).toBeNull();
    });

    it('pages of 4 concatenate to the full list with no duplicates or gaps, and the last page has no cursor', async () => {
      const pages = await walk(4);
      expect(pages.map((p) => p.ids.length)).toEqual([4, 4, 4, 4, 4, 4, 1]);
      expect(pages.slice(0, -1).every((p) => p.nextCursor !== null)).toBe(true);
      expect(pages.at(-1)!.nextCursor).toBeNull();
      const all = pages.flatMap((p) => p.ids);
      expect(new Set(all).size).toBe(25);
      expect(all).toEqual(expected);
    });

    it('when the last page is exactly full, it has no cursor (no empty page after it)', async () => {
      const pages = await walk(5);
      expect(pages.map((p) => p.ids.length)).toEqual([5, 5, 5, 5, 5]);
      expect(pages.at(-1)!.nextCursor).toBeNull();
      expect(pages.flatMap((p) => p.ids)).toEqual(expected);
    });

    it('a cursor keeps microseconds, so rows differing below a millisecond are neither skipped nor repeated', async () => {
      // Cut right after p10 (7 h ago + 2 µs): p09 (+1 µs) is in the same millisecond and must come next.
      const first = await feed(t, u, { limit: expected.indexOf(t.skills.p10!) + 1 });
      expect(first.nextCursor?.updatedAt).toMatch(/\.\d{3}002Z$/);
      const rest = await feed(t, u, { cursor: decodeCursor(encodeCursor(first.nextCursor!)) });
      expect(rest.items[0]?.skillId).toBe(t.skills.p09);
      expect([...first.items, ...rest.items].map((i) => i.skillId)).toEqual(expected);
    });
  });

  describe('cursors', () => {
    const id = randomUUID();
    const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

    it('round-trip through encode and decode', () => {
      const cursor = { updatedAt: '2026-01-02T03:04:05.123456Z', id };
      const encoded = encodeCursor(cursor);
      expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeCursor(encoded)).toEqual(cursor);
    });

    it.each([
      ['empty', ''],
      ['not base64url', 'not a cursor!'],
      ['random text', 'bm90LWEtY3Vyc29y'],
      ['padding', `${b64(`2026-01-02T03:04:05.123456Z|${id}`)}=`],
      ['no id', b64('2026-01-02T03:04:05.123456Z')],
      ['id not a uuid', b64('2026-01-02T03:04:05.123456Z|not-a-uuid')],
      ['milliseconds only', b64(`2026-01-02T03:04:05.123Z|${id}`)],
      ['impossible date', b64(`2026-13-45T03:04:05.123456Z|${id}`)],
      ['extra field', b64(`2026-01-02T03:04:05.123456Z|${id}|x`)],
      ['sql in the timestamp', b64(`2026-01-02T03:04:05.123456Z' or '1'='1|${id}`)],
      ['too long', 'A'.repeat(200)],
    ])('rejects garbage: %s', (_, value) => {
      expect(decodeCursor(value)).toBeNull();
    });
  });
});
