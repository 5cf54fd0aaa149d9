// The application role and the tables as the catalogs describe them: least privilege, RLS enabled and forced everywhere.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { rlsTables } from '../db/schema/index.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE } from './support/factory.ts';
import { catalogueTables } from './support/rls.ts';

const privileges = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as const;

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

  it('every one of the six tables has row-level security enabled and forced', async () => {
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

  it('every table has the tenant policy, and user_skill_views also a restrictive personal policy', async () => {
    const rows = await query<{ table: string; permissive: string; roles: string; cmd: string; qual: string; check: string }>(
      h.db,
      sql`select tablename as "table", permissive, roles::text as roles, cmd, qual, with_check as "check"
          from pg_policies where schemaname = 'public' order by tablename, permissive`,
    );
    expect(rows.map((r) => `${r.table} ${r.permissive} ${r.cmd} ${r.roles}`).sort()).toEqual(
      [...rlsTables.map((t) => `${t} PERMISSIVE ALL {public}`), 'user_skill_views RESTRICTIVE ALL {public}'].sort(),
    );
    for (const r of rows) {
      const setting = r.permissive === 'RESTRICTIVE' ? 'app.current_user_id' : 'app.current_tenant_id';
      const column = r.permissive === 'RESTRICTIVE' ? 'user_id' : r.table === 'tenants' ? 'id' : 'tenant_id';
      // Both the read side (USING) and the write side (WITH CHECK) compare the row to the setting.
      for (const expr of [r.qual, r.check]) {
        expect(expr, `${r.table} ${r.permissive}`).toContain(setting);
        expect(expr, `${r.table} ${r.permissive}`).toMatch(new RegExp(`^\\(?${column} = `));
      }
    }
  });

  it('has SELECT on every table and nothing else on the catalogue tables', async () => {
    for (const table of catalogueTables) {
      for (const privilege of privileges) {
        const [row] = await query<{ has: boolean }>(h.db, sql`select has_table_privilege(${APP_ROLE}, ${`public.${table}`}, ${privilege}) as has`);
        expect(row?.has, `${privilege} on ${table}`).toBe(privilege === 'SELECT');
      }
    }
  });

  it('has SELECT, INSERT and UPDATE on user_skill_views, but not DELETE or TRUNCATE', async () => {
    for (const privilege of privileges) {
      const [row] = await query<{ has: boolean }>(h.db, sql`select has_table_privilege(${APP_ROLE}, 'public.user_skill_views', ${privilege}) as has`);
      expect(row?.has, privilege).toBe(['SELECT', 'INSERT', 'UPDATE'].includes(privilege));
    }
  });
});
