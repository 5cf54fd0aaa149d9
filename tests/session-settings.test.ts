// Pinned session settings (DESIGN "Deployment"): a database configured with DateStyle 'SQL, DMY', another
// TimeZone and IntervalStyle, and a schema that shadows ours first in its search_path gives the same answers
// as a plain database, through server-side callers and over HTTP. Postgres only (PGlite has no ALTER DATABASE).
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { errorCode, type RouterInputs, type RouterOutputs } from '../client/index.ts';
import { createDb, type Database, type DbHandle, type Transaction } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { skillFeedback, skills, skillVersions, tenants, userSkillViews, users } from '../db/schema/index.ts';
import { asOwnerInTenant } from '../db/seed.ts';
import { findRlsProblems } from '../server/startup-check.ts';
import { callerFor } from './support/callers.ts';
import type { TestEngine } from './support/engines.ts';
import { APP_ROLE, type TenantFixture } from './support/factory.ts';
import { startTestServer, type TestServer } from './support/server.ts';

const pgUrl = inject('pgUrl');

// ---------------------------------------------------------------------------------------------------------
// Fixed data. Every id is fixed; every timestamp is fixed for the run (relative to T0, since the feed has a
// window ending at now()), so both databases hold exactly the same rows.

const DAY = 24 * 60 * 60 * 1000;
const RUN_START = Date.now();
/** A whole second a minute before the run: every seeded timestamp is days before it. */
const T0 = Math.floor(RUN_START / 1000) * 1000 - 60_000;
const ago = (days: number, ms = 0) => new Date(T0 - days * DAY + ms);

/**
 * 20:00:00.250 UTC on the latest day not after `notLaterThan` whose day of month is 1–12 and differs from its
 * month: as 'SQL, DMY' text it reads differently as MDY, and in Asia/Kathmandu (+05:45) it is the next day.
 */
function ambiguousInstant(notLaterThan: number): Date {
  const d = new Date(notLaterThan);
  d.setUTCHours(20, 0, 0, 250);
  if (d.getTime() > notLaterThan) d.setUTCDate(d.getUTCDate() - 1);
  while (d.getUTCDate() > 12 || d.getUTCDate() === d.getUTCMonth() + 1) d.setUTCDate(d.getUTCDate() - 1);
  return d;
}

const uid = (group: number, n: number) => `5e55a000-0000-4000-${(0x8000 + group).toString(16)}-${n.toString(16).padStart(12, '0')}`;

const TENANT = uid(0, 1);
const FOREIGN_TENANT = uid(0, 2);
/** Three viewers with identical history (one per test that reads or writes views), and a feedback author. */
const U = { caller: uid(1, 1), http: uid(1, 2), reader: uid(1, 3), author: uid(1, 4) } as const;
const FOREIGN_USER = uid(1, 9);
const FOREIGN_SKILL = uid(2, 99);

interface SeedSkill {
  id: string;
  slug: string;
  status: 'draft' | 'published';
  versions: { name: string; description: string; at: Date }[];
  published: number | null;
  /** Current description when edited in place. */
  description?: string;
  /** updated_at: a millisecond instant plus 0–999 extra microseconds. */
  updatedAt: Date;
  micros?: number;
  /** Each viewer's view row. */
  view?: { first: Date; last: Date; version: number | null; count: number };
  feedback?: { by: string | null; at: Date }[];
}

const ROUNDTRIP_UPDATED = ambiguousInstant(T0 - 2 * DAY);
const OLD_VIEWED = ambiguousInstant(T0 - 45 * DAY);
const TIE = ago(7, 123);

