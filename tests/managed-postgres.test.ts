// Managed Postgres (DESIGN "Deployment" → "Managed Postgres"): the tables' owner is a plain login (no SUPERUSER,
// CREATEROLE, CREATEDB or BYPASSRLS) and a DBA created the application role beforehand. Migrations, `npm run
// db:seed` and the server all work as that owner, grant only to the configured role, keep RLS intact, and when
// the DBA's part is missing they fail, change nothing, and name the SQL to run. Postgres only.
import { randomBytes } from 'node:crypto';
import { TRPCClientError } from '@trpc/client';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createClient } from '../client/index.ts';
import { createDb, type DbHandle } from '../db/client.ts';
import { migrate, readMigrations } from '../db/migrate.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { rlsTables } from '../db/schema/index.ts';
import { demoIds } from '../db/seed.ts';
import { signToken } from '../server/auth.ts';
import { findRlsProblems } from '../server/startup-check.ts';
import { runProcess as run, type Proc } from './support/child-process.ts';
import { expectRlsViolation } from './support/pg-error.ts';
import { visibleRows } from './support/rls.ts';

const pgUrl = inject('pgUrl');

const AUTH_SECRET = randomBytes(32).toString('base64url');
const acmeSkills = [demoIds.tsFundamentals, demoIds.sqlWindowFunctions, demoIds.incidentResponse, demoIds.reactPerformance];
const globexSkills = [demoIds.doomsdayDevices, demoIds.hammockDrivenDevelopment, demoIds.nuclearSafety];
const ada = { tenantId: demoIds.acme, userId: demoIds.ada };
const grace = { tenantId: demoIds.acme, userId: demoIds.grace };
const hank = { tenantId: demoIds.globex, userId: demoIds.hank };

/** What the procedures need (DESIGN "Row-level security"), as `kind name privilege` ACL entries. */
const expectedAppGrants = [
  ...['skill_feedback', 'skill_revisions', 'skill_versions', 'skills', 'tenants', 'users'].map((t) => `table public.${t} SELECT`),
  ...['user_skill_views', 'user_tracking_preferences'].flatMap((t) =>
    ['DELETE', 'INSERT', 'SELECT', 'UPDATE'].map((p) => `table public.${t} ${p}`),
  ),
  'type public.skill_status USAGE',
].sort();

/**
 * Every privilege granted to `role` in the connected database (tables, columns, schemas, types, functions, the
 * database, default ACLs) as sorted `kind name privilege` entries, plus the roles it is a member of.
 */
async function grantsOf(db: postgres.Sql, role: string): Promise<string[]> {
  const rows = await db<{ entry: string }[]>`
    with r as (select oid from pg_roles where rolname = ${role}),
    acl as (
      select 'table' as kind, n.nspname || '.' || c.relname as name, a.privilege_type as privilege, a.grantee
        from pg_class c join pg_namespace n on n.oid = c.relnamespace, aclexplode(c.relacl) a
      union all
      select 'column', c.oid::regclass::text || '.' || att.attname, a.privilege_type, a.grantee
        from pg_attribute att join pg_class c on c.oid = att.attrelid, aclexplode(att.attacl) a
      union all
      select 'schema', n.nspname, a.privilege_type, a.grantee from pg_namespace n, aclexplode(n.nspacl) a
      union all
      select 'type', n.nspname || '.' || t.typname, a.privilege_type, a.grantee
        from pg_type t join pg_namespace n on n.oid = t.typnamespace, aclexplode(t.typacl) a
      union all
      select 'function', p.oid::regprocedure::text, a.privilege_type, a.grantee from pg_proc p, aclexplode(p.proacl) a
      union all
      select 'database', d.datname, a.privilege_type, a.grantee
        from pg_database d, aclexplode(d.datacl) a where d.datname = current_database()
      union all
      select 'default', d.defaclobjtype::text, a.privilege_type, a.grantee from pg_default_acl d, aclexplode(d.defaclacl) a
    )
    select kind || ' ' || name || ' ' || privilege as entry from acl where grantee in (select oid from r)
    union all
    select 'member of ' || m.roleid::regrole::text from pg_auth_members m where m.member in (select oid from r)
    order by 1`;
  return rows.map((r) => r.entry);
}

