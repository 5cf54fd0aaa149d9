// Migrating to the read state (0005, 0006) keeps every answer of the clock rule it replaces: a database at the
// previous schema (migrations 0000–0004) with legacy views, what the old rule said per user and skill, then the
// full migrate(): nothing seen reappears, nothing unseen disappears, version bumps and new feedback as before, and
// a view afterwards clears everything. Both engines; on Postgres also as an owner that is not a superuser.
import { randomBytes, randomUUID } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, pinSettings, type DbHandle, type Executor } from '../db/client.ts';
import { DEFAULT_APP_ROLE, migrate, MIGRATIONS_TABLE, readMigrations } from '../db/migrate.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { asOwnerInTenant } from '../db/seed.ts';
import { createContextInner } from '../server/context.ts';
import { createCaller } from '../server/router.ts';
import { engines } from './support/engines.ts';

/** The migrations of the previous release: 0000–0004. */
const PREVIOUS = 5;

/**
 * Applies only the first `count` migrations the way db/migrate.ts applyAll does (same statements, same journal,
 * the app role ensured), so a later migrate() finds them applied and runs only the rest.
 */
async function migrateTo(handle: DbHandle, count: number, appRole: string) {
  const migrations = readMigrations().slice(0, count);
  expect(migrations.map((m) => m.tag)).toEqual([
    '0000_init',
    '0001_rls_force_role_grants',
    '0002_feedback_user_same_tenant',
    '0003_views_pk_covering',
    '0004_app_role_managed_postgres',
  ]);
  await handle.db.transaction(async (tx) => {
    await pinSettings(tx);
    await tx.execute(sql.raw('create schema if not exists drizzle'));
    await tx.execute(
      sql.raw(`create table if not exists ${MIGRATIONS_TABLE} (
        id serial primary key, hash text not null, created_at bigint not null unique, tag text,
        applied_at timestamptz not null default now())`),
    );
    for (const migration of migrations) {
      for (const statement of migration.statements) await tx.execute(sql.raw(statement));
      await tx.execute(
        sql`insert into drizzle.skill_views_migrations (hash, created_at, tag) values (${migration.hash}, ${migration.createdAt}, ${migration.tag})`,
      );
    }
    await tx.execute(sql`select public.skillviews_ensure_app_role(${appRole})`);
  });
}

// ---- The legacy data: what users of the previous release left behind ------------------------------------------

const USERS = 3;
type Key = 'current' | 'bumped' | 'editedAfter' | 'editedBefore' | 'draft' | 'publishedAfterNull' | 'touchedSame' | 'oldChange' | 'archived' | 'rolledBack';

interface LegacySkill {
  /** [name, description, days ago] of v1, v2, … */
  versions: [string, string, number][];
  published: number | null;
  /** Current name/description when edited in place (default: the published, else the last, snapshot's). */
  name?: string;
  description?: string;
  updatedDaysAgo: number;
  status?: 'draft' | 'published' | 'archived';
}

const legacySkills: Record<Key, LegacySkill> = {
  current: { versions: [['One', 'one', 20]], published: 1, updatedDaysAgo: 20 },
  bumped: { versions: [['Two', 'two', 30], ['Two v2', 'two', 10], ['Two v3', 'two', 2]], published: 3, updatedDaysAgo: 2 },
  editedAfter: { versions: [['Three', 'three', 20]], published: 1, description: 'three, edited', updatedDaysAgo: 2 },
  editedBefore: { versions: [['Four', 'four', 20]], published: 1, name: 'Four renamed', updatedDaysAgo: 10 },
  draft: { versions: [['Five', 'five', 20]], published: null, status: 'draft', updatedDaysAgo: 20 },
  publishedAfterNull: { versions: [['Six', 'six', 20]], published: 1, updatedDaysAgo: 2 },
  touchedSame: { versions: [['Seven', 'seven', 20]], published: 1, updatedDaysAgo: 2 },
  oldChange: { versions: [['Eight', 'eight', 60], ['Eight v2', 'eight', 40]], published: 2, updatedDaysAgo: 40 },
  archived: { versions: [['Nine', 'nine', 30], ['Nine v2', 'nine', 3]], published: 2, status: 'archived', updatedDaysAgo: 3 },
  rolledBack: { versions: [['Ten', 'ten', 30], ['Ten v2', 'ten v2', 10]], published: 1, updatedDaysAgo: 2 },
};