const v = (name: string, description: string, at: Date) => ({ name, description, at });
const SKILLS = {
  // v3 published 2 days ago; seen at v2 (whose description differs); feedback by others since.
  bump: {
    id: uid(2, 1), slug: 'bump', status: 'published', published: 3, updatedAt: ago(2),
    versions: [v('Bump', 'First', ago(40)), v('Bump', 'Second', ago(20)), v('Bump', 'Third', ago(2))],
    view: { first: ago(30), last: ago(10), version: 2, count: 3 },
    feedback: [{ by: U.author, at: ago(5) }, { by: null, at: ago(3) }, { by: U.author, at: ago(15) }],
  },
  // Description edited in place 3 days ago (no new version); seen 5 days ago.
  edit: {
    id: uid(2, 2), slug: 'edit', status: 'published', published: 1, updatedAt: ago(3), description: 'Edited in place',
    versions: [v('Edit', 'Original', ago(25))],
    view: { first: ago(6), last: ago(5), version: 1, count: 2 },
    feedback: [{ by: U.author, at: ago(4) }, { by: U.author, at: ago(1) }, { by: U.author, at: ago(6) }],
  },
  // Seen yesterday at the current version: nothing new.
  seen: {
    id: uid(2, 3), slug: 'seen', status: 'published', published: 1, updatedAt: ago(12),
    versions: [v('Seen', 'Unchanged', ago(12))],
    view: { first: ago(1), last: ago(1), version: 1, count: 1 },
  },
  // Two skills changed at the same microsecond (feed ties broken by id), and one a microsecond later.
  tieA: {
    id: uid(2, 4), slug: 'tie-a', status: 'published', published: 2, updatedAt: TIE, micros: 456,
    versions: [v('Tie A', 'Tie', ago(20)), v('Tie A', 'Tie', TIE)],
    view: { first: ago(8), last: ago(8), version: 1, count: 1 },
  },
  tieB: {
    id: uid(2, 5), slug: 'tie-b', status: 'published', published: 2, updatedAt: TIE, micros: 456,
    versions: [v('Tie B', 'Tie', ago(20)), v('Tie B', 'Tie', TIE)],
    view: { first: ago(8), last: ago(8), version: 1, count: 1 },
  },
  micro: {
    id: uid(2, 6), slug: 'micro', status: 'published', published: 2, updatedAt: TIE, micros: 457,
    versions: [v('Micro', 'Tie', ago(20)), v('Micro', 'Tie', TIE)],
    view: { first: ago(8), last: ago(8), version: 1, count: 1 },
  },
  // Changed at an instant whose text is ambiguous under DMY and falls on another day in Asia/Kathmandu.
  roundtrip: {
    id: uid(2, 7), slug: 'roundtrip', status: 'published', published: 2, updatedAt: ROUNDTRIP_UPDATED,
    versions: [v('Roundtrip', 'Dates', ago(25)), v('Roundtrip', 'Dates', ROUNDTRIP_UPDATED)],
    view: { first: ago(24), last: ago(24), version: 1, count: 1 },
  },
  // Changed 40 days ago (outside the default 30-day window), last seen at an ambiguous instant before that.
  old: {
    id: uid(2, 8), slug: 'old', status: 'published', published: 2, updatedAt: ago(40),
    versions: [v('Old', 'Aged', ago(60)), v('Old', 'Aged', ago(40))],
    view: { first: OLD_VIEWED, last: OLD_VIEWED, version: 1, count: 1 },
  },
  // A draft edited since it was seen: hasUpdate, but never in the feed.
  draft: {
    id: uid(2, 9), slug: 'draft', status: 'draft', published: null, updatedAt: ago(2), description: 'Draft, edited',
    versions: [v('Draft', 'Draft', ago(10))],
    view: { first: ago(5), last: ago(5), version: null, count: 1 },
  },
  // Published, never viewed.
  never: {
    id: uid(2, 10), slug: 'never', status: 'published', published: 1, updatedAt: ago(3),
    versions: [v('Never', 'Unseen', ago(3))],
  },
} satisfies Record<string, SeedSkill>;
type SkillKey = keyof typeof SKILLS;
const S = Object.fromEntries(Object.entries(SKILLS).map(([k, s]) => [k, s.id])) as Record<SkillKey, string>;
const ALL_SKILL_IDS = Object.values(S);
const VIEWED: SkillKey[] = (Object.keys(SKILLS) as SkillKey[]).filter((k) => 'view' in SKILLS[k]);

/** updated_at as exact SQL text (microseconds, UTC). */
const updatedAtText = (s: SeedSkill) => `${s.updatedAt.toISOString().slice(0, 23)}${String(s.micros ?? 0).padStart(3, '0')}Z`;
const updatedAtMicros = (s: SeedSkill) => BigInt(s.updatedAt.getTime()) * 1000n + BigInt(s.micros ?? 0);

/** The feed the viewers should get: published, changed since their view, within `windowDays`; newest first, ties by id. */
function expectedFeed(windowDays: number): SkillKey[] {
  return (['bump', 'edit', 'tieA', 'tieB', 'micro', 'roundtrip', 'old'] as const)
    .filter((k) => SKILLS[k].updatedAt.getTime() >= T0 - windowDays * DAY)
    .sort((a, b) => {
      const d = updatedAtMicros(SKILLS[b]) - updatedAtMicros(SKILLS[a]);
      return d !== 0n ? (d > 0n ? 1 : -1) : SKILLS[b].id.localeCompare(SKILLS[a].id);
    });
}