/** What a failed migration must leave untouched: relations, schemas, functions and types the owner has. */
async function ownedObjects(db: postgres.Sql, owner: string): Promise<string[]> {
  const rows = await db<{ entry: string }[]>`
    select 'relation ' || oid::regclass::text as entry from pg_class where relowner = ${owner}::regrole
    union all select 'schema ' || nspname from pg_namespace where nspowner = ${owner}::regrole and nspname <> 'public'
    union all select 'function ' || oid::regprocedure::text from pg_proc where proowner = ${owner}::regrole
    union all select 'type ' || typname from pg_type where typowner = ${owner}::regrole
    order by 1`;
  return rows.map((r) => r.entry);
}

/** The first error down the `cause` chain that carries a Postgres HINT (postgres.js puts it in `.hint`). */
function withHint(err: unknown): { message: string; hint: string } | null {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    const { hint, message, cause } = current as { hint?: unknown; message?: unknown; cause?: unknown };
    if (typeof hint === 'string') return { message: String(message ?? ''), hint };
    current = cause;
  }
  return null;
}

const waitFor = (r: Proc, pattern: RegExp, timeoutMs: number) => r.waitFor(pattern, timeoutMs);

async function trpcCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(TRPCClientError);
    return String((err as { data?: { code?: string } }).data?.code);
  }
  return 'OK';
}

