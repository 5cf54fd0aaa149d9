// Start-up self-check: as the application role, prove row-level security cannot be bypassed and the pinned session settings hold, or refuse to start.
import { sql } from 'drizzle-orm';
import { PINNED_SETTINGS, pinnedSettings, type Database } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { rlsTables } from '../db/schema/index.ts';

export class UnsafeDatabaseError extends Error {
  override name = 'UnsafeDatabaseError';
  constructor(readonly problems: string[]) {
    super(`Refusing to start: row-level security could be bypassed or queries would misread data.\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

interface RoleRow {
  role: string;
  rolsuper: boolean;
  rolbypassrls: boolean;
  owned: string[] | string | null;
  /** Owners of the module's tables (other than the role itself) that the role is a member of. */
  owners: string[] | string | null;
}

interface SessionRow {
  datestyle: string;
  intervalstyle: string;
  timezone: string;
  search_path: string;
  /** Schema each of the module's table names resolves to under the pinned search_path. */
  resolved: { name: string; schema: string | null }[] | string;
}

/** What every transaction of the module pins, by the lower-case column names the check reads them into. */
const expectedSession = {
  datestyle: PINNED_SETTINGS.DateStyle,
  intervalstyle: PINNED_SETTINGS.IntervalStyle,
  timezone: PINNED_SETTINGS.TimeZone,
  search_path: PINNED_SETTINGS.search_path,
};

interface TableRow {
  relname: string;
  relrowsecurity: boolean;
  relforcerowsecurity: boolean;
}

/** Lists what is wrong (empty when safe). Switching to the role itself also proves the login may use it. */
export async function findRlsProblems(db: Database, appRole: string): Promise<string[]> {
  const problems: string[] = [];
  let role: RoleRow | undefined;
  let session: SessionRow | undefined;
  try {
    role = await db.transaction(async (tx) => {
      await tx.execute(sql`select pg_catalog.set_config('role', ${appRole}, true), ${pinnedSettings}`);
      session = (
        await query<SessionRow>(
          tx,
          sql`select current_setting('DateStyle') as datestyle, current_setting('IntervalStyle') as intervalstyle,
                     current_setting('TimeZone') as timezone, current_setting('search_path') as search_path,
                     (select json_agg(json_build_object('name', t.name, 'schema',
                        (select n.nspname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                          where c.oid = to_regclass(t.name))))
                      from unnest(${`{${rlsTables.join(',')}}`}::text[]) as t(name)) as resolved`,
        )
      )[0];
      const rows = await query<RoleRow>(
        tx,
        sql`select current_user as role, r.rolsuper, r.rolbypassrls,
                   (select array_agg(c.relname::text order by c.relname) from pg_catalog.pg_class c
                     where c.relowner = r.oid and c.relkind in ('r', 'p', 'v', 'm', 'f')) as owned,
                   (select array_agg(distinct o.rolname::text) from pg_catalog.pg_class c
                     join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                     join pg_catalog.pg_roles o on o.oid = c.relowner
                     where n.nspname = 'public' and c.relname = any(${`{${rlsTables.join(',')}}`}::text[])
                       and c.relowner <> r.oid and pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER')) as owners
            from pg_catalog.pg_roles r where r.rolname = current_user`,
      );
      return rows[0];
    });
  } catch (err) {
    return [`cannot switch to application role "${appRole}": ${(err as Error).message}`];
  }
  if (!role) return [`application role "${appRole}" not found`];
  if (role.rolsuper) problems.push(`application role "${appRole}" is a superuser (superusers bypass RLS)`);
  if (role.rolbypassrls) problems.push(`application role "${appRole}" has BYPASSRLS`);
  const owned = Array.isArray(role.owned) ? role.owned : role.owned ? [role.owned] : [];
  if (owned.length > 0) problems.push(`application role "${appRole}" owns tables (${owned.join(', ')}); owners can disable RLS`);
  // A member of the owner acts as the owner (or may SET ROLE to it): it could disable RLS, and it would pass the
  // owner-only retention policies on user_skill_views (skillviews_owner_maintenance()).
  const owners = Array.isArray(role.owners) ? role.owners : role.owners ? [role.owners] : [];
  if (owners.length > 0 && !role.rolsuper) {
    problems.push(`application role "${appRole}" is a member of ${owners.map((o) => `"${o}"`).join(', ')}, the owner of the tables; owners can disable RLS`);
  }

  problems.push(...sessionProblems(session));

  const tables = await query<TableRow>(
    db,
    sql`select c.relname, c.relrowsecurity, c.relforcerowsecurity from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind = 'r'`,
  );
  for (const name of rlsTables) {
    const table = tables.find((t) => t.relname === name);
    if (!table) problems.push(`table ${name} is missing (run the migrations)`);
    else if (!table.relrowsecurity) problems.push(`table ${name} does not have row-level security enabled`);
    else if (!table.relforcerowsecurity) problems.push(`table ${name} does not force row-level security`);
  }
  return problems;
}

/**
 * The pinned session settings must be what queries see, whatever the database, role or pooler default:
 * ISO dates in UTC, and every table name resolving to the public schema (not a shadowing schema).
 */
function sessionProblems(session: SessionRow | undefined): string[] {
  if (!session) return ['could not read the session settings as the application role'];
  const problems: string[] = [];
  for (const [name, expected] of Object.entries(expectedSession)) {
    const actual = session[name as keyof typeof expectedSession];
    if (actual !== expected) problems.push(`session setting ${name} is "${actual}" inside a request transaction, expected "${expected}"`);
  }
  const resolved = typeof session.resolved === 'string' ? (JSON.parse(session.resolved) as SessionRow['resolved']) : session.resolved;
  for (const { name, schema } of Array.isArray(resolved) ? resolved : []) {
    if (schema !== 'public') problems.push(`table name ${name} resolves to schema ${schema ?? '(none)'}, not public`);
  }
  return problems;
}

export async function assertRlsEnforced(db: Database, appRole: string): Promise<void> {
  const problems = await findRlsProblems(db, appRole);
  if (problems.length > 0) throw new UnsafeDatabaseError(problems);
}