async function seed(db: Database): Promise<void> {
  // Three transactions, so what each viewer saw is real history: (1) the catalogue as the viewers saw it and the
  // feedback before their view, (2) the view rows, recording the content revision and snapshot they saw, (3) the
  // changes since: new versions published, descriptions edited, feedback after the view. The test login is a
  // superuser, so view rows of several users go in one transaction.
  const all = Object.values(SKILLS) as SeedSkill[];
  const versionId = (index: number, n: number) => uid(3, index * 10 + n);
  const seenAt = (s: SeedSkill) => s.view?.last.getTime() ?? Infinity;
  let feedbackNo = 0;
  const insertFeedback = async (tx: Transaction, s: SeedSkill, before: boolean) => {
    for (const f of s.feedback ?? []) {
      if ((f.at.getTime() < seenAt(s)) !== before) continue;
      await tx.insert(skillFeedback).values({
        id: uid(4, ++feedbackNo), tenantId: TENANT, skillId: s.id, userId: f.by, feedbackType: 'comment', comment: `feedback ${feedbackNo}`, createdAt: f.at,
      });
    }
  };
  await asOwnerInTenant(db, TENANT, async (tx) => {
    await tx.insert(tenants).values({ id: TENANT, name: 'Settings Co', slug: 'settings-co', createdAt: ago(400) });
    await tx.insert(users).values(
      Object.entries(U).map(([name, id]) => ({ id, tenantId: TENANT, email: `${name}@settings.test`, name, createdAt: ago(300) })),
    );
    for (const [index, s] of all.entries()) {
      // A viewed skill starts as its viewers saw it: the snapshot of the version they saw, published.
      const seenNo = s.view ? (s.view.version ?? s.published ?? s.versions.length) : (s.published ?? s.versions.length);
      const shown = s.versions[seenNo - 1]!;
      await tx.insert(skills).values({
        id: s.id,
        tenantId: TENANT,
        name: shown.name,
        slug: s.slug,
        description: s.view ? shown.description : (s.description ?? shown.description),
        category: 'Settings',
        status: s.status,
        createdAt: s.versions[0]!.at,
        updatedAt: new Date(0), // replaced in (3)
      });
      await tx.insert(skillVersions).values(
        s.versions.map((ver, i) => ({ id: versionId(index, i + 1), tenantId: TENANT, skillId: s.id, version: i + 1, ...ver, createdAt: ver.at })),
      );
      const seenPublished = s.view ? s.view.version : s.published;
      await tx.execute(
        sql`update skills set published_version_id = ${seenPublished === null ? null : versionId(index, seenPublished)}::uuid where id = ${s.id}::uuid`,
      );
      await insertFeedback(tx, s, true);
    }
  });
  await asOwnerInTenant(db, TENANT, async (tx) => {
    for (const s of all) {
      if (!s.view) continue;
      const view = s.view;
      for (const userId of [U.caller, U.http, U.reader]) {
        await tx.execute(sql`insert into user_skill_views
            (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count, seen_revision, seen_feedback)
          select ${TENANT}::uuid, ${userId}::uuid, s.id, ${view.first.toISOString()}::timestamptz, ${view.last.toISOString()}::timestamptz,
                 ${view.version}::int, ${view.count}::int, s.content_revision, s.feedback_seq
          from skills s where s.id = ${s.id}::uuid`);
      }
    }
  });
  await asOwnerInTenant(db, TENANT, async (tx) => {
    for (const [index, s] of all.entries()) {
      const shown = s.versions[(s.published ?? s.versions.length) - 1]!;
      // An explicit updated_at (distinct from the placeholder) is kept by the trigger.
      await tx.execute(
        sql`update skills set published_version_id = ${s.published === null ? null : versionId(index, s.published)}::uuid,
                              name = ${shown.name}, description = ${s.description ?? shown.description},
                              updated_at = ${updatedAtText(s)}::timestamptz
            where id = ${s.id}::uuid`,
      );
      await insertFeedback(tx, s, false);
    }
  });
  await asOwnerInTenant(db, FOREIGN_TENANT, async (tx) => {
    await tx.insert(tenants).values({ id: FOREIGN_TENANT, name: 'Elsewhere', slug: 'elsewhere', createdAt: ago(400) });
    await tx.insert(users).values({ id: FOREIGN_USER, tenantId: FOREIGN_TENANT, email: 'x@elsewhere.test', name: 'X', createdAt: ago(300) });
    await tx.insert(skills).values({
      id: FOREIGN_SKILL, tenantId: FOREIGN_TENANT, name: 'Foreign', slug: 'foreign', description: 'Not yours', category: 'Settings',
      status: 'published', createdAt: ago(50), updatedAt: ago(50),
    });
  });
}

const fixture: TenantFixture = { tenantId: TENANT, userIds: [U.caller, U.http, U.reader, U.author], skills: S };

// ---------------------------------------------------------------------------------------------------------
// The hostile database: settings that break text timestamps, and a schema `shadow`, first in search_path
// (before pg_catalog too, so functions can be shadowed), holding tables named like ours with poisoned rows
// under our fixed ids, and functions that would be picked up instead of the real ones.

const HOSTILE_SETTINGS = [
  `datestyle = 'SQL, DMY'`,
  `timezone = 'Asia/Kathmandu'`,
  `intervalstyle = 'sql_standard'`,
  // Without pg_catalog listed, Postgres searches it first and no function could be shadowed.
  `search_path = shadow, pg_catalog, public`,
];
const SHADOW_TABLES = [
  'tenants', 'users', 'skills', 'skill_versions', 'skill_feedback', 'user_skill_views', 'skill_revisions', 'user_tracking_preferences',
] as const;
const SHADOW_NOW = '2001-02-03 04:05:06+00';

