// viewsForSkills: the caller's views of a list of skills, keyed by skill id, with an "updated since" flag.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { viewsForSkills } from '../db/queries/views.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, createTenant, daysAgo, insertView, skillSpec, type TenantFixture } from './support/factory.ts';

describe.each(engines)('viewsForSkills on $name', (engine) => {
  let h: DbHandle;
  let t: TenantFixture;
  let other: TenantFixture;
  let u: string;
  const seenAt: Record<string, Date> = {};
  beforeAll(async () => {
    h = await engine.open();
    t = await createTenant(h.db, {
      skills: [
        skillSpec('changed', { changedDaysAgo: 2 }),
        skillSpec('bumped', { versionCount: 2, changedDaysAgo: 3 }),
        skillSpec('seen', { versionCount: 2, changedDaysAgo: 5 }),
        skillSpec('exact', { changedDaysAgo: 4 }),
        skillSpec('unseen', { changedDaysAgo: 1 }),
        skillSpec('peer-only', { changedDaysAgo: 1 }),
      ],
    });
    u = t.userIds[0]!;
    const view = async (slug: string, at: Date, version: number | null, viewCount = 1, userId = u) => {
      seenAt[slug] = at;
      await insertView(h.db, t, { userId, skillId: t.skills[slug]!, lastViewedAt: at, lastViewedVersion: version, viewCount });
    };
    // Content changed (updated_at) after the view, same version.
    await view('changed', daysAgo(5), 1, 4);
    // Viewed after the change, but at an older version than the published one.
    await view('bumped', daysAgo(1), 1, 2);
    // Viewed after the change at the current version.
    await view('seen', daysAgo(1), 2, 7);
    // Viewed at exactly updated_at: not "after".
    const [exact] = await query<{ updatedAt: Date | string }>(h.db, sql`select updated_at as "updatedAt" from skills where id = ${t.skills.exact!}::uuid`);
    await view('exact', new Date(exact!.updatedAt), 1);
    await view('peer-only', daysAgo(5), 1, 1, t.userIds[1]!);
    other = await createTenant(h.db, { skills: [skillSpec('changed', { changedDaysAgo: 2 })] });
    await insertView(h.db, other, { userId: other.userIds[0]!, skillId: other.skills.changed!, lastViewedAt: daysAgo(5), lastViewedVersion: 1 });
  });
  afterAll(() => h.close());

  const lookup = (ids: string[], userId = u, tenant = t) => {
    const scope = { role: APP_ROLE, tenantId: tenant.tenantId, userId };
    return withTenantTransaction(h.db, scope, (tx) => viewsForSkills(tx, scope, ids));
  };

  it('returns only the skills the caller viewed, each with its view and hasUpdate', async () => {
    const s = t.skills;
    const views = await lookup([s.changed!, s.bumped!, s.seen!, s.exact!, s.unseen!, s['peer-only']!]);
    expect(views).toBeInstanceOf(Map);
    expect([...views.keys()].sort()).toEqual([s.changed!, s.bumped!, s.seen!, s.exact!].sort());
    expect(views.get(s.changed!)).toEqual({
      skillId: s.changed!,
      firstViewedAt: seenAt.changed,
      lastViewedAt: seenAt.changed,
      lastViewedVersion: 1,
      viewCount: 4,
      hasUpdate: true,
    });
    expect(views.get(s.bumped!)).toMatchObject({ lastViewedVersion: 1, viewCount: 2, hasUpdate: true });
    expect(views.get(s.seen!)).toMatchObject({ lastViewedVersion: 2, viewCount: 7, hasUpdate: false });
    expect(views.get(s.exact!)).toMatchObject({ lastViewedVersion: 1, hasUpdate: false });
    expect(views.get(s.exact!)?.lastViewedAt.getTime()).toBe(seenAt.exact!.getTime());
  });

  it('accepts duplicate ids and returns each skill once', async () => {
    const s = t.skills;
    const views = await lookup([s.changed!, s.changed!, s.seen!, s.changed!, s.seen!]);
    expect([...views.keys()].sort()).toEqual([s.changed!, s.seen!].sort());
  });

  it("leaves out another tenant's skills and another user's views", async () => {
    const views = await lookup([other.skills.changed!, t.skills['peer-only']!, t.skills.changed!]);
    expect([...views.keys()]).toEqual([t.skills.changed!]);
    // The peer does see their own view, and nothing of the caller's.
    const peer = await lookup([t.skills['peer-only']!, t.skills.changed!], t.userIds[1]!);
    expect([...peer.keys()]).toEqual([t.skills['peer-only']!]);
    expect(peer.get(t.skills['peer-only']!)?.hasUpdate).toBe(true);
  });

  it('handles 500 ids, mostly unknown, in one call', async () => {
    const s = t.skills;
    const ids = [...Array.from({ length: 496 }, () => randomUUID()), s.changed!, s.bumped!, s.seen!, other.skills.changed!];
    expect(ids).toHaveLength(500);
    const views = await lookup(ids);
    expect([...views.keys()].sort()).toEqual([s.changed!, s.bumped!, s.seen!].sort());
    expect([...views.values()].map((v) => v.hasUpdate).filter(Boolean)).toHaveLength(2);
  });

  it('returns an empty Map when none of the skills were viewed', async () => {
    expect((await lookup([t.skills.unseen!, randomUUID()])).size).toBe(0);
  });

  it('the primary key carries the view columns, so a user\'s views are read from the index alone', async () => {
    const [pk] = await query<{ key_columns: number; columns: number; definition: string }>(
      h.db,
      sql`select i.indnkeyatts as key_columns, i.indnatts as columns, pg_get_indexdef(i.indexrelid) as definition
          from pg_index i join pg_class c on c.oid = i.indexrelid
          where c.relname = 'user_skill_views_pk' and i.indisprimary`,
    );
    expect(pk).toMatchObject({ key_columns: 3, columns: 7 });
    expect(pk!.definition).toContain('(tenant_id, user_id, skill_id) INCLUDE (first_viewed_at, last_viewed_at, last_viewed_version, view_count)');
  });
});
