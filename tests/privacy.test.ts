// The user's control over their tracking data: pausing recordView (setTracking), the export (right of access) and the
// erasure (right to erasure) of exactly their own view rows, and the policies that keep a hand-written delete from
// reaching anyone else's rows, even one that claims to be the owner's retention job.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle, Executor, Transaction } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction, type TenantScope } from '../db/queries/tenant-transaction.ts';
import { engines } from './support/engines.ts';
import { callerFor, countViews, expectTrpcError } from './support/callers.ts';
import { APP_ROLE, countAll, createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { enterScope, fingerprint, rollingBack } from './support/rls.ts';

type Caller = ReturnType<typeof callerFor>;

/** View rows of one user, read as the owner (the superuser login bypasses RLS): skill id → view count. */
async function viewsOf(h: DbHandle, t: TenantFixture, userIndex: number): Promise<Record<string, number>> {
  const rows = await query<{ skillId: string; n: number }>(
    h.db,
    sql`select skill_id::text as "skillId", view_count::int as n from user_skill_views
        where tenant_id = ${t.tenantId}::uuid and user_id = ${t.userIds[userIndex]!}::uuid`,
  );
  return Object.fromEntries(rows.map((r) => [r.skillId, r.n]));
}

/** A tenant with `skillCount` published skills s0, s1, … */
const tenantWith = (h: DbHandle, skillCount: number) =>
  createTenant(h.db, { skills: Array.from({ length: skillCount }, (_, i) => skillSpec(`s${i}`)) });

/** Records a view of each skill through the procedure (real rows: revision and snapshot included). */
async function view(api: Caller, skillIds: string[]) {
  for (const skillId of skillIds) expect((await api.recordView({ skillId })).tracked).toBe(true);
}

/** Every page of exportMyViews with `limit`. */
async function exportAll(api: Caller, limit?: number) {
  const pages: Awaited<ReturnType<Caller['exportMyViews']>>[] = [];
  let cursor: string | null = null;
  do {
    const page = await api.exportMyViews({ cursor, ...(limit === undefined ? {} : { limit }) });
    pages.push(page);
    cursor = page.nextCursor;
    if (pages.length > 100) throw new Error('exportMyViews does not end');
  } while (cursor);
  return pages;
}

/**
 * What a hand-written statement in a request transaction (already scoped as user A0) can delete: every view row
 * (no WHERE), user A1's, and tenant B's. Returns whose rows each statement deleted.
 */
async function handDeletes(tx: Executor, a: TenantFixture, b: TenantFixture) {
  const deleted = async (where: ReturnType<typeof sql>) => {
    const rows = await query<{ tenantId: string; userId: string }>(
      tx,
      sql`delete from user_skill_views ${where} returning tenant_id::text as "tenantId", user_id::text as "userId"`,
    );
    const whose = (r: { tenantId: string; userId: string }) =>
      r.tenantId === b.tenantId ? 'B' : r.userId === a.userIds[0] ? 'A0' : r.userId === a.userIds[1] ? 'A1' : 'other';
    return rows.map(whose).sort();
  };
  return {
    peer: await deleted(sql`where user_id = ${a.userIds[1]!}::uuid`),
    tenantB: await deleted(sql`where tenant_id = ${b.tenantId}::uuid`),
    tenantBUser: await deleted(sql`where tenant_id = ${b.tenantId}::uuid and user_id = ${b.userIds[0]!}::uuid`),
    everything: await deleted(sql``),
  };
}

describe.each(engines)('privacy controls on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open();
  });
  afterAll(() => h.close());

  describe('setTracking', () => {
    it('off: recordView writes nothing and returns { tracked: false, view: null, previous: null }; on again: the count continues', async () => {
      const t = await tenantWith(h, 2);
      const other = await tenantWith(h, 1);
      const [s0, s1] = [t.skills.s0!, t.skills.s1!];
      const api = callerFor(h.db, t, 0);
      expect(await api.trackingPreference({})).toEqual({ enabled: true });
      const first = await api.recordView({ skillId: s0 });
      expect(first).toMatchObject({ tracked: true, previous: null, view: { skillId: s0, viewCount: 1 } });

      expect(await api.setTracking({ enabled: false })).toEqual({ enabled: false });
      expect(await api.trackingPreference({})).toEqual({ enabled: false });
      const before = { rows: await countViews(h.db, t.tenantId, other.tenantId), mine: await fingerprint(h.db, t.tenantId, t.userIds[0]!) };
      for (const skillId of [s0, s1, s0]) {
        expect(await api.recordView({ skillId })).toEqual({ tracked: false, view: null, previous: null });
      }
      // Nothing written: not the viewed skill's row (count, time, what was seen), not a row for the unviewed one.
      expect(await countViews(h.db, t.tenantId, other.tenantId)).toBe(before.rows);
      expect(await fingerprint(h.db, t.tenantId, t.userIds[0]!)).toEqual(before.mine);
      expect(await viewsOf(h, t, 0)).toEqual({ [s0]: 1 });
      // A skill that does not exist, or is another tenant's, is still NOT_FOUND, tracking or not.
      await expectTrpcError(api.recordView({ skillId: randomUUID() }), 'NOT_FOUND');
      await expectTrpcError(api.recordView({ skillId: other.skills.s0! }), 'NOT_FOUND');

      expect(await api.setTracking({ enabled: true })).toEqual({ enabled: true });
      expect(await api.trackingPreference({})).toEqual({ enabled: true });
      const resumed = await api.recordView({ skillId: s0 });
      expect(resumed).toMatchObject({ tracked: true, view: { skillId: s0, viewCount: 2 }, previous: first.view });
      expect(await viewsOf(h, t, 0)).toEqual({ [s0]: 2 });
    });

    it("is per user: one user's pause records nothing for them and does not stop another user's views", async () => {
      const t = await tenantWith(h, 1);
      const [ann, bob] = [callerFor(h.db, t, 0), callerFor(h.db, t, 1)];
      const s0 = t.skills.s0!;
      await ann.setTracking({ enabled: false });
      expect(await bob.trackingPreference({})).toEqual({ enabled: true });
      expect(await bob.recordView({ skillId: s0 })).toMatchObject({ tracked: true, view: { viewCount: 1 } });
      expect(await ann.recordView({ skillId: s0 })).toEqual({ tracked: false, view: null, previous: null });
      expect(await bob.recordView({ skillId: s0 })).toMatchObject({ tracked: true, view: { viewCount: 2 } });
      expect(await viewsOf(h, t, 0)).toEqual({});
      expect(await viewsOf(h, t, 1)).toEqual({ [s0]: 2 });
      // Setting it twice is idempotent; Bob turning his off does not turn Ann's on.
      expect(await ann.setTracking({ enabled: false })).toEqual({ enabled: false });
      await bob.setTracking({ enabled: false });
      expect(await ann.trackingPreference({})).toEqual({ enabled: false });
      const rows = await query<{ userId: string; enabled: boolean }>(
        h.db,
        sql`select user_id::text as "userId", tracking_enabled as enabled from user_tracking_preferences
            where tenant_id = ${t.tenantId}::uuid order by user_id`,
      );
      expect(rows).toEqual([...t.userIds].sort().map((userId) => ({ userId, enabled: false })));
    });

    it('rejects a bad input with BAD_REQUEST and changes nothing', async () => {
      const t = await tenantWith(h, 1);
      const api = callerFor(h.db, t, 0);
      for (const input of [{}, { enabled: 'false' }, { enabled: 0 }, { enabled: null }, { enabled: true, userId: t.userIds[1] }]) {
        await expectTrpcError(api.setTracking(input as never), 'BAD_REQUEST');
      }
      expect(await countAll(h.db, 'user_tracking_preferences', sql`where tenant_id = ${t.tenantId}::uuid`)).toBe(0);
    });
  });

  describe('exportMyViews', () => {
    let t: TenantFixture;
    let other: TenantFixture;
    let mine: string[];
    beforeAll(async () => {
      t = await tenantWith(h, 8);
      other = await tenantWith(h, 2);
      const all = Object.values(t.skills);
      mine = all.slice(0, 6);
      const api = callerFor(h.db, t, 0);
      await view(api, mine);
      await view(api, [mine[0]!]); // a second visit: the export shows the count
      await view(callerFor(h.db, t, 1), [...all.slice(4), mine[0]!]);
      await view(callerFor(h.db, other, 0), Object.values(other.skills));
    });

    it.each([1, 2, 3, 4, 5])('pages with limit %i through exactly the caller\'s rows by skill id: no gap, no repeat, no empty page', async (limit) => {
      const pages = await exportAll(callerFor(h.db, t, 0), limit);
      const items = pages.flatMap((p) => p.items);
      expect(items.map((v) => v.skillId)).toEqual([...mine].sort());
      expect(pages).toHaveLength(Math.ceil(mine.length / limit));
      for (const [i, page] of pages.entries()) {
        expect(page.items.length, `page ${i}`).toBe(i < pages.length - 1 ? limit : mine.length - limit * (pages.length - 1));
        expect(page.nextCursor === null, `page ${i}`).toBe(i === pages.length - 1);
      }
    });

    it('returns each row as a SkillView, nothing more, equal to what recordView last returned', async () => {
      const api = callerFor(h.db, t, 0);
      const [page] = await exportAll(api);
      expect(page!.items).toHaveLength(mine.length);
      for (const item of page!.items) {
        expect(Object.keys(item).sort()).toEqual(['firstViewedAt', 'lastViewedAt', 'lastViewedVersion', 'skillId', 'viewCount']);
        expect(item.firstViewedAt).toBeInstanceOf(Date);
        expect(item.lastViewedAt).toBeInstanceOf(Date);
        expect(item).toMatchObject({ lastViewedVersion: 1, viewCount: item.skillId === mine[0] ? 2 : 1 });
      }
      // The same data viewsForSkills gives (without hasUpdate).
      const byId = await api.viewsForSkills({ skillIds: mine });
      for (const item of page!.items) {
        const { hasUpdate: _, ...expected } = byId.get(item.skillId)!;
        expect(item).toEqual(expected);
      }
    });

    it('shows another user, and another tenant, only their own rows', async () => {
      const peer = (await exportAll(callerFor(h.db, t, 1), 2)).flatMap((p) => p.items.map((v) => v.skillId));
      expect(peer).toEqual([...Object.values(t.skills).slice(4), mine[0]!].sort());
      const foreign = (await exportAll(callerFor(h.db, other, 0), 1)).flatMap((p) => p.items.map((v) => v.skillId));
      expect(foreign).toEqual(Object.values(other.skills).sort());
      expect(await exportAll(callerFor(h.db, other, 1))).toEqual([{ items: [], nextCursor: null }]);
    });

    it('still exports while tracking is off', async () => {
      const u = await tenantWith(h, 2);
      const api = callerFor(h.db, u, 0);
      await view(api, [u.skills.s0!]);
      await api.setTracking({ enabled: false });
      const [page] = await exportAll(api);
      expect(page!.items.map((v) => v.skillId)).toEqual([u.skills.s0]);
    });

    it('rejects a garbage cursor and a limit outside 1..500 with BAD_REQUEST', async () => {
      const api = callerFor(h.db, t, 0);
      const notAUuid = Buffer.from('not-a-uuid', 'utf8').toString('base64url');
      for (const cursor of ['garbage', '!!!', notAUuid, 'x'.repeat(65), Buffer.from(randomUUID() + 'x').toString('base64url'), mine[0]!]) {
        await expectTrpcError(api.exportMyViews({ cursor }), 'BAD_REQUEST');
      }
      for (const limit of [0, -1, 501, 1.5]) await expectTrpcError(api.exportMyViews({ limit }), 'BAD_REQUEST');
      await expectTrpcError(api.exportMyViews({ extra: 1 } as never), 'BAD_REQUEST');
      // The bounds themselves are fine.
      expect((await api.exportMyViews({ limit: 500 })).items).toHaveLength(mine.length);
      expect((await api.exportMyViews({ limit: 1 })).items).toHaveLength(1);
    });
  });

  describe('forgetMyViews', () => {
    it("deletes exactly the caller's view rows, returns how many, and keeps their tracking preference; again: 0", async () => {
      const a = await tenantWith(h, 3);
      const b = await tenantWith(h, 3);
      const skillsA = Object.values(a.skills);
      const api = callerFor(h.db, a, 0);
      await view(api, skillsA);
      await view(callerFor(h.db, a, 1), skillsA.slice(0, 2));
      await view(callerFor(h.db, b, 0), Object.values(b.skills));
      await api.setTracking({ enabled: false });
      const before = { peer: await fingerprint(h.db, a.tenantId, a.userIds[1]!), b: await fingerprint(h.db, b.tenantId) };

      expect(await api.forgetMyViews({})).toEqual({ deleted: 3 });
      expect(await viewsOf(h, a, 0)).toEqual({});
      expect(await fingerprint(h.db, a.tenantId, a.userIds[1]!)).toEqual(before.peer);
      expect(await fingerprint(h.db, b.tenantId)).toEqual(before.b);
      expect(Object.keys(await viewsOf(h, a, 1))).toHaveLength(2);
      expect(await api.forgetMyViews({})).toEqual({ deleted: 0 });
      expect(await exportAll(api)).toEqual([{ items: [], nextCursor: null }]);
      // The preference is not a view row: it stays (the user asked not to be tracked; forgetting must not undo that).
      expect(await api.trackingPreference({})).toEqual({ enabled: false });
      expect(await countAll(h.db, 'user_tracking_preferences', sql`where user_id = ${a.userIds[0]!}::uuid`)).toBe(1);
      expect(await api.recordView({ skillId: skillsA[0]! })).toEqual({ tracked: false, view: null, previous: null });
      expect(await viewsOf(h, a, 0)).toEqual({});
    });

    it('rejects an input with BAD_REQUEST and deletes nothing', async () => {
      const t = await tenantWith(h, 1);
      const api = callerFor(h.db, t, 0);
      await view(api, [t.skills.s0!]);
      await expectTrpcError(api.forgetMyViews({ userId: t.userIds[1] } as never), 'BAD_REQUEST');
      expect(await viewsOf(h, t, 0)).toEqual({ [t.skills.s0!]: 1 });
    });
  });

  describe("the app role cannot delete anyone else's view rows by hand", () => {
    /** Tenant A (users 0 and 1) and tenant B (users 0 and 1), each user with views of both skills. */
    async function seed() {
      const a = await tenantWith(h, 2);
      const b = await tenantWith(h, 2);
      for (const t of [a, b]) for (const i of [0, 1]) await view(callerFor(h.db, t, i), Object.values(t.skills));
      return { a, b, scope: { role: APP_ROLE, tenantId: a.tenantId, userId: a.userIds[0]! } satisfies TenantScope };
    }

    it("in a request transaction: deletes with no WHERE, with user A1's id or with tenant B's id reach only the caller's own rows", async () => {
      const { a, b, scope } = await seed();
      const before = { peer: await fingerprint(h.db, a.tenantId, a.userIds[1]!), b: await fingerprint(h.db, b.tenantId) };
      const deleted = await withTenantTransaction(h.db, scope, (tx) => handDeletes(tx, a, b));
      expect(deleted).toEqual({ peer: [], tenantB: [], tenantBUser: [], everything: ['A0', 'A0'] });
      expect(await fingerprint(h.db, a.tenantId, a.userIds[1]!)).toEqual(before.peer);
      expect(await fingerprint(h.db, b.tenantId)).toEqual(before.b);
      expect(await viewsOf(h, a, 0)).toEqual({});
    });

    /**
     * As user A0 in a request transaction: `prepare`, then claim to be the retention job and try every hand-written
     * delete. The claim must be refused, A0 must see only its own 2 rows and delete only them, and nobody else's
     * rows may change.
     */
    async function expectRetentionClaimRefused(prepare: (tx: Transaction) => Promise<void>) {
      const { a, b, scope } = await seed();
      const before = { peer: await fingerprint(h.db, a.tenantId, a.userIds[1]!), b: await fingerprint(h.db, b.tenantId) };
      const result = await withTenantTransaction(h.db, scope, async (tx) => {
        await prepare(tx);
        await tx.execute(sql`select set_config('skillviews.maintenance', 'retention', true)`);
        const [claim] = await query<{ owner: boolean }>(tx, sql`select skillviews_owner_maintenance() as owner`);
        const visible = await query(tx, sql`select 1 from user_skill_views`);
        return { claim, visible: visible.length, deleted: await handDeletes(tx, a, b) };
      });
      expect(result).toEqual({
        claim: { owner: false },
        visible: 2,
        deleted: { peer: [], tenantB: [], tenantBUser: [], everything: ['A0', 'A0'] },
      });
      expect(await fingerprint(h.db, a.tenantId, a.userIds[1]!)).toEqual(before.peer);
      expect(await fingerprint(h.db, b.tenantId)).toEqual(before.b);
    }

    it("claiming to be the retention job (skillviews.maintenance = 'retention') changes nothing: the owner check stops it", async () => {
      await expectRetentionClaimRefused(async () => {});
    });

    it('a temporary table named pg_class claiming the caller owns user_skill_views changes nothing either', async () => {
      // Any role with TEMP (PUBLIC has it by default) may create pg_temp.pg_class; an unqualified pg_class in
      // skillviews_owner_maintenance() would read it (pg_temp is searched first unless listed) and let the app role
      // read and delete every tenant's views.
      await expectRetentionClaimRefused(async (tx) => {
        await tx.execute(sql`create temp table pg_class (oid oid, relowner oid) on commit drop`);
        await tx.execute(sql`insert into pg_temp.pg_class
          values ('public.user_skill_views'::regclass, (select oid from pg_catalog.pg_roles where rolname = current_user))`);
      });
    });

    it('the same deletes do reach other rows when a policy is broken (rolled back): the checks above are not vacuous', async () => {
      const { a, b, scope } = await seed();
      const before = { peer: await fingerprint(h.db, a.tenantId, a.userIds[1]!), b: await fingerprint(h.db, b.tenantId) };
      // The restrictive personal policy dropped: user A0 deletes user A1's rows (tenant B's stay: the tenant policy).
      const withoutPersonal = await rollingBack(h.db, async (tx) => {
        await tx.execute(sql`drop policy "a user sees only their own views" on user_skill_views`);
        await enterScope(tx, scope);
        return handDeletes(tx, a, b);
      });
      expect(withoutPersonal).toEqual({ peer: ['A1', 'A1'], tenantB: [], tenantBUser: [], everything: ['A0', 'A0'] });
      // The owner check removed from skillviews_owner_maintenance(): claiming 'retention' deletes every tenant's rows.
      const withoutOwnerCheck = await rollingBack(h.db, async (tx) => {
        await tx.execute(sql`create or replace function skillviews_owner_maintenance() returns boolean
          language sql stable set search_path = pg_catalog
          as $$ select coalesce(current_setting('skillviews.maintenance', true), '') = 'retention' $$`);
        await enterScope(tx, scope);
        await tx.execute(sql`select set_config('skillviews.maintenance', 'retention', true)`);
        return handDeletes(tx, a, b);
      });
      expect(withoutOwnerCheck.peer).toEqual(['A1', 'A1']);
      expect(withoutOwnerCheck.tenantB).toEqual(['B', 'B', 'B', 'B']);
      // Rolled back: everyone's rows are as they were, and the policies hold again.
      expect(await fingerprint(h.db, a.tenantId, a.userIds[1]!)).toEqual(before.peer);
      expect(await fingerprint(h.db, b.tenantId)).toEqual(before.b);
      const again = await withTenantTransaction(h.db, scope, async (tx) => {
        await tx.execute(sql`select set_config('skillviews.maintenance', 'retention', true)`);
        return handDeletes(tx, a, b);
      });
      expect(again).toEqual({ peer: [], tenantB: [], tenantBUser: [], everything: ['A0', 'A0'] });
    });

    it("nor anyone else's tracking preference", async () => {
      const { a, b, scope } = await seed();
      for (const t of [a, b]) for (const i of [0, 1]) await callerFor(h.db, t, i).setTracking({ enabled: false });
      const deleted = await withTenantTransaction(h.db, scope, async (tx) => {
        await tx.execute(sql`select set_config('skillviews.maintenance', 'retention', true)`);
        return query<{ userId: string }>(tx, sql`delete from user_tracking_preferences returning user_id::text as "userId"`);
      });
      expect(deleted).toEqual([{ userId: a.userIds[0] }]);
      const left = await query<{ userId: string }>(
        h.db,
        sql`select user_id::text as "userId" from user_tracking_preferences where tenant_id in (${a.tenantId}::uuid, ${b.tenantId}::uuid)`,
      );
      expect(left.map((r) => r.userId).sort()).toEqual([a.userIds[1]!, ...b.userIds].sort());
    });
  });
});