/** [user, skill, days ago, last_viewed_version] */
const legacyViews: [number, Key, number, number | null][] = [
  [0, 'current', 5, 1],
  [1, 'current', 15, 1],
  [0, 'bumped', 20, 1],
  [1, 'bumped', 5, 2],
  [2, 'bumped', 1, 3],
  [0, 'editedAfter', 5, 1],
  [2, 'editedAfter', 1, 1],
  [0, 'editedBefore', 5, 1],
  [0, 'draft', 5, null],
  [0, 'publishedAfterNull', 5, null],
  [0, 'touchedSame', 5, 1],
  [0, 'oldChange', 50, 1],
  [0, 'archived', 10, 1],
  [0, 'rolledBack', 5, 2],
];

/** [skill, author (null: anonymous), days ago] */
const legacyFeedback: [Key, number | null, number][] = [
  ['current', 1, 6],
  ['current', 1, 3],
  ['current', 0, 3],
  ['current', null, 2],
  ['bumped', 2, 4],
  ['editedBefore', 1, 1],
  ['draft', 0, 1],
];

/** What the old rule said, written out: [user, skill] → hasUpdate / listed by whatsNew. Checked against the old SQL. */
const oldVerdicts: Record<string, { hasUpdate: boolean; inFeed: boolean }> = {
  '0 current': { hasUpdate: false, inFeed: false },
  '1 current': { hasUpdate: false, inFeed: false },
  '0 bumped': { hasUpdate: true, inFeed: true },
  '1 bumped': { hasUpdate: true, inFeed: true },
  '2 bumped': { hasUpdate: false, inFeed: false },
  '0 editedAfter': { hasUpdate: true, inFeed: true },
  '2 editedAfter': { hasUpdate: false, inFeed: false },
  '0 editedBefore': { hasUpdate: false, inFeed: false },
  '0 draft': { hasUpdate: false, inFeed: false },
  '0 publishedAfterNull': { hasUpdate: true, inFeed: true },
  '0 touchedSame': { hasUpdate: true, inFeed: true },
  '0 oldChange': { hasUpdate: true, inFeed: false },
  '0 archived': { hasUpdate: true, inFeed: false },
  '0 rolledBack': { hasUpdate: true, inFeed: true },
};

interface LegacyTenant {
  tenantId: string;
  userIds: string[];
  skillIds: Record<Key, string>;
}

const daysAgoSql = (days: number) => sql`now() - make_interval(secs => ${days * 86_400}::double precision)`;