async function createShadow(c: postgres.Sql): Promise<void> {
  const skillIds = ALL_SKILL_IDS;
  const userIds = Object.values(U);
  await c.unsafe(`
    create schema shadow;
    create table shadow.tenants (id uuid, name text, slug text, created_at timestamptz, junk text default 'shadow');
    create table shadow.users (id uuid, tenant_id uuid, email text, name text, created_at timestamptz, junk text default 'shadow');
    create table shadow.skills (id uuid, tenant_id uuid, name text, slug text, description text, category text, status text,
      published_version_id uuid, created_at timestamptz, updated_at timestamptz, junk text default 'shadow');
    create table shadow.skill_versions (id uuid, tenant_id uuid, skill_id uuid, version int, name text, description text,
      created_at timestamptz, junk text default 'shadow');
    create table shadow.skill_feedback (id uuid, tenant_id uuid, skill_id uuid, user_id uuid, feedback_type text, comment text,
      created_at timestamptz, junk text default 'shadow');
    create table shadow.user_skill_views (tenant_id uuid, user_id uuid, skill_id uuid, first_viewed_at timestamptz,
      last_viewed_at timestamptz, last_viewed_version int, view_count int, junk text default 'shadow',
      primary key (tenant_id, user_id, skill_id));
    create table shadow.skill_revisions (tenant_id uuid, skill_id uuid, revision bigint, name text, description text,
      published_version int, created_at timestamptz, junk text default 'shadow');
    create table shadow.user_tracking_preferences (tenant_id uuid, user_id uuid, tracking_enabled boolean,
      updated_at timestamptz, junk text default 'shadow');
    -- Would replace the real functions for any statement resolved under this search_path.
    create function shadow.now() returns timestamptz language sql stable as $$ select timestamptz '${SHADOW_NOW}' $$;
    create function shadow.gen_random_uuid() returns uuid language sql as $$ select '00000000-0000-4000-8000-00000000dead'::uuid $$;
    create function shadow.skillviews_ensure_app_role(text) returns void language plpgsql
      as $$ begin raise exception 'shadow.skillviews_ensure_app_role was called'; end $$;
    -- A set_config that silently skips the role switch (RLS would not apply), and a pg_class that reports
    -- every table's row-level security as on: traps for statements resolved before the pins take effect.
    create function shadow.set_config(text, text, boolean) returns text language sql
      as $$ select case when $1 = 'role' then $2 else pg_catalog.set_config($1, $2, $3) end $$;
    create view shadow.pg_class as select oid, relname, relnamespace, relkind, relowner,
      true as relrowsecurity, true as relforcerowsecurity from pg_catalog.pg_class;
    grant select on shadow.pg_class to public;
    -- Visible to the application role too (a schema without USAGE would be skipped silently): it would read the
    -- poisoned catalogue, and fail on the views table (a health probe resolved here answers 503, not 200).
    grant usage on schema shadow to public;
    grant select, insert, update, delete on shadow.tenants, shadow.users, shadow.skills, shadow.skill_versions, shadow.skill_feedback,
      shadow.skill_revisions, shadow.user_tracking_preferences to public;
  `);
  await c`insert into shadow.tenants (id, name, slug, created_at) values (${TENANT}, 'Shadow tenant', 'shadow', ${SHADOW_NOW})`;
  await c`insert into shadow.users (id, tenant_id, email, name, created_at)
          select u, ${TENANT}::uuid, 'shadow@shadow.test', 'Shadow user', ${SHADOW_NOW}::timestamptz from unnest(${userIds}::uuid[]) u`;
  await c`insert into shadow.skills (id, tenant_id, name, slug, description, category, status, created_at, updated_at)
          select s, ${TENANT}::uuid, 'Shadow skill', 'shadow-' || i, 'shadow', 'Shadow', 'published', now(), now()
          from unnest(${skillIds}::uuid[]) with ordinality as t(s, i)`;
  await c`insert into shadow.skill_versions (id, tenant_id, skill_id, version, name, description, created_at)
          select gen_random_uuid(), ${TENANT}::uuid, s, 99, 'Shadow version', 'shadow', now() from unnest(${skillIds}::uuid[]) s`;
  await c`insert into shadow.skill_feedback (id, tenant_id, skill_id, user_id, feedback_type, comment, created_at)
          select gen_random_uuid(), ${TENANT}::uuid, s, null, 'comment', 'shadow', now() from unnest(${skillIds}::uuid[]) s, generate_series(1, 7)`;
  // Every viewer "paused tracking", and every skill's history says it always looked as it does now.
  await c`insert into shadow.user_tracking_preferences (tenant_id, user_id, tracking_enabled, updated_at)
          select ${TENANT}::uuid, u, false, ${SHADOW_NOW}::timestamptz from unnest(${userIds}::uuid[]) u`;
  await c`insert into shadow.skill_revisions (tenant_id, skill_id, revision, name, description, published_version, created_at)
          select ${TENANT}::uuid, s, r, 'Shadow skill', 'shadow', 99, ${SHADOW_NOW}::timestamptz
          from unnest(${skillIds}::uuid[]) s, generate_series(0, 9) r`;
  await c`insert into shadow.user_skill_views (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count)
          select ${TENANT}::uuid, u, s, ${SHADOW_NOW}::timestamptz, ${SHADOW_NOW}::timestamptz, 99, 999
          from unnest(${userIds}::uuid[]) u, unnest(${skillIds}::uuid[]) s`;
}

/** The shadow schema's tables (columns, row counts) and functions, to prove nothing touched it. */
async function shadowSnapshot(c: postgres.Sql) {
  const columns = await c`select c.relname as table, array_agg(a.attname::text order by a.attnum) as columns, c.relrowsecurity as rls
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    where n.nspname = 'shadow' group by c.relname, c.relrowsecurity order by c.relname`;
  const rows: Record<string, string> = {};
  for (const t of SHADOW_TABLES) {
    const [r] = await c.unsafe(`select count(*)::text as n, md5(string_agg(x::text, ',' order by x::text)) as digest from shadow.${t} x`);
    rows[t] = `${r!.n}:${r!.digest}`;
  }
  const functions = await c`select p.oid::pg_catalog.regprocedure::text as fn from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace where n.nspname = 'shadow' order by 1`;
  return { columns: plain(columns), rows, functions: plain(functions) };
}

/** What the migrations made, read with search_path = pg_catalog (so anything not in pg_catalog shows its schema). */
async function catalogSnapshot(url: string) {
  const c = postgres(url, { max: 1, onnotice: () => {}, connection: { search_path: 'pg_catalog' } });
  try {
    return {
      relations: plain(await c`select n.nspname as schema, c.relname as name, c.relkind as kind, c.relrowsecurity as rls,
          c.relforcerowsecurity as forced
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'drizzle') order by 1, 2`),
      columns: plain(await c`select c.relname as table, a.attname as column, format_type(a.atttypid, a.atttypmod) as type,
          a.attnotnull as not_null, pg_get_expr(d.adbin, d.adrelid) as default
        from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where n.nspname = 'public' and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped order by 1, a.attnum`),
      constraints: plain(await c`select conrelid::regclass::text as table, conname as name, pg_get_constraintdef(oid) as def
        from pg_constraint where connamespace = 'public'::regnamespace order by 1, 2`),
      policies: plain(await c`select polrelid::regclass::text as table, polname as name, polpermissive as permissive,
          pg_get_expr(polqual, polrelid) as using, pg_get_expr(polwithcheck, polrelid) as check
        from pg_policy order by 1, 2`),
      functions: plain(await c`select p.oid::regprocedure::text as fn, p.proconfig as config, md5(p.prosrc) as src
        from pg_proc p where p.pronamespace = 'public'::regnamespace order by 1`),
      triggers: plain(await c`select tgrelid::regclass::text as table, tgname as name, tgfoid::regprocedure::text as fn
        from pg_trigger where not tgisinternal order by 1, 2`),
      types: plain(await c`select t.typnamespace::regnamespace::text as schema, t.typname as name,
          array(select e.enumlabel::text from pg_enum e where e.enumtypid = t.oid order by e.enumsortorder) as labels
        from pg_type t where t.typtype = 'e' order by 1, 2`),
      journal: plain(await c`select tag, hash from drizzle.skill_views_migrations order by id`),
    };
  } finally {
    await c.end({ timeout: 5 });
  }
}

