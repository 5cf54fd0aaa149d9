// The isolation check catches broken policies: with a policy loosened (DDL rolled back afterwards) it reports the leak.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle, Transaction } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE } from './support/factory.ts';
import { expectedAppPrivileges, isolationReport, rollingBack, seedIsolationPair, tablePrivilegesOf, type IsolationPair } from './support/rls.ts';

interface Breakage {
  name: string;
  ddl: (tx: Transaction) => Promise<unknown>;
  /** A leak the check must report, matched against its `leaks` lines. */
  expectLeak: RegExp;
}

const breakages: Breakage[] = [
  {
    name: 'skills tenant policy replaced by USING (true) WITH CHECK (true)',
    ddl: async (tx) => {
      await tx.execute(sql`drop policy "rows are visible only inside their own tenant" on skills`);
      await tx.execute(sql`create policy leak on skills using (true) with check (true)`);
    },
    expectLeak: /^skills: sees \d+ row\(s\) of other tenants$/,
  },
  {
    name: 'restrictive personal policy on user_skill_views replaced by USING (true)',
    ddl: async (tx) => {
      await tx.execute(sql`drop policy "a user sees only their own views" on user_skill_views`);
      await tx.execute(sql`create policy leak on user_skill_views as restrictive using (true) with check (true)`);
    },
    expectLeak: /^user_skill_views: sees 1 row\(s\) of other users$/,
  },
  {
    name: 'restrictive personal policy on user_tracking_preferences dropped',
    ddl: (tx) => tx.execute(sql`drop policy "a user sees only their own preference" on user_tracking_preferences`),
    expectLeak: /^user_tracking_preferences: sees 1 row\(s\) of other users$/,
  },
  {
    name: 'skill_revisions tenant policy replaced by USING (true) WITH CHECK (true)',
    ddl: async (tx) => {
      await tx.execute(sql`drop policy "rows are visible only inside their own tenant" on skill_revisions`);
      await tx.execute(sql`create policy leak on skill_revisions using (true) with check (true)`);
    },
    expectLeak: /^skill_revisions: sees \d+ row\(s\) of other tenants$/,
  },
  {
    name: "skillviews_owner_maintenance() trusting the 'retention' setting without checking for the owner",
    ddl: (tx) =>
      tx.execute(sql`create or replace function skillviews_owner_maintenance() returns boolean
        language sql stable set search_path = pg_catalog
        as $$ select coalesce(current_setting('skillviews.maintenance', true), '') = 'retention' $$`),
    expectLeak: /^user_skill_views: sees \d+ row\(s\) of other users$/,
  },
  {
    name: 'row-level security disabled on users',
    ddl: (tx) => tx.execute(sql`alter table users disable row level security`),
    expectLeak: /^users: sees \d+ row\(s\) of other tenants$/,
  },
  {
    name: 'tenant policy on skill_feedback checks reads but not writes (WITH CHECK (true))',
    ddl: async (tx) => {
      await tx.execute(sql`drop policy "rows are visible only inside their own tenant" on skill_feedback`);
      await tx.execute(
        sql`create policy leak on skill_feedback using (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) with check (true)`,
      );
    },
    expectLeak: /^skill_feedback: insert \(tenant B\) wrote rows:1$/,
  },
];

async function policies(h: DbHandle) {
  return query<{ table: string; name: string; permissive: string; qual: string; check: string }>(
    h.db,
    sql`select tablename as "table", policyname as name, permissive, qual, with_check as "check"
        from pg_policies where schemaname = 'public' order by tablename, policyname`,
  );
}