/** Writes one tenant's legacy data with plain SQL (the previous schema has none of the new columns), as the owner. */
async function writeLegacyTenant(db: DbHandle['db']): Promise<LegacyTenant> {
  const tenantId = randomUUID();
  const userIds = Array.from({ length: USERS }, () => randomUUID());
  const skillIds = Object.fromEntries(Object.keys(legacySkills).map((k) => [k, randomUUID()])) as Record<Key, string>;
  await asOwnerInTenant(db, tenantId, async (tx) => {
    await tx.execute(sql`insert into tenants (id, name, slug) values (${tenantId}::uuid, 'legacy', ${`legacy-${tenantId}`})`);
    for (const [i, id] of userIds.entries()) {
      await tx.execute(sql`insert into users (id, tenant_id, email, name) values (${id}::uuid, ${tenantId}::uuid, ${`u${i}@${tenantId}.test`}, ${`User ${i}`})`);
    }
    for (const [key, spec] of Object.entries(legacySkills) as [Key, LegacySkill][]) {
      const shown = spec.versions[(spec.published ?? spec.versions.length) - 1]!;
      const skillId = skillIds[key];
      await tx.execute(sql`insert into skills (id, tenant_id, name, slug, description, category, status, created_at, updated_at)
        values (${skillId}::uuid, ${tenantId}::uuid, ${spec.name ?? shown[0]}, ${key}, ${spec.description ?? shown[1]}, 'Legacy',
                ${spec.status ?? 'published'}, ${daysAgoSql(spec.versions[0]![2])}, ${daysAgoSql(spec.updatedDaysAgo)})`);
      for (const [i, [name, description, days]] of spec.versions.entries()) {
        await tx.execute(sql`insert into skill_versions (tenant_id, skill_id, version, name, description, created_at)
          values (${tenantId}::uuid, ${skillId}::uuid, ${i + 1}, ${name}, ${description}, ${daysAgoSql(days)})`);
      }
      if (spec.published !== null) {
        // An explicit updated_at (a new value) is kept by the touch trigger.
        await tx.execute(sql`update skills set updated_at = ${daysAgoSql(spec.updatedDaysAgo)} + interval '1 millisecond',
          published_version_id = (select id from skill_versions where skill_id = ${skillId}::uuid and version = ${spec.published})
          where id = ${skillId}::uuid`);
      }
    }
    for (const [skill, author, days] of legacyFeedback) {
      await tx.execute(sql`insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment, created_at)
        values (${tenantId}::uuid, ${skillIds[skill]}::uuid, ${author === null ? null : userIds[author]!}::uuid, 'comment', 'legacy', ${daysAgoSql(days)})`);
    }
  });
  // View rows are personal: each user's are written with that user set.
  for (const [user, skill, days, version] of legacyViews) {
    await asOwnerInTenant(
      db,
      tenantId,
      (tx) =>
        tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count)
          values (${tenantId}::uuid, ${userIds[user]!}::uuid, ${skillIds[skill]}::uuid, ${daysAgoSql(days + 1)}, ${daysAgoSql(days)}, ${version}, 2)`),
      { userId: userIds[user]! },
    );
  }
  return { tenantId, userIds, skillIds };
}

// ---- The old rule, verbatim from the previous release's queries -------------------------------------------------

type Change =
  | { kind: 'version_bump'; from: number | null; to: number }
  | { kind: 'details_updated'; fields: ('name' | 'description')[] }
  | { kind: 'new_feedback'; count: number };

interface Answer {
  hasUpdate: boolean;
  inFeed: boolean;
  changes: Change[];
}

/**
 * What the previous release answered for one user, per viewed skill id: viewsForSkills' hasUpdate, whatsNew's
 * predicate (30-day window) and changeSummary's changes, by its SQL, in the user's request transaction.
 */
async function oldAnswers(db: DbHandle['db'], appRole: string, t: LegacyTenant, user: number): Promise<Map<string, Answer>> {
  const scope = { role: appRole, tenantId: t.tenantId, userId: t.userIds[user]! };
  const rows = await withTenantTransaction(db, scope, (tx: Executor) =>
    query<{
      skill_id: string;
      has_update: boolean;
      in_feed: boolean;
      current_version: number | null;
      last_viewed_version: number | null;
      name_changed: boolean;
      description_changed: boolean;
      new_feedback: unknown;
    }>(
      tx,
      sql`
      select v.skill_id,
             (s.updated_at > v.last_viewed_at or coalesce(pv.version, 0) > coalesce(v.last_viewed_version, 0)) as has_update,
             (s.status = 'published' and s.updated_at >= now() - make_interval(days => 30)
               and (s.updated_at > v.last_viewed_at or coalesce(pv.version, 0) > coalesce(v.last_viewed_version, 0))) as in_feed,
             pv.version as current_version, v.last_viewed_version,
             (lv.name is distinct from s.name) as name_changed,
             (lv.description is distinct from s.description) as description_changed,
             (select count(*) from skill_feedback f
               where f.skill_id = s.id and f.created_at > v.last_viewed_at and f.user_id is distinct from ${scope.userId}::uuid) as new_feedback
      from user_skill_views v
      join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
      left join skill_versions pv on pv.id = s.published_version_id
      left join skill_versions lv on lv.skill_id = s.id and lv.version = v.last_viewed_version
      where v.tenant_id = ${scope.tenantId}::uuid and v.user_id = ${scope.userId}::uuid`,
    ),
  );
  return new Map(
    rows.map((r) => {
      const changes: Change[] = [];
      const current = r.current_version === null ? null : Number(r.current_version);
      const seen = r.last_viewed_version === null ? null : Number(r.last_viewed_version);
      if (current !== null && current > (seen ?? 0)) changes.push({ kind: 'version_bump', from: seen, to: current });
      if (seen !== null) {
        const fields: ('name' | 'description')[] = [];
        if (r.name_changed) fields.push('name');
        if (r.description_changed) fields.push('description');
        if (fields.length > 0) changes.push({ kind: 'details_updated', fields });
      }
      const feedback = Number(r.new_feedback);
      if (feedback > 0) changes.push({ kind: 'new_feedback', count: feedback });
      return [r.skill_id, { hasUpdate: r.has_update, inFeed: r.in_feed, changes }];
    }),
  );
}

// ---- The new procedures -----------------------------------------------------------------------------------------

/** What the procedures answer now for one user, per skill id the user viewed. */
async function newAnswers(db: DbHandle['db'], appRole: string, t: LegacyTenant, user: number) {
  const c = createCaller(createContextInner({ db, appRole, session: { tenantId: t.tenantId, userId: t.userIds[user]! } }));
  const ids = Object.values(t.skillIds);
  const views = await c.viewsForSkills({ skillIds: ids });
  const feed: string[] = [];
  let cursor: string | null = null;
  do {
    const page: Awaited<ReturnType<typeof c.whatsNew>> = await c.whatsNew({ limit: 2, cursor });
    feed.push(...page.items.map((i) => i.skillId));
    cursor = page.nextCursor;
  } while (cursor);
  const count = await c.whatsNewCount({});
  const answers = new Map<string, Answer>();
  for (const [id, v] of views) {
    const summary = await c.changeSummary({ skillId: id });
    answers.set(id, { hasUpdate: v.hasUpdate, inFeed: feed.includes(id), changes: summary.changes as Change[] });
  }
  return { answers, feed, count, caller: c };
}

const contentChanges = (changes: Change[]) => changes.filter((c) => c.kind !== 'new_feedback');
const keyOf = (t: LegacyTenant, skillId: string) => (Object.entries(t.skillIds) as [Key, string][]).find(([, id]) => id === skillId)![0];

// ---- The databases: each engine, and Postgres with an owner that is not a superuser ----------------------------

interface Target {
  label: string;
  open: () => Promise<{ handle: DbHandle; appRole: string; drop: () => Promise<void> }>;
}

const pgEngine = engines.find((e) => e.name === 'postgres');

const targets: Target[] = [
  {
    label: 'pglite',
    open: async () => {
      const client = await PGlite.create();
      const handle = createDb({ pglite: client });
      return { handle, appRole: DEFAULT_APP_ROLE, drop: () => client.close() };
    },
  },
];
if (pgEngine) {
  const newDatabase = async (owner: string | null) => {
    const admin = postgres(pgEngine.url!, { max: 1, onnotice: () => {} });
    const id = `sv_rsm_${randomBytes(5).toString('hex')}`;
    const roles: string[] = [];
    const url = new URL(pgEngine.url!);
    let appRole = DEFAULT_APP_ROLE;
    if (owner) {
      // What a managed service gives (see managed-postgres.test.ts): a plain owner login and a DBA-made app role.
      const ownerRole = `${id}_owner`;
      appRole = `${id}_app`;
      roles.push(ownerRole, appRole);
      await admin.unsafe(`create role "${ownerRole}" login nosuperuser nocreaterole nocreatedb nobypassrls`);
      await admin.unsafe(`create role "${appRole}" nologin nosuperuser nobypassrls`);
      await admin.unsafe(`grant "${appRole}" to "${ownerRole}"`);
      await admin.unsafe(`create database "${id}" owner "${ownerRole}"`);
      url.username = ownerRole;
      url.password = '';
    } else {
      await admin.unsafe(`create database "${id}"`);
    }
    url.pathname = `/${id}`;
    const handle = createDb({ url: url.toString(), poolSize: 2 });
    return {
      handle,
      appRole,
      drop: async () => {
        await handle.close();
        await admin.unsafe(`drop database if exists "${id}" with (force)`);
        if (roles.length) {
          await admin.unsafe(`drop owned by ${roles.map((r) => `"${r}"`).join(', ')} cascade`);
          for (const role of roles) await admin.unsafe(`drop role "${role}"`);
        }
        await admin.end();
      },
    };
  };
  targets.push({ label: 'postgres', open: () => newDatabase(null) }, { label: 'postgres, owner not a superuser', open: () => newDatabase('owner') });
}

describe.each(targets)('migrating legacy views to the read state on $label', (target) => {
  let db: Awaited<ReturnType<Target['open']>>;
  /** Two tenants with the same legacy story: the backfill must cover every tenant, whoever the owner is. */
  let tenants: LegacyTenant[];
  const before = new Map<string, Map<string, Answer>>();
  const at = (t: LegacyTenant, user: number) => `${t.tenantId} ${user}`;

  beforeAll(async () => {
    db = await target.open();
    await migrateTo(db.handle, PREVIOUS, db.appRole);
    tenants = [await writeLegacyTenant(db.handle.db), await writeLegacyTenant(db.handle.db)];
    for (const t of tenants) {
      for (let user = 0; user < USERS; user++) before.set(at(t, user), await oldAnswers(db.handle.db, db.appRole, t, user));
    }
    const { applied } = await migrate(db.handle, { appRole: db.appRole });
    expect(applied).toEqual(readMigrations().slice(PREVIOUS).map((m) => m.tag));
  });
  afterAll(() => db?.drop());

  it('the legacy data says what it should under the old rule (seen and unseen cases, sticky details, clock-only changes)', () => {
    for (const t of tenants) {
      const said: Record<string, { hasUpdate: boolean; inFeed: boolean }> = {};
      for (let user = 0; user < USERS; user++) {
        for (const [id, a] of before.get(at(t, user))!) said[`${user} ${keyOf(t, id)}`] = { hasUpdate: a.hasUpdate, inFeed: a.inFeed };
      }
      expect(said).toEqual(oldVerdicts);
      const old = (user: number, key: Key) => before.get(at(t, user))!.get(t.skillIds[key])!.changes;
      // The old rule's flaws the migration must not carry over: a sticky in-place edit already seen, and a
      // clock-only change with nothing to show.
      expect(old(0, 'editedBefore')).toEqual([{ kind: 'details_updated', fields: ['name'] }, { kind: 'new_feedback', count: 1 }]);
      expect(old(2, 'editedAfter')).toEqual([{ kind: 'details_updated', fields: ['description'] }]);
      expect(old(0, 'touchedSame')).toEqual([]);
      expect(old(0, 'current')).toEqual([{ kind: 'new_feedback', count: 2 }]);
      expect(old(1, 'current')).toEqual([{ kind: 'new_feedback', count: 2 }]);
    }
  });

  it('nothing seen reappears and nothing unseen disappears: hasUpdate, whatsNew and whatsNewCount as before', async () => {
    for (const t of tenants) {
      for (let user = 0; user < USERS; user++) {
        const old = before.get(at(t, user))!;
        const now = await newAnswers(db.handle.db, db.appRole, t, user);
        const where = `tenant ${t.tenantId}, user ${user}`;
        expect([...now.answers.keys()].sort(), where).toEqual([...old.keys()].sort());
        for (const [id, o] of old) {
          expect({ skill: keyOf(t, id), hasUpdate: now.answers.get(id)!.hasUpdate, inFeed: now.answers.get(id)!.inFeed }, where).toEqual({
            skill: keyOf(t, id),
            hasUpdate: o.hasUpdate,
            inFeed: o.inFeed,
          });
        }
        expect(now.count, where).toEqual({ count: [...old.values()].filter((a) => a.inFeed).length, capped: false });
      }
    }
  });

  it('changeSummary: version bumps and new feedback as before, details only while unseen (hasUpdate ⇔ a content change)', async () => {
    for (const t of tenants) {
      for (let user = 0; user < USERS; user++) {
        const old = before.get(at(t, user))!;
        const { answers } = await newAnswers(db.handle.db, db.appRole, t, user);
        for (const [id, o] of old) {
          const key = keyOf(t, id);
          const where = `tenant ${t.tenantId}, user ${user}, skill ${key}`;
          const n = answers.get(id)!;
          const pick = (changes: Change[], kind: Change['kind']) => changes.filter((c) => c.kind === kind);
          expect(pick(n.changes, 'new_feedback'), where).toEqual(pick(o.changes, 'new_feedback'));
          expect(contentChanges(n.changes).length > 0, `${where}: hasUpdate ⇔ version_bump/details_updated`).toBe(n.hasUpdate);
          if (!o.hasUpdate) {
            // Seen stays seen, and an in-place edit already seen is no longer reported (the old sticky details).
            expect(contentChanges(n.changes), where).toEqual([]);
            continue;
          }
          if (key === 'rolledBack') {
            // A rollback: the old rule had no bump (it only counted upwards); the version seen (2) differs from
            // the current one (1), so it is reported from what was seen to what is published now.
            expect(pick(n.changes, 'version_bump'), where).toEqual([{ kind: 'version_bump', from: 2, to: 1 }]);
          } else {
            expect(pick(n.changes, 'version_bump'), where).toEqual(pick(o.changes, 'version_bump'));
          }
          // The fields the old rule named while unseen; a clock-only change (nothing to compare) reads as both.
          const oldDetails = pick(o.changes, 'details_updated');
          expect(pick(n.changes, 'details_updated'), where).toEqual(
            key === 'touchedSame' ? [{ kind: 'details_updated', fields: ['name', 'description'] }] : oldDetails,
          );
        }
      }
    }
  });

  it('after the migration, new edits and feedback count for legacy views, and a view clears everything', async () => {
    for (const t of tenants) {
      // A skill seen before the migration: an in-place rename now (its revision moves past the backfilled ones)
      // and new feedback by another user are unseen.
      await asOwnerInTenant(db.handle.db, t.tenantId, async (tx) => {
        await tx.execute(sql`update skills set name = 'One renamed' where id = ${t.skillIds.current}::uuid`);
        await tx.execute(sql`insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment)
          values (${t.tenantId}::uuid, ${t.skillIds.current}::uuid, ${t.userIds[2]!}::uuid, 'comment', 'after the migration')`);
      });
      const u0 = await newAnswers(db.handle.db, db.appRole, t, 0);
      expect(u0.answers.get(t.skillIds.current)).toEqual({
        hasUpdate: true,
        inFeed: true,
        changes: [{ kind: 'details_updated', fields: ['name'] }, { kind: 'new_feedback', count: 3 }],
      });

      for (let user = 0; user < USERS; user++) {
        const { answers, caller } = await newAnswers(db.handle.db, db.appRole, t, user);
        for (const id of answers.keys()) await caller.recordView({ skillId: id });
        const after = await newAnswers(db.handle.db, db.appRole, t, user);
        const where = `tenant ${t.tenantId}, user ${user}`;
        expect(after.feed, where).toEqual([]);
        expect(after.count, where).toEqual({ count: 0, capped: false });
        for (const [id, a] of after.answers) expect({ skill: keyOf(t, id), ...a }, where).toEqual({ skill: keyOf(t, id), hasUpdate: false, inFeed: false, changes: [] });
        // …and it stays clear: an edit now is again news, by revision.
      }
      await asOwnerInTenant(db.handle.db, t.tenantId, (tx) =>
        tx.execute(sql`update skills set description = 'two, edited' where id = ${t.skillIds.bumped}::uuid`),
      );
      for (const user of [0, 1, 2]) {
        const { answers } = await newAnswers(db.handle.db, db.appRole, t, user);
        expect(answers.get(t.skillIds.bumped)?.changes, `user ${user}`).toEqual([{ kind: 'details_updated', fields: ['description'] }]);
      }
    }
  });
});
