// The application role and the tables as the catalogs describe them: least privilege, RLS enabled and forced everywhere.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { personalTables, rlsTables } from '../db/schema/index.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE } from './support/factory.ts';
import { catalogueTables, expectedAppPrivileges, rollingBack, seedIsolationPair, tablePrivilegesOf } from './support/rls.ts';

describe.each(engines)('the application role on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open();
  });
  afterAll(() => h.close());

  it('is not a superuser, cannot bypass RLS, cannot log in, and cannot create roles or databases', async () => {
    const rows = await query(
      h.db,
      sql`select rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication
          from pg_roles where rolname = ${APP_ROLE}`,
    );
    expect(rows).toEqual([
      { rolsuper: false, rolbypassrls: false, rolcanlogin: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false },
    ]);
  });

  it('does not inherit superuser or BYPASSRLS through any role it is a member of', async () => {
    const rows = await query<{ rolname: string }>(
      h.db,
      sql`select r.rolname from pg_roles r
          where pg_has_role(${APP_ROLE}, r.oid, 'MEMBER') and r.rolname <> ${APP_ROLE} and (r.rolsuper or r.rolbypassrls)`,
    );
    expect(rows).toEqual([]);
  });

  it('owns no relation, type or function in the database', async () => {
    const rows = await query<{ name: string }>(
      h.db,
      sql`select relname as name from pg_class where relowner = (select oid from pg_roles where rolname = ${APP_ROLE})
          union all select typname from pg_type where typowner = (select oid from pg_roles where rolname = ${APP_ROLE})
          union all select proname from pg_proc where proowner = (select oid from pg_roles where rolname = ${APP_ROLE})`,
    );
    expect(rows).toEqual([]);
  });

  it('every table of the module has row-level security enabled and forced', async () => {
    const rows = await query<{ table: string; enabled: boolean; forced: boolean }>(
      h.db,
      sql`select c.relname as "table", c.relrowsecurity as enabled, c.relforcerowsecurity as forced
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relname = any(${`{${rlsTables.join(',')}}`}::text[])
          order by c.relname`,
    );
    expect(rows).toEqual([...rlsTables].sort().map((table) => ({ table, enabled: true, forced: true })));
  });

  it('no table in the public schema is without forced row-level security', async () => {
    const rows = await query<{ table: string }>(
      h.db,
      sql`select c.relname as "table" from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind in ('r', 'p') and not (c.relrowsecurity and c.relforcerowsecurity)`,
    );
    expect(rows).toEqual([]);
  });

  it('every table has the tenant policy, the personal tables a restrictive personal policy, and user_skill_views the owner-only retention policies', async () => {
    const rows = await query<{ table: string; name: string; permissive: string; roles: string; cmd: string; qual: string; check: string | null }>(
      h.db,
      sql`select tablename as "table", policyname as name, permissive, roles::text as roles, cmd, qual, with_check as "check"
          from pg_policies where schemaname = 'public' order by tablename, permissive, policyname`,
    );
    expect(rows.map((r) => `${r.table} ${r.permissive} ${r.cmd} ${r.roles}`).sort()).toEqual(
      [
        ...rlsTables.map((t) => `${t} PERMISSIVE ALL {public}`),
        ...personalTables.map((t) => `${t} RESTRICTIVE ALL {public}`),
        'user_skill_views PERMISSIVE SELECT {public}',
        'user_skill_views PERMISSIVE DELETE {public}',
      ].sort(),
    );
    const maintenance = /^\( SELECT skillviews_owner_maintenance\(\) AS skillviews_owner_maintenance\)$/;
    for (const r of rows) {
      const label = `${r.table} ${r.permissive} ${r.cmd}`;
      if (r.cmd === 'SELECT' || r.cmd === 'DELETE') {
        // The retention policies: nothing but the owner-maintenance test, and they can never admit a write.
        expect(r.table, label).toBe('user_skill_views');
        expect(r.qual, label).toMatch(maintenance);
        expect(r.check, label).toBeNull();
        continue;
      }
      const setting = r.permissive === 'RESTRICTIVE' ? 'app.current_user_id' : 'app.current_tenant_id';
      const column = r.permissive === 'RESTRICTIVE' ? 'user_id' : r.table === 'tenants' ? 'id' : 'tenant_id';
      // Both the read side (USING) and the write side (WITH CHECK) compare the row to the setting.
      for (const expr of [r.qual, r.check]) {
        expect(expr, label).toContain(setting);
        expect(expr, label).toMatch(new RegExp(`^\\(*${column} = `));
      }
      // Only the personal policy on view rows also admits the owner's retention job (for reading and deleting,
      // never for writing: its WITH CHECK is the plain personal test).
      if (r.permissive === 'RESTRICTIVE' && r.table === 'user_skill_views') {
        expect(r.qual, label).toMatch(/^\(\(user_id = \(.*\)\) OR \( SELECT skillviews_owner_maintenance\(\) AS skillviews_owner_maintenance\)\)$/);
      } else {
        expect(r.qual, label).not.toContain('skillviews_owner_maintenance');
      }
      expect(r.check, label).not.toContain('skillviews_owner_maintenance');
      expect(r.check, label).not.toMatch(/ OR /i);
    }
  });

  it("the owner-retention policies admit nothing to the app role, even with skillviews.maintenance set to 'retention'", async () => {
    const { a, b } = await seedIsolationPair(h.db);
    const scope = { role: APP_ROLE, tenantId: a.tenantId, userId: a.userIds[0]! };
    const seen = await rollingBack(h.db, async (tx) => {
      const result: Record<string, unknown> = {};
      for (const [name, scoped] of [
        ['no tenant, no user', { ...scope, tenantId: '', userId: '' }],
        ['tenant A, no user', { ...scope, userId: '' }],
        ['user A0', scope],
      ] as const) {
        await tx.execute(
          sql`select set_config('role', ${scoped.role}, true), set_config('app.current_tenant_id', ${scoped.tenantId}, true),
                     set_config('app.current_user_id', ${scoped.userId}, true), set_config('skillviews.maintenance', 'retention', true)`,
        );
        const [state] = await query<{ maintenance: boolean; setting: string }>(
          tx,
          sql`select skillviews_owner_maintenance() as maintenance, current_setting('skillviews.maintenance') as setting`,
        );
        const visible = await query<{ userId: string }>(tx, sql`select user_id::text as "userId" from user_skill_views`);
        // Deletes aimed at every row but the caller's own.
        const deleted = await query(tx, sql`delete from user_skill_views where user_id <> ${a.userIds[0]!}::uuid returning 1`);
        result[name] = { ...state, visible: visible.map((v) => v.userId), deleted: deleted.length };
        await tx.execute(sql`select set_config('role', 'none', true)`);
      }
      return result;
    });
    expect(seen).toEqual({
      'no tenant, no user': { maintenance: false, setting: 'retention', visible: [], deleted: 0 },
      'tenant A, no user': { maintenance: false, setting: 'retention', visible: [], deleted: 0 },
      'user A0': { maintenance: false, setting: 'retention', visible: [a.userIds[0], a.userIds[0]], deleted: 0 },
    });
    // There was something to see and delete: other users' and other tenants' rows.
    const [others] = await query<{ n: number }>(
      h.db,
      sql`select count(*)::int as n from user_skill_views where tenant_id in (${a.tenantId}::uuid, ${b.tenantId}::uuid) and user_id <> ${a.userIds[0]!}::uuid`,
    );
    expect(others?.n).toBe(4);
    // And the same through the request transaction itself.
    const inRequest = await withTenantTransaction(h.db, scope, async (tx) => {
      await tx.execute(sql`select set_config('skillviews.maintenance', 'retention', true)`);
      return query<{ userId: string }>(tx, sql`select user_id::text as "userId" from user_skill_views where user_id <> ${a.userIds[0]!}::uuid`);
    });
    expect(inRequest).toEqual([]);
  });

  it('has SELECT and nothing else on every catalogue table, skill_revisions included', async () => {
    const held = await tablePrivilegesOf(h.db, APP_ROLE);
    expect(catalogueTables).toContain('skill_revisions');
    for (const table of catalogueTables) expect(held[table], table).toEqual(['SELECT']);
  });

  it('has SELECT, INSERT, UPDATE and DELETE on the personal tables (user_skill_views, user_tracking_preferences), but not TRUNCATE', async () => {
    const held = await tablePrivilegesOf(h.db, APP_ROLE);
    expect([...personalTables].sort()).toEqual(['user_skill_views', 'user_tracking_preferences']);
    for (const table of personalTables) expect(held[table], table).toEqual(['SELECT', 'INSERT', 'UPDATE', 'DELETE']);
  });

  it('holds exactly the documented privileges on every table, and TRUNCATE, REFERENCES and TRIGGER on none', async () => {
    const held = await tablePrivilegesOf(h.db, APP_ROLE);
    expect(held).toEqual(expectedAppPrivileges);
    for (const table of rlsTables) {
      for (const privilege of ['TRUNCATE', 'REFERENCES', 'TRIGGER']) expect(held[table], table).not.toContain(privilege);
    }
  });

  it('no column-level grant adds anything to the table grants', async () => {
    const rows = await query<{ grant: string }>(
      h.db,
      sql`select c.relname || '.' || a.attname || ' ' || x.privilege_type as "grant"
          from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace,
               aclexplode(a.attacl) x
          where n.nspname = 'public' and x.grantee = (select oid from pg_roles where rolname = ${APP_ROLE})`,
    );
    expect(rows).toEqual([]);
  });
});