describe.skipIf(!pgUrl)('managed Postgres: an owner without SUPERUSER or CREATEROLE and a DBA-made app role', () => {
  const id = `sv_mp_${randomBytes(5).toString('hex')}`;
  const owner = `${id}_owner`;
  const app = `${id}_app`;
  const other = `${id}_other`;
  const missing = `${id}_missing`;
  const database = `${id}_db`;
  /** Stays empty: the failure paths migrate it and must leave nothing behind. */
  const emptyDatabase = `${id}_empty`;

  const urlFor = (user: string, db: string) => {
    const url = new URL(pgUrl!);
    url.username = user;
    url.password = '';
    url.pathname = `/${db}`;
    return url.toString();
  };
  const ownerUrl = () => urlFor(owner, database);
  /** The child processes' environment: none of the test run's database settings, only ours. */
  const childEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => {
    const { DATABASE_URL: _u, DATABASE_DIRECT_URL: _d, AUTH_SECRET: _s, DB_APP_ROLE: _r, MIGRATE_ON_START: _m, ...rest } = process.env;
    return { ...rest, NODE_ENV: 'test', LOG_LEVEL: 'warn', DATABASE_URL: ownerUrl(), DB_APP_ROLE: app, ...extra };
  };

  let admin: postgres.Sql; // superuser, the run's database: creates and drops roles and databases
  let dba: postgres.Sql; // superuser in the owner's database: inspects it (bypasses RLS)
  let dbaEmpty: postgres.Sql; // superuser in the empty database
  let ownerDb: DbHandle;
  let ownerEmptyDb: DbHandle;
  let defaultRoleExisted = false;
  const children: Proc[] = [];

  beforeAll(async () => {
    admin = postgres(pgUrl!, { max: 1, onnotice: () => {} });
    // What a DBA of a managed service does: a plain owner login, the app role, membership, a database it owns.
    await admin.unsafe(`create role "${owner}" login nosuperuser nocreaterole nocreatedb nobypassrls`);
    await admin.unsafe(`create role "${app}" nologin nosuperuser nobypassrls`);
    await admin.unsafe(`grant "${app}" to "${owner}"`);
    await admin.unsafe(`create role "${other}" nologin nosuperuser nobypassrls`); // the owner is not a member
    await admin.unsafe(`create database "${database}" owner "${owner}"`);
    await admin.unsafe(`create database "${emptyDatabase}" owner "${owner}"`);
    const [defaultRole] = await admin<{ exists: boolean }[]>`select exists (select 1 from pg_roles where rolname = 'skillviews_app') as exists`;
    defaultRoleExisted = defaultRole!.exists;
    dba = postgres(urlFor(new URL(pgUrl!).username || 'postgres', database), { max: 1, onnotice: () => {} });
    dbaEmpty = postgres(urlFor(new URL(pgUrl!).username || 'postgres', emptyDatabase), { max: 1, onnotice: () => {} });
    ownerDb = createDb({ url: ownerUrl(), poolSize: 2 });
    ownerEmptyDb = createDb({ url: urlFor(owner, emptyDatabase), poolSize: 1 });
  });

  afterAll(async () => {
    for (const r of children) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGKILL');
        await r.exited;
      }
    }
    await ownerDb?.close();
    await ownerEmptyDb?.close();
    await dba?.end();
    await dbaEmpty?.end();
    if (!admin) return;
    // Leave the shared server as found: the databases, then every role this suite made (or wrongly got made).
    for (const db of [database, emptyDatabase]) await admin.unsafe(`drop database if exists "${db}" with (force)`);
    const roles = (await admin<{ rolname: string }[]>`select rolname from pg_roles where rolname like ${`${id}\\_%`}`).map((r) => r.rolname);
    if (roles.length > 0) {
      const list = roles.map((r) => `"${r}"`).join(', ');
      await admin.unsafe(`drop owned by ${list} cascade`);
      for (const role of roles) await admin.unsafe(`drop role "${role}"`);
    }
    await admin.end();
  });

  it('migrate as the owner grants the configured role exactly what it needs, nothing to skillviews_app, and runs again as a no-op', async () => {
    // The owner is what a managed service gives: not a superuser, no CREATEROLE, CREATEDB or BYPASSRLS.
    const [ownerRole] = await admin`select rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin from pg_roles where rolname = ${owner}`;
    expect(ownerRole).toEqual({ rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false, rolcanlogin: true });

    const first = await migrate(ownerDb, { appRole: app });
    expect(first.applied).toEqual(readMigrations().map((m) => m.tag));

    // The owner owns every table; the app role owns nothing and got exactly the procedures' privileges.
    const tables = await dba<{ relname: string; owner: string }[]>`
      select c.relname, c.relowner::regrole::text as owner from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind = 'r' order by 1`;
    expect(tables).toEqual([...rlsTables].sort().map((relname) => ({ relname, owner })));
    expect(await grantsOf(dba, app)).toEqual(expectedAppGrants);
    const tableGrants = await dba<{ grantee: string; table_name: string; privilege_type: string }[]>`
      select grantee, table_name, privilege_type from information_schema.role_table_grants
      where grantee in (${app}, 'skillviews_app') order by 1, 2, 3`;
    expect(tableGrants.map((g) => `table public.${g.table_name} ${g.privilege_type}`).sort()).toEqual(
      expectedAppGrants.filter((g) => g.startsWith('table ')),
    );
    expect(tableGrants.every((g) => g.grantee === app)).toBe(true);
    const [appRole] = await dba`select rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb from pg_roles where rolname = ${app}`;
    expect(appRole).toEqual({ rolsuper: false, rolbypassrls: false, rolcanlogin: false, rolcreaterole: false, rolcreatedb: false });

    // No other role name got anything: not the default skillviews_app (which other databases on this server
    // use), and it was not created either.
    expect(await grantsOf(dba, 'skillviews_app')).toEqual([]);
    const [defaultRole] = await dba<{ exists: boolean }[]>`select exists (select 1 from pg_roles where rolname = 'skillviews_app') as exists`;
    expect(defaultRole!.exists).toBe(defaultRoleExisted);
    if (defaultRoleExisted) {
      for (const table of rlsTables) {
        const [row] = await dba<{ has: boolean }[]>`
          select has_table_privilege('skillviews_app', ${`public.${table}`}, 'SELECT, INSERT, UPDATE, DELETE') as has`;
        expect(row!.has, table).toBe(false);
      }
    }

    const before = { app: await grantsOf(dba, app), owned: await ownedObjects(dba, owner) };
    const second = await migrate(ownerDb, { appRole: app });
    expect(second.applied).toEqual([]);
    expect({ app: await grantsOf(dba, app), owned: await ownedObjects(dba, owner) }).toEqual(before);
  });

  it('npm run db:seed as the owner exits 0 and writes the demo tenants, users, skills and views', async () => {
    const seed = run('npm', ['run', '--silent', 'db:seed'], childEnv({}));
    children.push(seed);
    const exit = await seed.exited;
    expect(exit, seed.output()).toEqual({ code: 0, signal: null });
    expect(seed.output()).toContain('seeded the demo tenants');

    const tenants = await dba<{ id: string }[]>`select id::text from tenants order by id`;
    expect(tenants.map((t) => t.id)).toEqual([demoIds.acme, demoIds.globex]);
    const [users] = await dba<{ n: number }[]>`select count(*)::int as n from users`;
    expect(users!.n).toBe(5);
    const skills = await dba<{ id: string }[]>`select id::text from skills where id = any(${[...acmeSkills, ...globexSkills]}::uuid[])`;
    expect(skills).toHaveLength(acmeSkills.length + globexSkills.length);
    const views = await dba<{ user_id: string; tenant_id: string; n: number }[]>`
      select user_id::text, tenant_id::text, count(*)::int as n from user_skill_views group by 1, 2 order by 1`;
    expect(views).toEqual([
      { user_id: demoIds.ada, tenant_id: demoIds.acme, n: 12 },
      { user_id: demoIds.hank, tenant_id: demoIds.globex, n: 2 },
    ]);
  }, 45_000);

  it('the server starts as the owner, serves /healthz, records and reads views over HTTP, and keeps tenants and users apart', async () => {
    const server = run(process.execPath, ['--import', 'tsx', 'server/main.ts'], childEnv({ AUTH_SECRET, PORT: '0', MIGRATE_ON_START: 'true' }));
    children.push(server);
    const [, url] = await waitFor(server, /skill-views is listening on (http:\/\/\S+) \(PostgreSQL\)/, 30_000);

    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });

    const clientFor = async (session: { tenantId: string; userId: string }) => {
      const token = await signToken(session, AUTH_SECRET);
      return createClient({ url: `${url}/trpc`, getToken: () => token });
    };
    const adaApi = await clientFor(ada);
    const hankApi = await clientFor(hank);
    const graceApi = await clientFor(grace);

    // Ada (Acme) opens React Performance for the first time, then her list page asks about every Acme skill.
    const { view, previous } = await adaApi.recordView.mutate({ skillId: demoIds.reactPerformance });
    expect(previous).toBeNull();
    expect(view).toMatchObject({ skillId: demoIds.reactPerformance, viewCount: 1, lastViewedVersion: 4 });
    const adaViews = await adaApi.viewsForSkills.query({ skillIds: [...acmeSkills, demoIds.doomsdayDevices] });
    expect([...adaViews.keys()].sort()).toEqual([...acmeSkills].sort());
    expect(adaViews.get(demoIds.tsFundamentals)).toMatchObject({ lastViewedVersion: 1, viewCount: 3, hasUpdate: true });
    expect(adaViews.get(demoIds.reactPerformance)).toMatchObject({ viewCount: 1, hasUpdate: false });

    // Hank (Globex) sees none of Acme's skills or views, and cannot write to them.
    expect((await hankApi.viewsForSkills.query({ skillIds: acmeSkills })).size).toBe(0);
    expect(await trpcCode(hankApi.recordView.mutate({ skillId: demoIds.reactPerformance }))).toBe('NOT_FOUND');
    expect(await trpcCode(hankApi.changeSummary.query({ skillId: demoIds.tsFundamentals }))).toBe('NOT_FOUND');
    const hankFeed = await hankApi.whatsNew.query({ limit: 50 });
    expect(hankFeed.items.length).toBeGreaterThan(0);
    for (const item of hankFeed.items) expect(globexSkills).toContain(item.skillId);
    expect([...(await hankApi.viewsForSkills.query({ skillIds: globexSkills })).keys()].sort()).toEqual(
      [demoIds.doomsdayDevices, demoIds.hammockDrivenDevelopment].sort(),
    );
    // Grace is in Ada's tenant, but Ada's views are Ada's.
    expect((await graceApi.viewsForSkills.query({ skillIds: acmeSkills })).size).toBe(0);

    const rows = await dba<{ tenant_id: string; user_id: string; view_count: number }[]>`
      select tenant_id::text, user_id::text, view_count from user_skill_views where skill_id = ${demoIds.reactPerformance}`;
    expect(rows).toEqual([{ tenant_id: demoIds.acme, user_id: demoIds.ada, view_count: 1 }]);

    server.child.kill('SIGTERM');
    expect(await server.exited, server.output()).toEqual({ code: 0, signal: null });
  }, 45_000);

  it('RLS holds on this database: the start-up check passes and a request transaction sees only its tenant and its own views', async () => {
    expect(await findRlsProblems(ownerDb.db, app)).toEqual([]);

    // Grace records a view as the app role, so Acme has two users' views.
    await withTenantTransaction(ownerDb.db, { role: app, ...grace }, (tx) =>
      tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id, last_viewed_version)
                     values (${grace.tenantId}, ${grace.userId}, ${demoIds.tsFundamentals}, 3)`),
    );
    const [all] = await dba<{ tenants: number; users: number }[]>`
      select count(distinct tenant_id)::int as tenants, count(distinct user_id)::int as users from user_skill_views`;
    expect(all).toEqual({ tenants: 2, users: 3 }); // the checks below would prove nothing otherwise
    // Each of them turns tracking off and on again as the app role (setTracking's upsert), so every user has a preference.
    for (const session of [ada, grace, hank]) {
      await withTenantTransaction(ownerDb.db, { role: app, ...session }, (tx) =>
        tx.execute(sql`insert into user_tracking_preferences (tenant_id, user_id, tracking_enabled)
                       values (${session.tenantId}, ${session.userId}, ${session !== grace})
                       on conflict (tenant_id, user_id) do update set tracking_enabled = excluded.tracking_enabled`),
      );
    }
    const [preferences] = await dba<{ tenants: number; users: number }[]>`
      select count(distinct tenant_id)::int as tenants, count(distinct user_id)::int as users from user_tracking_preferences`;
    expect(preferences).toEqual({ tenants: 2, users: 3 });

    for (const session of [ada, grace, hank]) {
      const { role, rows } = await withTenantTransaction(ownerDb.db, { role: app, ...session }, async (tx) => ({
        role: (await query<{ role: string }>(tx, sql`select current_user as role`))[0]?.role,
        rows: await visibleRows(tx),
      }));
      expect(role).toBe(app);
      for (const table of rlsTables) {
        // Globex has no feedback; every other table has rows in both tenants.
        if (table !== 'skill_feedback') expect(rows[table].length, `${table} for ${session.userId}`).toBeGreaterThan(0);
        expect(rows[table].filter((r) => r.tenantId !== session.tenantId), table).toEqual([]);
      }
      expect(rows.user_skill_views.filter((r) => r.userId !== session.userId)).toEqual([]);
      expect(rows.user_tracking_preferences).toEqual([{ tenantId: session.tenantId, userId: session.userId }]);
    }

    // Writes are held to the same scope: Ada cannot write a view as Grace, nor into Globex.
    await expectRlsViolation(
      withTenantTransaction(ownerDb.db, { role: app, ...ada }, (tx) =>
        tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id) values (${ada.tenantId}, ${grace.userId}, ${demoIds.reactPerformance})`),
      ),
    );
    await expectRlsViolation(
      withTenantTransaction(ownerDb.db, { role: app, ...ada }, (tx) =>
        tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id) values (${hank.tenantId}, ${ada.userId}, ${demoIds.nuclearSafety})`),
      ),
    );
    const updated = await withTenantTransaction(ownerDb.db, { role: app, ...ada }, (tx) =>
      query<{ user_id: string }>(tx, sql`update user_skill_views set view_count = view_count + 100 returning user_id::text`),
    );
    expect(new Set(updated.map((r) => r.user_id))).toEqual(new Set([ada.userId]));
    // Deletes too (the app role may delete personal rows): aimed at Grace or at Globex, even claiming to be the
    // owner's retention job, they delete nothing.
    const deleted = await withTenantTransaction(ownerDb.db, { role: app, ...ada }, async (tx) => {
      await tx.execute(sql`select set_config('skillviews.maintenance', 'retention', true)`);
      const result: number[] = [];
      for (const table of ['user_skill_views', 'user_tracking_preferences']) {
        const t = sql.identifier(table);
        result.push((await query(tx, sql`delete from ${t} where user_id = ${grace.userId}::uuid returning 1`)).length);
        result.push((await query(tx, sql`delete from ${t} where tenant_id = ${hank.tenantId}::uuid returning 1`)).length);
      }
      return result;
    });
    expect(deleted).toEqual([0, 0, 0, 0]);
    const [left] = await dba<{ views: number; preferences: number }[]>`
      select (select count(*)::int from user_skill_views where user_id <> ${ada.userId}) as views,
             (select count(*)::int from user_tracking_preferences where user_id <> ${ada.userId}) as preferences`;
    expect(left).toEqual({ views: 3, preferences: 2 });
  });

  it('an app role that does not exist: migrate rejects naming CREATE ROLE … and GRANT …, creates nothing, and grants nothing', async () => {
    const expectMissingRoleError = async (handle: DbHandle) => {
      const err = await migrate(handle, { appRole: missing }).then(() => null, (e: unknown) => e);
      expect(err, 'migrate should reject').not.toBeNull();
      const pg = withHint(err);
      expect(pg, `no HINT in ${String(err)}`).not.toBeNull();
      expect(pg!.message).toContain(`application role "${missing}" does not exist`);
      expect(pg!.message).toContain(owner);
      expect(pg!.hint).toContain(`CREATE ROLE ${missing} NOLOGIN NOSUPERUSER NOBYPASSRLS;`);
      expect(pg!.hint).toContain(`GRANT ${missing} TO ${owner};`);
    };

    // A database never migrated: the whole run rolls back, so not a table, schema or function is left.
    await expectMissingRoleError(ownerEmptyDb);
    expect(await ownedObjects(dbaEmpty, owner)).toEqual([]);
    const [schema] = await dbaEmpty<{ exists: boolean }[]>`select exists (select 1 from pg_namespace where nspname = 'drizzle') as exists`;
    expect(schema!.exists).toBe(false);

    // The migrated database: unchanged.
    const before = { app: await grantsOf(dba, app), owned: await ownedObjects(dba, owner) };
    await expectMissingRoleError(ownerDb);
    expect({ app: await grantsOf(dba, app), owned: await ownedObjects(dba, owner) }).toEqual(before);

    const [role] = await admin<{ n: number }[]>`select count(*)::int as n from pg_roles where rolname = ${missing}`;
    expect(role!.n).toBe(0);
  });

  it('an existing app role the owner is not a member of: migrate rejects with the GRANT hint and leaves no grant behind', async () => {
    const expectNotMemberError = async (handle: DbHandle) => {
      const err = await migrate(handle, { appRole: other }).then(() => null, (e: unknown) => e);
      expect(err, 'migrate should reject').not.toBeNull();
      const pg = withHint(err);
      expect(pg, `no HINT in ${String(err)}`).not.toBeNull();
      expect(pg!.message).toContain(`"${owner}" is not a member of application role "${other}"`);
      expect(pg!.hint).toContain(`GRANT ${other} TO ${owner};`);
      expect(pg!.hint).not.toMatch(/CREATE ROLE/i);
    };

    await expectNotMemberError(ownerEmptyDb);
    expect(await ownedObjects(dbaEmpty, owner)).toEqual([]);

    const before = { app: await grantsOf(dba, app), owned: await ownedObjects(dba, owner) };
    await expectNotMemberError(ownerDb);
    // The grants the function makes before it finds the membership missing are rolled back with it.
    expect(await grantsOf(dba, other)).toEqual([]);
    expect({ app: await grantsOf(dba, app), owned: await ownedObjects(dba, owner) }).toEqual(before);
    const [membership] = await admin<{ member: boolean }[]>`select pg_has_role(${owner}, ${other}, 'MEMBER') as member`;
    expect(membership!.member).toBe(false);
  });
});