const plain = (rows: readonly Record<string, any>[]) => rows.map((r) => ({ ...r }));

// ---------------------------------------------------------------------------------------------------------
// The scripted calls, through any transport, with the expectations that hold on every database.

type Out = RouterOutputs;
interface Api {
  recordView: (skillId: string) => Promise<Out['recordView']>;
  viewsForSkills: (skillIds: string[]) => Promise<Out['viewsForSkills']>;
  whatsNew: (input: RouterInputs['whatsNew']) => Promise<Out['whatsNew']>;
  changeSummary: (skillId: string) => Promise<Out['changeSummary']>;
  codeOf: (err: unknown) => string | null;
}

function callerApi(db: Database, userIndex: number): Api {
  const caller = callerFor(db, fixture, userIndex);
  return {
    recordView: (skillId) => caller.recordView({ skillId }),
    viewsForSkills: (skillIds) => caller.viewsForSkills({ skillIds }),
    whatsNew: (input) => caller.whatsNew(input),
    changeSummary: (skillId) => caller.changeSummary({ skillId }),
    codeOf: (err) => (err as { code?: string }).code ?? null,
  };
}

function httpApi(server: TestServer, userId: string): Api {
  const client = server.client({ tenantId: TENANT, userId });
  return {
    recordView: (skillId) => client.recordView.mutate({ skillId }),
    viewsForSkills: (skillIds) => client.viewsForSkills.query({ skillIds }),
    whatsNew: (input) => client.whatsNew.query(input),
    changeSummary: (skillId) => client.changeSummary.query({ skillId }),
    codeOf: errorCode,
  };
}

/** Seeded view of every viewer, as SkillView. */
const seededView = (k: SkillKey) => {
  const view = (SKILLS[k] as SeedSkill).view!;
  return { skillId: S[k], firstViewedAt: view.first, lastViewedAt: view.last, lastViewedVersion: view.version, viewCount: view.count };
};

const decodeCursor = (cursor: string) => Buffer.from(cursor, 'base64url').toString('utf8');

/** Asserts `d` is a valid Date from the database clock during [from, to] (same host; 1 s of slack). */
function expectDbClock(d: unknown, from: number, to: number, what: string) {
  expect(d, what).toBeInstanceOf(Date);
  const t = (d as Date).getTime();
  expect(t, `${what}: ${String(d)} is not between the call's start and end`).toBeGreaterThanOrEqual(from - 1000);
  expect(t, `${what}: ${String(d)} is not between the call's start and end`).toBeLessThanOrEqual(to + 1000);
}

/**
 * Reads, visits, reads again, as one viewer who has the seeded history. Asserts what must hold anywhere and
 * returns the transcript of every answer.
 */
