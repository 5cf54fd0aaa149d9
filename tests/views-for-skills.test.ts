// viewsForSkills: the caller's views of a list of skills, keyed by skill id, with a "changed since seen" flag.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { viewsForSkills } from '../db/queries/views.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, createTenant, daysAgo, editSkill, insertView, publishVersion, skillSpec, type TenantFixture } from './support/factory.ts';

describe.each(engines)('viewsForSkills on $name', (engine) => {
  let h: DbHandle;
  let t: TenantFixture;
  let other: TenantFixture;
  let u: string;
  const seenAt: Record<string, Date> = {};
  beforeAll(async () => {
    h = await engine.open();
    const old = (slug: string, versionCount = 1) => skillSpec(slug, { versionCount, changedDaysAgo: 30 });
    t = await createTenant(h.db, {
      skills: [old('changed'), old('bumped'), old('seen'), old('reverted'), old('unseen'), old('peer-only')],
    });
    u = t.userIds[0]!;
    const view = async (slug: string, at: Date, viewCount = 1, userId = u) => {
      seenAt[slug] = at;
      await insertView(h.db, t, { userId, skillId: t.skills[slug]!, lastViewedAt: at, viewCount });
    };
    // Description edited in place after the view, same version.
    await view('changed', daysAgo(5), 4);
    await editSkill(h.db, t, t.skills.changed!, { description: 'Edited after the view' });
    // A new version published after the view.
    await view('bumped', daysAgo(1), 2);
    await publishVersion(h.db, t, t.skills.bumped!);
    // A new version published before the view: seen (the view's clock is older than the change: clocks do not count).
    await publishVersion(h.db, t, t.skills.seen!, { name: 'seen v2' });
    await view('seen', daysAgo(10), 7);
    // Renamed after the view and renamed back: the revision moved, the content is what was seen.
    await view('reverted', daysAgo(3));
    await editSkill(h.db, t, t.skills.reverted!, { name: 'Temporary name' });
    await editSkill(h.db, t, t.skills.reverted!, { name: 'reverted v1' });
    await view('peer-only', daysAgo(5), 1, t.userIds[1]!);
    await publishVersion(h.db, t, t.skills['peer-only']!);
    other = await createTenant(h.db, { skills: [old('changed')] });
    await insertView(h.db, other, { userId: other.userIds[0]!, skillId: other.skills.changed!, lastViewedAt: daysAgo(5) });
    await publishVersion(h.db, other, other.skills.changed!);
  });
  afterAll(() => h.close());

  const lookup = (ids: string[], userId = u, tenant = t) => {
    const scope = { role: APP_ROLE, tenantId: tenant.tenantId, userId };
    return withTenantTransaction(h.db, scope, (tx) => viewsForSkills(tx, scope, ids));
  };

  it('returns only the skills the caller viewed, each with its view and hasUpdate', async () => {
    const s = t.skills;
    const views = await lookup([s.changed!, s.bumped!, s.seen!, s.reverted!, s.unseen!, s['peer-only']!]);
    expect(views).toBeInstanceOf(Map);
    expect([...views.keys()].sort()).toEqual([s.changed!, s.bumped!, s.seen!, s.reverted!].sort());
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
    expect(views.get(s.reverted!)).toMatchObject({ lastViewedVersion: 1, hasUpdate: false });
    expect(views.get(s.reverted!)?.lastViewedAt.getTime()).toBe(seenAt.reverted!.getTime());
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

  it('the primary key carries the view columns and what was seen (revision, key, version), so badges read a user\'s views from the index alone', async () => {
    const [pk] = await query<{ key_columns: number; columns: number; definition: string }>(
      h.db,
      sql`select i.indnkeyatts as key_columns, i.indnatts as columns, pg_get_indexdef(i.indexrelid) as definition
          from pg_index i join pg_class c on c.oid = i.indexrelid
          where c.relname = 'user_skill_views_pk' and i.indisprimary`,
    );
    expect(pk).toMatchObject({ key_columns: 3, columns: 10 });
    expect(pk!.definition).toContain(
      '(tenant_id, user_id, skill_id) INCLUDE (first_viewed_at, last_viewed_at, last_viewed_version, view_count, seen_revision, seen_key, seen_version)',
    );
  });
});
