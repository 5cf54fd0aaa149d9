// Benchmark data: a fresh database per scale, migrated with migrate(), then seeded set-based as the owner.
import { createHash } from 'node:crypto';
import postgres from 'postgres';
import { createDb } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';

export interface Scale {
  name: 'small' | 'full';
  tenants: number;
  usersPerTenant: number;
  skillsPerTenant: number;
  /** Every user viewed this many distinct skills of their tenant (the per-user cost stays the same across scales). */
  viewsPerUser: number;
}

/** Same shape per tenant and per user at both scales; only the number of tenants (so the table sizes) changes. */
export const scales: Record<Scale['name'], Scale> = {
  small: { name: 'small', tenants: 10, usersPerTenant: 100, skillsPerTenant: 1000, viewsPerUser: 200 },
  full: { name: 'full', tenants: 100, usersPerTenant: 100, skillsPerTenant: 1000, viewsPerUser: 200 },
};

/**
 * Deterministic, uniformly spread v4-shaped uuids from a kind and a number, computed identically here and
 * in SQL (`bench_seed.id`), so load generators know every id without reading the database.
 */
export function benchId(kind: string, n: number): string {
  const h = createHash('md5').update(`${kind}${n}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export const tenantId = (t: number) => benchId('t', t);
export const userId = (scale: Scale, t: number, u: number) => benchId('u', t * scale.usersPerTenant + u);
export const skillId = (scale: Scale, t: number, s: number) => benchId('s', t * scale.skillsPerTenant + s);

/** The k-th skill (0 ≤ k < viewsPerUser) user u viewed: distinct per k, different offsets per user. */
export function viewedSkill(scale: Scale, u: number, k: number): number {
  const stride = Math.floor(scale.skillsPerTenant / scale.viewsPerUser);
  return (u * 37 + k * stride) % scale.skillsPerTenant;
}

export interface SeedTimings {
  migrateMs: number;
  seedMs: number;
  analyzeMs: number;
  /** Milliseconds per seeding statement. */
  steps: Record<string, number>;
  rows: Record<string, number>;
}

/** Creates `name` (dropping a leftover of the same name first) from the admin connection. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  return databaseUrl(adminUrl, name);
}

/** The admin URL pointed at another database on the same server. */
export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** True when `name` exists and has been seeded (its user_skill_views has rows). */
export async function databaseExists(adminUrl: string, name: string): Promise<boolean> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await admin`select 1 from pg_database where datname = ${name}`;
    if (rows.length === 0) return false;
  } finally {
    await admin.end({ timeout: 5 });
  }
  const db = postgres(databaseUrl(adminUrl, name), { max: 1, onnotice: () => {} });
  try {
    const [row] = await db`select exists (select 1 from user_skill_views) as seeded`;
    return row?.seeded === true;
  } catch {
    return false;
  } finally {
    await db.end({ timeout: 5 });
  }
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/**
 * Migrates the database, then fills it with insert … select from generate_series, one statement per table,
 * as the owner (a superuser, so RLS does not apply). Foreign keys and the updated_at trigger are skipped
 * with session_replication_role = replica: the generated rows are consistent by construction.
 */
export async function seed(url: string, scale: Scale, appRole: string): Promise<SeedTimings> {
  let t0 = performance.now();
  const handle = createDb({ url, poolSize: 1 });
  try {
    await migrate(handle, { appRole: appRole });
  } finally {
    await handle.close();
  }
  const migrateMs = performance.now() - t0;

  t0 = performance.now();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const { tenants, usersPerTenant: U, skillsPerTenant: S, viewsPerUser: V } = scale;
  const stride = Math.floor(S / V);
  const steps: Record<string, number> = {};
  try {
    await sql.begin(async (tx) => {
      const step = async (name: string, statement: string) => {
        const t = performance.now();
        await tx.unsafe(statement);
        steps[name] = Math.round(performance.now() - t);
      };
      await tx.unsafe(`set local session_replication_role = replica`);
      await tx.unsafe(`set local maintenance_work_mem = '512MB'`);
      await tx.unsafe(`set local work_mem = '128MB'`);
      await tx.unsafe(`select setseed(0.42)`);
      await tx.unsafe(`create schema bench_seed`);
      // An id costs a few microseconds to compute, so each is computed once into a map joined by number.
      await tx.unsafe(`
        create function bench_seed.id(kind text, n bigint) returns uuid language sql immutable parallel safe as $$
          select overlay(overlay(md5(kind || n::text) placing '4' from 13) placing '8' from 17)::uuid
        $$`);
      await step('maps', `
        create table bench_seed.tenant as select t, bench_seed.id('t', t) as id from generate_series(0, ${tenants - 1}) t;
        create table bench_seed.usr as
          select n, n / ${U} as t, n % ${U} as u, bench_seed.id('u', n) as id from generate_series(0, ${tenants * U - 1}) n;
        create table bench_seed.skill as
          select n, n / ${S} as t, n % ${S} as s, bench_seed.id('s', n) as id, 1 + floor(random() * 5)::int as versions,
                 (case when r < 0.8 then 'published' when r < 0.9 then 'draft' else 'archived' end)::skill_status as status,
                 now() - random() * interval '90 days' as updated_at, random() < 0.1 as edited
          from (select n, random() as r from generate_series(0, ${tenants * S - 1}) n) x;
        create table bench_seed.version as
          select k.n, v, bench_seed.id('v', k.n * 8 + v) as id from bench_seed.skill k, generate_series(1, k.versions) v;
        create unique index on bench_seed.usr (n);
        create unique index on bench_seed.skill (n);
        create unique index on bench_seed.version (n, v);
        analyze bench_seed.tenant, bench_seed.usr, bench_seed.skill, bench_seed.version`);
      await step('tenants', `
        insert into tenants (id, name, slug, created_at)
        select id, 'Tenant ' || t, 'tenant-' || t, now() - interval '400 days' from bench_seed.tenant`);
      await step('users', `
        insert into users (id, tenant_id, email, name, created_at)
        select u.id, t.id, 'user' || u.u || '@tenant-' || u.t || '.test', 'User ' || u.u, now() - interval '300 days'
        from bench_seed.usr u join bench_seed.tenant t using (t)`);
      await step('skill_versions', `
        insert into skill_versions (id, tenant_id, skill_id, version, name, description, created_at)
        select v.id, t.id, k.id, v.v, 'Skill ' || k.s || case when v.v < k.versions then ' (v' || v.v || ')' else '' end,
               'What skill ' || k.s || ' covers, edition ' || v.v,
               k.updated_at - (k.versions - v.v) * interval '10 days' - interval '1 minute'
        from bench_seed.version v join bench_seed.skill k using (n) join bench_seed.tenant t on t.t = k.t`);
      await step('skills', `
        insert into skills (id, tenant_id, name, slug, description, category, status, published_version_id, created_at, updated_at)
        select k.id, t.id, 'Skill ' || k.s, 'skill-' || k.s,
               'What skill ' || k.s || ' covers, edition ' || k.versions || case when k.edited then ' (edited)' else '' end,
               (array['Engineering', 'Data', 'Design', 'Operations', 'Security'])[1 + k.s % 5], k.status,
               case when k.status <> 'draft' then v.id end, k.updated_at - k.versions * interval '10 days', k.updated_at
        from bench_seed.skill k join bench_seed.tenant t on t.t = k.t join bench_seed.version v on v.n = k.n and v.v = k.versions`);
      // What each skill's content revision (1: the seed writes no history) held, as the revision trigger would record it.
      await step('skill_revisions', `
        insert into skill_revisions (tenant_id, skill_id, revision, name, description, published_version, created_at)
        select s.tenant_id, s.id, 1, s.name, s.description, pv.version, s.updated_at
        from skills s left join skill_versions pv on pv.id = s.published_version_id`);
      // Rows in random order, as years of use would leave them, not clustered by user. The read state is that of
      // rows migrated from the clock rule (migration 0006): seen (seen_revision 1, the skill's revision) when the
      // skill did not change after the view and the viewed version is the current one, else unseen (revision 0,
      // which has no history: both fields read as changed); no snapshot, so feedback is compared by clock.

      await withoutIndexes(tx, 'user_skill_views', steps, () =>
        step('user_skill_views', `
          insert into user_skill_views (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count, seen_revision)
          select t.id, u.id, k.id, x.last_viewed_at - random() * interval '60 days', x.last_viewed_at, x.version,
                 1 + floor(random() * 10)::int,
                 case when k.updated_at <= x.last_viewed_at and (k.status = 'draft' or x.version = k.versions) then 1 else 0 end
          from (
            select n, (n % ${U} * 37 + i * ${stride}) % ${S} as s, now() - random() * interval '120 days' as last_viewed_at,
                   random() as r
            from generate_series(0, ${tenants * U - 1}) n, generate_series(0, ${V - 1}) i
          ) x0
          join bench_seed.usr u using (n)
          join bench_seed.tenant t on t.t = u.t
          join bench_seed.skill k on k.n = u.t * ${S} + x0.s
          cross join lateral (select x0.last_viewed_at,
            case when k.status <> 'draft' then greatest(1, k.versions - floor(x0.r * 3)::int) end as version) x
          order by random()`),
      );
      await withoutIndexes(tx, 'skill_feedback', steps, () =>
        step('skill_feedback', `
          insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment, created_at)
          select t.id, k.id, case when random() < 0.9 then u.id end,
                 (array['comment', 'rating', 'issue'])[1 + f % 3], 'Feedback ' || f, now() - random() * interval '120 days'
          from bench_seed.skill k
          join bench_seed.tenant t on t.t = k.t
          cross join generate_series(1, (k.n % 11)::int) f
          join bench_seed.usr u on u.n = k.t * ${U} + (k.n * 7 + f * 13) % ${U}
          order by random()`),
      );
      await tx.unsafe(`drop schema bench_seed cascade`);
    });
    const seedMs = performance.now() - t0;
    t0 = performance.now();
    await sql.unsafe(`vacuum (analyze) tenants, users, skills, skill_versions, skill_revisions, skill_feedback, user_skill_views`);
    const analyzeMs = performance.now() - t0;
    const counts = await sql.unsafe<{ table: string; n: string }[]>(`
      select 'tenants' as table, count(*) as n from tenants union all select 'users', count(*) from users
      union all select 'skills', count(*) from skills union all select 'skill_versions', count(*) from skill_versions
      union all select 'skill_revisions', count(*) from skill_revisions
      union all select 'skill_feedback', count(*) from skill_feedback union all select 'user_skill_views', count(*) from user_skill_views`);
    const rows = Object.fromEntries(counts.map((r) => [r.table, Number(r.n)]));
    return { migrateMs, seedMs, analyzeMs, steps, rows };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * Drops a table's indexes (and the constraints they back) around a bulk insert and rebuilds them after:
 * a sorted index build is many times faster than a few million random-order index insertions.
 */
async function withoutIndexes(
  tx: postgres.TransactionSql,
  table: string,
  steps: Record<string, number>,
  insert: () => Promise<void>,
): Promise<void> {
  const indexes = await tx.unsafe<{ name: string; constraint: string | null; def: string }[]>(
    `select i.relname as name, c.conname as constraint,
            coalesce(pg_get_constraintdef(c.oid), pg_get_indexdef(i.oid)) as def
     from pg_index x
     join pg_class i on i.oid = x.indexrelid
     left join pg_constraint c on c.conindid = x.indexrelid and c.conrelid = x.indrelid
     where x.indrelid = $1::regclass
     order by x.indisprimary desc, i.relname`,
    [table],
  );
  for (const ix of indexes) {
    await tx.unsafe(ix.constraint ? `alter table "${table}" drop constraint "${ix.constraint}"` : `drop index "${ix.name}"`);
  }
  await insert();
  const t = performance.now();
  for (const ix of indexes) {
    await tx.unsafe(ix.constraint ? `alter table "${table}" add constraint "${ix.constraint}" ${ix.def}` : ix.def);
  }
  steps[`${table} indexes`] = Math.round(performance.now() - t);
}