async function runScript(api: Api, where: string): Promise<[string, unknown][]> {
  const transcript: [string, unknown][] = [];
  const log = <T>(label: string, value: T): T => {
    transcript.push([label, value]);
    return value;
  };
  const ctx = (what: string) => `${where}: ${what}`;

  // Before any visit.
  const summaries = {} as Record<SkillKey, Out['changeSummary']>;
  for (const k of Object.keys(SKILLS) as SkillKey[]) summaries[k] = log(`changeSummary ${k}`, await api.changeSummary(S[k]));
  expect(summaries.bump, ctx('changeSummary bump')).toEqual({
    skillId: S.bump, firstView: false, lastViewedAt: ago(10), lastViewedVersion: 2, currentVersion: 3,
    changes: [{ kind: 'version_bump', from: 2, to: 3 }, { kind: 'details_updated', fields: ['description'] }, { kind: 'new_feedback', count: 2 }],
  });
  expect(summaries.edit, ctx('changeSummary edit')).toEqual({
    skillId: S.edit, firstView: false, lastViewedAt: ago(5), lastViewedVersion: 1, currentVersion: 1,
    changes: [{ kind: 'details_updated', fields: ['description'] }, { kind: 'new_feedback', count: 2 }],
  });
  expect(summaries.seen.changes, ctx('changeSummary seen')).toEqual([]);
  // Edited since it was seen (unpublished, so no version to bump): a change to see, though never in the feed.
  expect(summaries.draft, ctx('changeSummary draft')).toMatchObject({
    currentVersion: null, lastViewedVersion: null, changes: [{ kind: 'details_updated', fields: ['description'] }],
  });
  expect(summaries.never, ctx('changeSummary never')).toEqual({
    skillId: S.never, firstView: true, lastViewedAt: null, lastViewedVersion: null, currentVersion: 1, changes: [],
  });
  expect(summaries.old, ctx('changeSummary old')).toMatchObject({ lastViewedAt: OLD_VIEWED, changes: [{ kind: 'version_bump', from: 1, to: 2 }] });
  const foreign = await api.changeSummary(FOREIGN_SKILL).then(
    () => 'resolved',
    (err: unknown) => api.codeOf(err),
  );
  expect(log('changeSummary foreign', foreign), ctx('changeSummary of a foreign skill')).toBe('NOT_FOUND');

  const views = log('viewsForSkills', await api.viewsForSkills([...ALL_SKILL_IDS, S.bump, FOREIGN_SKILL]));
  expect(views, ctx('viewsForSkills')).toBeInstanceOf(Map);
  expect([...views.keys()].sort(), ctx('viewsForSkills keys')).toEqual(VIEWED.map((k) => S[k]).sort());
  for (const k of VIEWED) {
    expect(views.get(S[k]), ctx(`viewsForSkills ${k}`)).toEqual({ ...seededView(k), hasUpdate: k !== 'seen' });
  }

  // The feed, two at a time, following the cursors.
  const expected30 = expectedFeed(30);
  const pages: Out['whatsNew'][] = [];
  let cursor: string | null = null;
  do {
    const page: Out['whatsNew'] = log(`whatsNew page ${pages.length + 1}`, await api.whatsNew({ limit: 2, cursor }));
    pages.push(page);
    const last = page.items[page.items.length - 1];
    if (page.nextCursor) {
      const lastSkill = Object.values(SKILLS).find((s) => s.id === last?.skillId) as SeedSkill;
      // The cursor holds the exact updated_at in UTC with microseconds, whatever the database's TimeZone.
      expect(decodeCursor(page.nextCursor), ctx(`cursor after page ${pages.length}`)).toBe(`${updatedAtText(lastSkill)}|${lastSkill.id}`);
    }
    cursor = page.nextCursor;
  } while (cursor && pages.length < 10);
  expect(pages.length, ctx('feed pages')).toBe(Math.ceil(expected30.length / 2));
  const paged = pages.flatMap((p) => p.items);
  expect(paged.map((i) => i.skillId), ctx('feed order')).toEqual(expected30.map((k) => S[k]));
  for (const item of paged) {
    const [k, s] = Object.entries(SKILLS).find(([, s]) => s.id === item.skillId)! as [SkillKey, SeedSkill];
    expect(item, ctx(`feed item ${k}`)).toEqual({
      skillId: s.id, name: s.versions[(s.published ?? 1) - 1]!.name, slug: s.slug, category: 'Settings',
      updatedAt: s.updatedAt, lastViewedAt: s.view!.last, lastViewedVersion: s.view!.version, currentVersion: s.published, viewCount: s.view!.count,
    });
  }
  const firstPage = log('whatsNew default', await api.whatsNew({}));
  expect(firstPage, ctx('whatsNew default')).toEqual({ items: paged, nextCursor: null });
  const wide = log('whatsNew 90 days', await api.whatsNew({ windowDays: 90, limit: 50 }));
  expect(wide.items.map((i) => i.skillId), ctx('whatsNew 90 days')).toEqual(expectedFeed(90).map((k) => S[k]));
  expect(expectedFeed(90)).toContain('old');

  // Visits: timestamps from the database clock.
  let from = Date.now();
  const first = log('recordView bump', await api.recordView(S.bump));
  let to = Date.now();
  expect(first.previous, ctx('recordView bump: previous')).toEqual(seededView('bump'));
  expect(first.view, ctx('recordView bump: view')).toMatchObject({ skillId: S.bump, firstViewedAt: ago(30), lastViewedVersion: 3, viewCount: 4 });
  expectDbClock(first.view!.lastViewedAt, from, to, ctx('recordView bump: lastViewedAt'));

  from = Date.now();
  const again = log('recordView bump again', await api.recordView(S.bump));
  to = Date.now();
  expect(again.previous, ctx('recordView bump again: previous is the first visit')).toEqual(first.view);
  expect(again.view, ctx('recordView bump again: view')).toMatchObject({ firstViewedAt: ago(30), lastViewedVersion: 3, viewCount: 5 });
  expectDbClock(again.view!.lastViewedAt, from, to, ctx('recordView bump again: lastViewedAt'));
  expect(again.view!.lastViewedAt.getTime(), ctx('lastViewedAt never moves backwards')).toBeGreaterThanOrEqual(first.view!.lastViewedAt.getTime());

  from = Date.now();
  const fresh = log('recordView never', await api.recordView(S.never));
  to = Date.now();
  expect(fresh.previous, ctx('recordView never: previous')).toBeNull();
  expect(fresh.view, ctx('recordView never: view')).toMatchObject({ skillId: S.never, lastViewedVersion: 1, viewCount: 1 });
  expectDbClock(fresh.view!.firstViewedAt, from, to, ctx('recordView never: firstViewedAt'));
  expect(fresh.view!.lastViewedAt, ctx('recordView never: first and last view are one instant')).toEqual(fresh.view!.firstViewedAt);

  // After the visits: read back exactly what was recorded.
  const after = log('viewsForSkills after', await api.viewsForSkills([S.bump, S.never, S.seen]));
  expect(after.get(S.bump), ctx('viewsForSkills bump after')).toEqual({ ...again.view!, hasUpdate: false });
  expect(after.get(S.never), ctx('viewsForSkills never after')).toEqual({ ...fresh.view!, hasUpdate: false });
  const bumpAfter = log('changeSummary bump after', await api.changeSummary(S.bump));
  expect(bumpAfter, ctx('changeSummary bump after')).toEqual({
    skillId: S.bump, firstView: false, lastViewedAt: again.view!.lastViewedAt, lastViewedVersion: 3, currentVersion: 3, changes: [],
  });
  const neverAfter = log('changeSummary never after', await api.changeSummary(S.never));
  expect(neverAfter, ctx('changeSummary never after')).toMatchObject({ firstView: false, lastViewedAt: fresh.view!.lastViewedAt, changes: [] });
  const feedAfter = log('whatsNew after', await api.whatsNew({ limit: 50 }));
  expect(feedAfter.items.map((i) => i.skillId), ctx('whatsNew after')).toEqual(expected30.filter((k) => k !== 'bump').map((k) => S[k]));
  return transcript;
}