describe.each(engines)('a broken policy is caught on $name', (engine) => {
  let h: DbHandle;
  let pair: IsolationPair;
  let policiesBefore: Awaited<ReturnType<typeof policies>>;
  beforeAll(async () => {
    h = await engine.open();
    pair = await seedIsolationPair(h.db);
    policiesBefore = await policies(h);
  });
  afterAll(() => h.close());

  it('the check passes with the migrated policies', async () => {
    expect((await isolationReport(h.db, pair)).leaks).toEqual([]);
  });

  it.each(breakages)('reports a leak when $name, and passes again after the rollback', async ({ ddl, expectLeak }) => {
    const broken = await isolationReport(h.db, pair, ddl);
    expect(broken.leaks.length).toBeGreaterThan(0);
    expect(broken.leaks.some((l) => expectLeak.test(l)), broken.leaks.join('\n')).toBe(true);

    const restored = await isolationReport(h.db, pair);
    expect(restored.leaks).toEqual([]);
    expect(await policies(h)).toEqual(policiesBefore);
  });

  it('without the personal policy on preferences, user A0 reads, takes over and deletes user A1\'s preference', async () => {
    const broken = await isolationReport(h.db, pair, breakages[2]!.ddl);
    expect(broken.reads.user_tracking_preferences.otherUsers).toBe(1);
    expect(broken.reads.user_tracking_preferences.tenantB).toBe(0);
    const peer = broken.writes.filter((w) => w.table === 'user_tracking_preferences' && w.target === 'user A1');
    expect(peer.map((w) => `${w.action}:${w.outcome}`)).toEqual(['insert:rows:1', 'update:rows:1', 'delete:rows:1']);
    expect(broken.changed).toContain('user_tracking_preferences of user A1');
  });

  it("without the owner check, the app role claiming 'retention' reads and deletes other users' and other tenants' views", async () => {
    const broken = await isolationReport(h.db, pair, breakages[4]!.ddl);
    expect(broken.reads.user_skill_views.otherUsers).toBe(1);
    expect(broken.reads.user_skill_views.tenantB).toBe(3);
    const deletes = broken.writes.filter((w) => w.table === 'user_skill_views' && w.action === 'delete');
    expect(deletes.map((w) => `${w.target}:${w.outcome}`)).toEqual(['user A1:rows:1', 'tenant B:rows:1']);
    expect(broken.changed).toEqual(expect.arrayContaining(['user_skill_views of tenant B', 'user_skill_views of user A1']));
  });

  it.each([
    ['DELETE on skill_revisions', sql`grant delete on skill_revisions to skillviews_app`, 'skill_revisions', 'DELETE'],
    ['TRUNCATE on user_skill_views', sql`grant truncate on user_skill_views to skillviews_app`, 'user_skill_views', 'TRUNCATE'],
    ['UPDATE on skill_revisions', sql`grant update on skill_revisions to skillviews_app`, 'skill_revisions', 'UPDATE'],
  ] as const)('the grant check reports %s granted to the app role, and passes again after the rollback', async (_, grant, table, privilege) => {
    const broken = await rollingBack(h.db, async (tx) => {
      await tx.execute(grant);
      return tablePrivilegesOf(tx, APP_ROLE);
    });
    expect(broken).not.toEqual(expectedAppPrivileges);
    expect(broken[table]).toContain(privilege);
    expect(await tablePrivilegesOf(h.db, APP_ROLE)).toEqual(expectedAppPrivileges);
  });

  it("USING (true) on skills lets tenant A read tenant B's skills and write them", async () => {
    const broken = await isolationReport(h.db, pair, breakages[0]!.ddl);
    expect(broken.reads.skills.tenantB).toBe(2);
    // The insert passes the broken skills policy, but the revision trigger's row for tenant B does not pass
    // skill_revisions' own tenant policy: the history table is a second line of defence for inserts.
    expect(broken.writes.find((w) => w.table === 'skills' && w.action === 'insert')?.outcome).toBe('rls-violation');
    expect(broken.writes.find((w) => w.table === 'skills' && w.action === 'update')?.outcome).toBe('rows:2');
    expect(broken.writes.find((w) => w.table === 'skills' && w.action === 'delete')?.outcome).toBe('rows:2');
    expect(broken.changed).toContain('skills of tenant B');
  });
});