/**
 * The transcript with values that legitimately differ between databases replaced: a timestamp from the
 * database clock (recordView, any instant after the run started) becomes 'db-clock' (runScript has checked
 * each one against its call's start and end); every seeded timestamp stays exact. Maps become sorted entries.
 */
function normalise(value: unknown): unknown {
  if (value instanceof Date) {
    const t = value.getTime();
    if (Number.isNaN(t)) return 'Invalid Date';
    return t >= RUN_START - 1000 ? 'db-clock' : value.toISOString();
  }
  if (value instanceof Map) {
    return { map: [...value.entries()].sort(([a], [b]) => String(a).localeCompare(String(b))).map(([k, v]) => [k, normalise(v)]) };
  }
  if (Array.isArray(value)) return value.map(normalise);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
  return value;
}

// ---------------------------------------------------------------------------------------------------------

const engineOf = (handle: DbHandle): TestEngine => ({ name: 'postgres', url: handle.url ?? null, open: async () => handle });

describe.skipIf(!pgUrl)('pinned session settings: a hostile database gives the same answers (Postgres)', () => {
  const suffix = randomBytes(5).toString('hex');
  const names = { plain: `skillviews_settings_plain_${suffix}`, hostile: `skillviews_settings_hostile_${suffix}` };
  const urlOf = (name: string) => {
    const url = new URL(pgUrl!);
    url.pathname = `/${name}`;
    return url.toString();
  };
  let admin: postgres.Sql;
  let shadowConn: postgres.Sql;
  let shadowBefore: Awaited<ReturnType<typeof shadowSnapshot>>;
  const handles: Partial<Record<'plain' | 'hostile', DbHandle>> = {};
  const servers: Partial<Record<'plain' | 'hostile', TestServer>> = {};

  beforeAll(async () => {
    admin = postgres(pgUrl!, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database "${names.plain}"`);
    await admin.unsafe(`create database "${names.hostile}"`);
    shadowConn = postgres(urlOf(names.hostile), { max: 1, onnotice: () => {} });
    await createShadow(shadowConn);
    for (const setting of HOSTILE_SETTINGS) await admin.unsafe(`alter database "${names.hostile}" set ${setting}`);
    shadowBefore = await shadowSnapshot(shadowConn);
  });

  afterAll(async () => {
    for (const s of Object.values(servers)) await s?.close();
    for (const h of Object.values(handles)) await h?.close();
    await shadowConn?.end({ timeout: 5 });
    for (const name of Object.values(names)) await admin?.unsafe(`drop database if exists "${name}" with (force)`);
    await admin?.end({ timeout: 5 });
  });

  /** Migrates and seeds both databases and starts a server on each, once (every test awaits it). */
  let setup: Promise<void> | undefined;
  const ready = () =>
    (setup ??= (async () => {
      for (const which of ['plain', 'hostile'] as const) {
        const handle = createDb({ url: urlOf(names[which]), poolSize: 3 });
        handles[which] = handle;
        await migrate(handle, {});
        if (which === 'hostile') {
          // A guard: the database really is hostile wherever the module does not pin (here, outside a transaction
          // on one of its own pooled connections): DMY text dates, Kathmandu time, the shadow's tables and now().
          const [row] = await query<Record<string, string>>(handle.db, sql`select current_setting('DateStyle') as datestyle,
            current_setting('TimeZone') as timezone, current_setting('IntervalStyle') as intervalstyle,
            current_setting('search_path') as search_path, now()::text as now, (select count(*)::text from skills) as shadow_skills`);
          expect({ ...row }, 'the hostile database is not hostile').toEqual({
            datestyle: 'SQL, DMY', timezone: 'Asia/Kathmandu', intervalstyle: 'sql_standard', search_path: 'shadow, pg_catalog, public',
            now: '03/02/2001 09:50:06 +0545', shadow_skills: String(ALL_SKILL_IDS.length),
          });
        }
        await seed(handle.db);
        servers[which] = await startTestServer(engineOf(handle), { handle });
      }
    })());
  const db = (which: 'plain' | 'hostile') => handles[which]!.db;

  const expectShadowUntouched = async () => expect(await shadowSnapshot(shadowConn)).toEqual(shadowBefore);

  it('migrates into public, exactly as on a plain database, leaving the shadowing schema untouched', async () => {
    await ready();
    const [plainCatalog, hostileCatalog] = await Promise.all([catalogSnapshot(urlOf(names.plain)), catalogSnapshot(urlOf(names.hostile))]);
    expect(hostileCatalog).toEqual(plainCatalog);
    // Nothing was created in, or bound to, the shadow schema (its now() and gen_random_uuid() as column defaults).
    expect(JSON.stringify(hostileCatalog)).not.toMatch(/shadow/);
    const publicTables = hostileCatalog.relations.filter((r) => r.schema === 'public' && r.kind === 'r');
    expect(publicTables.map((r) => [r.name, r.rls, r.forced]).sort()).toEqual(SHADOW_TABLES.map((t) => [t, true, true]).sort());
    expect(hostileCatalog.columns).toContainEqual(expect.objectContaining({ table: 'skills', column: 'updated_at', default: 'now()' }));
    expect(hostileCatalog.columns).toContainEqual(expect.objectContaining({ table: 'skills', column: 'id', default: 'gen_random_uuid()' }));
    expect(hostileCatalog.types).toEqual([{ schema: 'public', name: 'skill_status', labels: ['draft', 'published', 'archived'] }]);
    expect(hostileCatalog.journal.length).toBeGreaterThan(0);
    await expectShadowUntouched();
  });

  it('server-side callers get identical answers on both databases (recordView, viewsForSkills, whatsNew pages, changeSummary)', async () => {
    await ready();
    const plainTranscript = await runScript(callerApi(db('plain'), 0), 'plain database, caller');
    const hostileTranscript = await runScript(callerApi(db('hostile'), 0), 'hostile database, caller');
    expect(normalise(hostileTranscript)).toEqual(normalise(plainTranscript));
    await expectShadowUntouched();
  });

  it('HTTP clients with bearer tokens get identical answers on both databases', async () => {
    await ready();
    const plainTranscript = await runScript(httpApi(servers.plain!, U.http), 'plain database, HTTP');
    const hostileTranscript = await runScript(httpApi(servers.hostile!, U.http), 'hostile database, HTTP');
    expect(normalise(hostileTranscript)).toEqual(normalise(plainTranscript));
    await expectShadowUntouched();
  });

  it('fixed timestamps round-trip as the same instants on the hostile database (procedures, HTTP and owner writes)', async () => {
    await ready();
    const rt = SKILLS.roundtrip;
    for (const [where, api] of [
      ['caller', callerApi(db('hostile'), 2)],
      ['HTTP', httpApi(servers.hostile!, U.reader)],
    ] as const) {
      const feed = await api.whatsNew({ windowDays: 90, limit: 50 });
      const item = feed.items.find((i) => i.skillId === rt.id);
      expect(item?.updatedAt, where).toBeInstanceOf(Date);
      expect(item?.updatedAt.toISOString(), where).toBe(ROUNDTRIP_UPDATED.toISOString());
      expect(feed.items.find((i) => i.skillId === S.old)?.updatedAt.toISOString(), where).toBe(ago(40).toISOString());
      const views = await api.viewsForSkills([S.old, rt.id]);
      expect(views.get(S.old)?.lastViewedAt.toISOString(), where).toBe(OLD_VIEWED.toISOString());
      expect(views.get(S.old)?.firstViewedAt.toISOString(), where).toBe(OLD_VIEWED.toISOString());
      expect(views.get(rt.id)?.lastViewedAt.toISOString(), where).toBe(ago(24).toISOString());
      expect((await api.changeSummary(S.old)).lastViewedAt?.toISOString(), where).toBe(OLD_VIEWED.toISOString());
    }
    // The owner's writes and reads (db/seed.ts asOwnerInTenant) pin the settings too: drizzle maps the text back exactly.
    const [skill] = await asOwnerInTenant(db('hostile'), TENANT, (tx) =>
      tx.select({ updatedAt: skills.updatedAt, createdAt: skills.createdAt }).from(skills).where(sql`${skills.id} = ${rt.id}::uuid`),
    );
    expect(skill).toEqual({ updatedAt: ROUNDTRIP_UPDATED, createdAt: ago(25) });
    const [view] = await asOwnerInTenant(db('hostile'), TENANT, (tx) =>
      tx.select({ at: userSkillViews.lastViewedAt }).from(userSkillViews).where(sql`${userSkillViews.skillId} = ${S.old}::uuid and ${userSkillViews.userId} = ${U.reader}::uuid`),
    );
    expect(view?.at.toISOString()).toBe(OLD_VIEWED.toISOString());
  });

  it('the module’s transactions (requests and owner writes) run with the pinned settings, and they end with the transaction', async () => {
    await ready();
    // One connection, so the read after each transaction is on the connection that ran it.
    const one = createDb({ url: urlOf(names.hostile), poolSize: 1 });
    try {
      const settings = sql`select current_setting('DateStyle') as datestyle, current_setting('TimeZone') as timezone,
        current_setting('IntervalStyle') as intervalstyle, current_setting('search_path') as search_path,
        (interval '1 day 2 hours')::text as interval, (now() > timestamptz '2020-01-01') as real_clock`;
      const pinned = { datestyle: 'ISO, MDY', timezone: 'UTC', intervalstyle: 'postgres', search_path: 'public, pg_temp', interval: '1 day 02:00:00', real_clock: true };
      const outside = { datestyle: 'SQL, DMY', timezone: 'Asia/Kathmandu', intervalstyle: 'sql_standard', search_path: 'shadow, pg_catalog, public', interval: '1 2:00:00', real_clock: false };
      const scope = { role: APP_ROLE, tenantId: TENANT, userId: U.reader };
      expect((await withTenantTransaction(one.db, scope, (tx) => query(tx, settings)))[0]).toEqual(pinned);
      // The scope statement itself is resolved before its pins apply: it must reach pg_catalog's set_config.
      const who = await withTenantTransaction(one.db, scope, (tx) =>
        query<{ user: string; tenants: number }>(tx, sql`select current_user as user, (select count(*)::int from tenants) as tenants`),
      );
      expect(who[0]).toEqual({ user: APP_ROLE, tenants: 1 });
      expect((await query(one.db, settings))[0]).toEqual(outside);
      expect((await asOwnerInTenant(one.db, TENANT, (tx) => query(tx, settings)))[0]).toEqual(pinned);
      expect((await query(one.db, settings))[0]).toEqual(outside);
    } finally {
      await one.close();
    }
  });

  it('the start-up RLS check finds no problem and /healthz answers 200 on the hostile database', async () => {
    await ready();
    expect(await findRlsProblems(db('hostile'), APP_ROLE)).toEqual([]);
    // The check reads the real catalog, not a shadowing pg_class that claims RLS is forced everywhere.
    await db('hostile').execute(sql`alter table public.skills no force row level security`);
    try {
      expect(await findRlsProblems(db('hostile'), APP_ROLE)).toEqual(['table skills does not force row-level security']);
    } finally {
      await db('hostile').execute(sql`alter table public.skills force row level security`);
    }
    const res = await fetch(`${servers.hostile!.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });
});
