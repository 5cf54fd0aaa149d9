// Row-level security probes shared by the isolation suites: scoped reads, write attempts, and the tenant isolation check.
import { randomUUID } from 'node:crypto';
import { sql, type SQL } from 'drizzle-orm';
import type { Database, Executor, Transaction } from '../../db/client.ts';
import { query } from '../../db/queries/rows.ts';
import { scopeStatement, type TenantScope } from '../../db/queries/tenant-transaction.ts';
import { asOwnerInTenant } from '../../db/seed.ts';
import { personalTables, rlsTables, userTrackingPreferences } from '../../db/schema/index.ts';
import { APP_ROLE, createTenant, daysAgo, insertFeedback, insertView, skillSpec, type TenantFixture } from './factory.ts';
import { isRlsViolation, pgError } from './pg-error.ts';

export type RlsTable = (typeof rlsTables)[number];
export type PersonalTable = (typeof personalTables)[number];
export type CatalogueTable = Exclude<RlsTable, PersonalTable>;
export const isPersonal = (t: RlsTable): t is PersonalTable => (personalTables as readonly string[]).includes(t);
/** Tables whose rows belong to a whole tenant (the app role only reads them); skill_revisions is written by triggers. */
export const catalogueTables = rlsTables.filter((t): t is CatalogueTable => !isPersonal(t));

class Rollback {
  constructor(readonly value: unknown) {}
}

/** Runs `fn` in a transaction that is always rolled back (DDL, roles and grants included); returns its result. */
export async function rollingBack<T>(db: Database, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  try {
    await db.transaction(async (tx) => {
      throw new Rollback(await fn(tx));
    });
  } catch (err) {
    if (err instanceof Rollback) return err.value as T;
    throw err;
  }
  throw new Error('unreachable: the transaction was meant to roll back');
}

/** Switches the transaction to `scope` with the same statement the request transaction uses. */
export async function enterScope(tx: Executor, scope: TenantScope): Promise<void> {
  await tx.execute(scopeStatement(scope));
}

/** Back to the login role (a superuser in tests, so RLS no longer applies) for the rest of the transaction. */
export async function asLoginRole(tx: Executor): Promise<void> {
  await tx.execute(sql`select set_config('role', 'none', true)`);
}

/**
 * Creates, inside `tx`, a role that may write every table but is subject to RLS (NOLOGIN, NOBYPASSRLS,
 * not an owner), so a rejected write proves a policy stopped it rather than a missing grant. CREATE
 * ROLE is transactional: use it only in a transaction that rolls back.
 */
export async function createThrowawayWriter(tx: Executor): Promise<string> {
  const role = `sv_writer_${randomUUID().replaceAll('-', '')}`;
  const tables = sql.join(
    rlsTables.map((t) => sql`public.${sql.identifier(t)}`),
    sql`, `,
  );
  await tx.execute(sql`create role ${sql.identifier(role)} nologin nosuperuser nobypassrls`);
  await tx.execute(sql`grant usage on schema public to ${sql.identifier(role)}`);
  await tx.execute(sql`grant select, insert, update, delete on ${tables} to ${sql.identifier(role)}`);
  return role;
}

export const tablePrivileges = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as const;

/**
 * Exactly what the app role may do to each table (DESIGN "Row-level security"): read the catalogue and the
 * revision history (written by triggers, as the owner's writes); read and write the caller's own personal rows,
 * deletes included (forgetMyViews); never TRUNCATE, REFERENCES or TRIGGER anywhere.
 */
export const expectedAppPrivileges: Record<RlsTable, string[]> = {
  tenants: ['SELECT'],
  users: ['SELECT'],
  skills: ['SELECT'],
  skill_versions: ['SELECT'],
  skill_feedback: ['SELECT'],
  skill_revisions: ['SELECT'],
  user_skill_views: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
  user_tracking_preferences: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
};

/** The privileges `role` holds on each table (directly, through PUBLIC or through roles it inherits). */
export async function tablePrivilegesOf(db: Executor, role: string): Promise<Record<RlsTable, string[]>> {
  const result = {} as Record<RlsTable, string[]>;
  for (const table of rlsTables) {
    result[table] = [];
    for (const privilege of tablePrivileges) {
      const [row] = await query<{ has: boolean }>(db, sql`select has_table_privilege(${role}, ${`public.${table}`}, ${privilege}) as has`);
      if (row?.has) result[table].push(privilege);
    }
  }
  return result;
}

export interface VisibleRow {
  tenantId: string;
  /** Only for the personal tables (user_skill_views, user_tracking_preferences). */
  userId: string | null;
}

/** Every row of every table the current role can see, by a query with no tenant filter at all. */
export async function visibleRows(tx: Executor): Promise<Record<RlsTable, VisibleRow[]>> {
  const result = {} as Record<RlsTable, VisibleRow[]>;
  for (const table of rlsTables) {
    const tenantColumn = table === 'tenants' ? sql`id` : sql`tenant_id`;
    const userColumn = isPersonal(table) ? sql`user_id::text` : sql`null::text`;
    result[table] = await query<VisibleRow>(
      tx,
      sql`select ${tenantColumn}::text as "tenantId", ${userColumn} as "userId" from ${sql.identifier(table)}`,
    );
  }
  return result;
}

/** Row counts of every table as seen in `scope`. */
export async function visibleCounts(tx: Executor, scope: TenantScope): Promise<Record<RlsTable, number>> {
  await enterScope(tx, scope);
  const rows = await visibleRows(tx);
  return Object.fromEntries(rlsTables.map((t) => [t, rows[t].length])) as Record<RlsTable, number>;
}

/** What a write attempt did: rejected by a policy, touched N rows, or failed with another SQLSTATE. */
export type Outcome = 'rls-violation' | `rows:${number}` | `error:${string}`;

/** Runs one write (`... returning 1`) in a savepoint under `scope`. A failed write rolls back to the savepoint; a successful one stays. */
export async function attemptWrite(tx: Transaction, scope: TenantScope, statement: SQL): Promise<Outcome> {
  try {
    return await tx.transaction(async (sp) => {
      await enterScope(sp, scope);
      const rows = await query(sp, statement);
      return `rows:${rows.length}` as const;
    });
  } catch (err) {
    if (isRlsViolation(err)) return 'rls-violation';
    const info = pgError(err);
    if (info) return `error:${info.code} ${info.message}`;
    throw err;
  }
}

/** Rows owned by a tenant: where a write would land. */
export interface WriteTarget {
  tenantId: string;
  /** A user of that tenant, and a skill of that tenant the user has not viewed. */
  userId: string;
  skillId: string;
  unviewedSkillId: string;
}

export interface WriteAttempt {
  table: RlsTable;
  action: 'insert' | 'update' | 'delete';
  statement: SQL;
}

/** Inserts into, updates and deletes `target`'s rows in every catalogue table; each statement returns one row per row written. */
export function catalogueWrites(target: WriteTarget): WriteAttempt[] {
  const t = sql`${target.tenantId}::uuid`;
  const uid = randomUUID();
  const inserts: Record<CatalogueTable, SQL> = {
    // A tenants row "belongs" to the tenant it is; a new id is a tenant other than the caller's.
    tenants: sql`insert into tenants (id, name, slug) values (${uid}::uuid, 'intruder', ${`intruder-${uid}`}) returning 1`,
    users: sql`insert into users (tenant_id, email, name) values (${t}, ${`intruder-${uid}@test`}, 'intruder') returning 1`,
    skills: sql`insert into skills (tenant_id, name, slug, category, status) values (${t}, 'intruder', ${`intruder-${uid}`}, 'x', 'published') returning 1`,
    skill_versions: sql`insert into skill_versions (tenant_id, skill_id, version, name) values (${t}, ${target.skillId}::uuid, 1000, 'intruder') returning 1`,
    skill_feedback: sql`insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment) values (${t}, ${target.skillId}::uuid, null, 'comment', 'intruder') returning 1`,
    skill_revisions: sql`insert into skill_revisions (tenant_id, skill_id, revision, name, description) values (${t}, ${target.skillId}::uuid, 1000, 'intruder', 'intruder') returning 1`,
  };
  const updates: Record<CatalogueTable, SQL> = {
    tenants: sql`update tenants set name = 'pwned' where id = ${t} returning 1`,
    users: sql`update users set name = 'pwned' where tenant_id = ${t} returning 1`,
    // Not a content column: a rename would also make the revision trigger write skill_revisions, whose own policy
    // would then hide a broken skills policy.
    skills: sql`update skills set category = 'pwned' where tenant_id = ${t} returning 1`,
    skill_versions: sql`update skill_versions set name = 'pwned' where tenant_id = ${t} returning 1`,
    skill_feedback: sql`update skill_feedback set comment = 'pwned' where tenant_id = ${t} returning 1`,
    skill_revisions: sql`update skill_revisions set name = 'pwned' where tenant_id = ${t} returning 1`,
  };
  return catalogueTables.flatMap((table) => {
    const key = table === 'tenants' ? sql`id` : sql`tenant_id`;
    return [
      { table, action: 'insert' as const, statement: inserts[table] },
      { table, action: 'update' as const, statement: updates[table] },
      { table, action: 'delete' as const, statement: sql`delete from ${sql.identifier(table)} where ${key} = ${t} returning 1` },
    ];
  });
}

/**
 * The writes the app role is granted on the personal tables (insert, update, delete), aimed at `target`'s user.
 * The preference "insert" is setTracking's upsert, so it would take over an existing row if a policy let it.
 */
export function personalWrites(target: WriteTarget): WriteAttempt[] {
  const t = sql`${target.tenantId}::uuid`;
  const u = sql`${target.userId}::uuid`;
  const inserts: Record<PersonalTable, SQL> = {
    user_skill_views: sql`insert into user_skill_views (tenant_id, user_id, skill_id) values (${t}, ${u}, ${target.unviewedSkillId}::uuid) returning 1`,
    user_tracking_preferences: sql`insert into user_tracking_preferences (tenant_id, user_id, tracking_enabled) values (${t}, ${u}, true)
      on conflict (tenant_id, user_id) do update set tracking_enabled = excluded.tracking_enabled, updated_at = now() returning 1`,
  };
  const updates: Record<PersonalTable, SQL> = {
    user_skill_views: sql`update user_skill_views set view_count = view_count + 100 where tenant_id = ${t} and user_id = ${u} returning 1`,
    user_tracking_preferences: sql`update user_tracking_preferences set tracking_enabled = not tracking_enabled where tenant_id = ${t} and user_id = ${u} returning 1`,
  };
  return personalTables.flatMap((table) => [
    { table, action: 'insert' as const, statement: inserts[table] },
    { table, action: 'update' as const, statement: updates[table] },
    {
      table,
      action: 'delete' as const,
      statement: sql`delete from ${sql.identifier(table)} where tenant_id = ${t} and user_id = ${u} returning 1`,
    },
  ]);
}

/** A digest of a tenant's rows in every table (or of one user's rows in the personal tables), read as the login role. */
export async function fingerprint(tx: Executor, tenantId: string, userId?: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  const tables = userId ? personalTables : rlsTables;
  for (const table of tables) {
    const key = table === 'tenants' ? sql`id` : sql`tenant_id`;
    const byUser = userId ? sql`and user_id = ${userId}::uuid` : sql``;
    const [row] = await query<{ n: unknown; h: string | null }>(
      tx,
      sql`select count(*) as n, md5(string_agg(r::text, ',' order by r::text)) as h
          from ${sql.identifier(table)} r where ${key} = ${tenantId}::uuid ${byUser}`,
    );
    result[table] = `${String(row?.n)}:${row?.h ?? ''}`;
  }
  return result;
}

/**
 * Two tenants with the same shape: users 0 and 1; skills alpha (2 versions) and beta, with their content
 * revisions (written by the triggers); feedback on alpha from both users; user 0 viewed alpha and beta, user 1
 * only alpha; both users have a tracking preference (user 0 on, user 1 off).
 */
export interface IsolationPair {
  a: TenantFixture;
  b: TenantFixture;
}

export async function seedIsolationPair(db: Database): Promise<IsolationPair> {
  const seedOne = async () => {
    const t = await createTenant(db, { skills: [skillSpec('alpha', { versionCount: 2 }), skillSpec('beta')] });
    const [u0, u1] = t.userIds as [string, string];
    const { alpha, beta } = t.skills as { alpha: string; beta: string };
    for (const userId of [u0, u1]) await insertFeedback(db, t, { skillId: alpha, userId, createdAt: daysAgo(1) });
    await insertView(db, t, { userId: u0, skillId: alpha, lastViewedAt: daysAgo(2), lastViewedVersion: 2 });
    await insertView(db, t, { userId: u0, skillId: beta, lastViewedAt: daysAgo(2), lastViewedVersion: 1 });
    await insertView(db, t, { userId: u1, skillId: alpha, lastViewedAt: daysAgo(2), lastViewedVersion: 2 });
    await asOwnerInTenant(db, t.tenantId, (tx) =>
      tx.insert(userTrackingPreferences).values([
        { tenantId: t.tenantId, userId: u0, trackingEnabled: true },
        { tenantId: t.tenantId, userId: u1, trackingEnabled: false },
      ]),
    );
    return t;
  };
  return { a: await seedOne(), b: await seedOne() };
}

/** Rows a pair's tenant A shows its user 0 when isolation holds. */
export const expectedOwnRows: Record<RlsTable, number> = {
  tenants: 1,
  users: 2,
  skills: 2,
  skill_versions: 3,
  skill_feedback: 2,
  user_skill_views: 2,
  // alpha: inserted (1), then its published version set (2); beta: inserted (1), published (2).
  skill_revisions: 4,
  user_tracking_preferences: 1,
};

export interface IsolationReport {
  /** What user 0 of tenant A sees with queries that have no tenant filter. */
  reads: Record<RlsTable, { own: number; otherTenants: number; tenantB: number; otherUsers: number }>;
  /** Writes aimed at tenant B (and, for view rows, at A's user 1), and moves of A's rows into B. */
  writes: { table: RlsTable; action: string; target: 'tenant B' | 'user A1' | 'move to B' | 'move to A1'; outcome: Outcome }[];
  /** Rows of tenant B, or of A's user 1, that differ after the writes (before the rollback). */
  changed: string[];
  /** Everything above that breaks isolation, in words; empty when isolation holds. */
  leaks: string[];
}

/**
 * The tenant isolation check. In one transaction that always rolls back: applies `breakage` (DDL as the
 * login role, for the broken-policy suite), then, acting as user 0 of tenant A, reads every table
 * without a tenant filter (app role, with `skillviews.maintenance` set to 'retention' as an attacker could),
 * tries to write tenant B's rows and A's user 1's personal rows
 * (throwaway writer for the catalogue tables, the app role for the personal tables, whose writes it is
 * granted), and compares B's rows and A1's personal rows before and after.
 */
export async function isolationReport(
  db: Database,
  { a, b }: IsolationPair,
  breakage?: (tx: Transaction) => Promise<unknown>,
): Promise<IsolationReport> {
  const viewer = a.userIds[0]!;
  const peer = a.userIds[1]!;
  const appScope: TenantScope = { role: APP_ROLE, tenantId: a.tenantId, userId: viewer };
  return rollingBack(db, async (tx) => {
    if (breakage) await breakage(tx);
    // What a hand-written statement in a request could do: claim to be the owner's retention job. Only the owner's
    // privileges make that count (skillviews_owner_maintenance()), so the checks below must hold all the same.
    await tx.execute(sql`select set_config('skillviews.maintenance', 'retention', true)`);
    const writer = await createThrowawayWriter(tx);
    const writerScope: TenantScope = { ...appScope, role: writer };
    const before = { b: await fingerprint(tx, b.tenantId), peer: await fingerprint(tx, a.tenantId, peer) };

    await enterScope(tx, appScope);
    const rows = await visibleRows(tx);
    const reads = {} as IsolationReport['reads'];
    for (const table of rlsTables) {
      const seen = rows[table];
      reads[table] = {
        own: seen.filter((r) => r.tenantId === a.tenantId && (r.userId === null || r.userId === viewer)).length,
        otherTenants: seen.filter((r) => r.tenantId !== a.tenantId).length,
        tenantB: seen.filter((r) => r.tenantId === b.tenantId).length,
        otherUsers: seen.filter((r) => r.tenantId === a.tenantId && r.userId !== null && r.userId !== viewer).length,
      };
    }

    const bTarget: WriteTarget = { tenantId: b.tenantId, userId: b.userIds[1]!, skillId: b.skills.alpha!, unviewedSkillId: b.skills.beta! };
    const peerTarget: WriteTarget = { tenantId: a.tenantId, userId: peer, skillId: a.skills.alpha!, unviewedSkillId: a.skills.beta! };
    const writes: IsolationReport['writes'] = [];
    const attempt = async (target: IsolationReport['writes'][number]['target'], scope: TenantScope, w: WriteAttempt) =>
      writes.push({ table: w.table, action: w.action, target, outcome: await attemptWrite(tx, scope, w.statement) });
    // Updates and inserts first: a leaking delete (tenants cascades) would leave nothing to update.
    const bCatalogue = catalogueWrites(bTarget);
    const bPersonal = personalWrites(bTarget);
    const peerPersonal = personalWrites(peerTarget);
    for (const w of bCatalogue.filter((x) => x.action !== 'delete')) await attempt('tenant B', writerScope, w);
    for (const w of bPersonal.filter((x) => x.action !== 'delete')) await attempt('tenant B', appScope, w);
    for (const w of peerPersonal.filter((x) => x.action !== 'delete')) await attempt('user A1', appScope, w);
    const aId = sql`${a.tenantId}::uuid`;
    const bId = sql`${b.tenantId}::uuid`;
    const move = (target: 'move to B' | 'move to A1', scope: TenantScope, table: RlsTable, statement: SQL) =>
      attempt(target, scope, { table, action: 'update', statement });
    await move('move to B', writerScope, 'skill_feedback',
      sql`update skill_feedback set tenant_id = ${bId}, skill_id = ${b.skills.alpha!}::uuid where tenant_id = ${aId} returning 1`);
    await move('move to B', writerScope, 'skill_revisions',
      sql`update skill_revisions set tenant_id = ${bId}, skill_id = ${b.skills.alpha!}::uuid, revision = revision + 1000
          where tenant_id = ${aId} and skill_id = ${a.skills.alpha!}::uuid returning 1`);
    await move('move to B', appScope, 'user_skill_views',
      sql`update user_skill_views set tenant_id = ${bId}, user_id = ${b.userIds[1]!}::uuid, skill_id = ${b.skills.beta!}::uuid
          where tenant_id = ${aId} and user_id = ${viewer}::uuid and skill_id = ${a.skills.beta!}::uuid returning 1`);
    await move('move to A1', appScope, 'user_skill_views',
      sql`update user_skill_views set user_id = ${peer}::uuid where tenant_id = ${aId} and user_id = ${viewer}::uuid and skill_id = ${a.skills.beta!}::uuid returning 1`);
    // Both targets already have a preference: were a policy to let these through, the primary key would stop them
    // (23505, which the tests reject too); the reads report such a broken policy in words.
    await move('move to B', appScope, 'user_tracking_preferences',
      sql`update user_tracking_preferences set tenant_id = ${bId}, user_id = ${b.userIds[1]!}::uuid where tenant_id = ${aId} and user_id = ${viewer}::uuid returning 1`);
    await move('move to A1', appScope, 'user_tracking_preferences',
      sql`update user_tracking_preferences set user_id = ${peer}::uuid where tenant_id = ${aId} and user_id = ${viewer}::uuid returning 1`);
    for (const w of peerPersonal.filter((x) => x.action === 'delete')) await attempt('user A1', appScope, w);
    for (const w of bPersonal.filter((x) => x.action === 'delete')) await attempt('tenant B', appScope, w);
    for (const w of bCatalogue.filter((x) => x.action === 'delete').reverse()) await attempt('tenant B', writerScope, w);

    await asLoginRole(tx);
    const after = { b: await fingerprint(tx, b.tenantId), peer: await fingerprint(tx, a.tenantId, peer) };
    const changed = [
      ...Object.keys(before.b).filter((t) => before.b[t] !== after.b[t]).map((t) => `${t} of tenant B`),
      ...personalTables.filter((t) => before.peer[t] !== after.peer[t]).map((t) => `${t} of user A1`),
    ];

    const leaks = [
      ...rlsTables.flatMap((t) => (reads[t].otherTenants > 0 ? [`${t}: sees ${reads[t].otherTenants} row(s) of other tenants`] : [])),
      ...rlsTables.flatMap((t) => (reads[t].otherUsers > 0 ? [`${t}: sees ${reads[t].otherUsers} row(s) of other users`] : [])),
      ...writes.filter((w) => /^rows:[1-9]/.test(w.outcome)).map((w) => `${w.table}: ${w.action} (${w.target}) wrote ${w.outcome}`),
      ...changed.map((c) => `changed ${c}`),
    ];
    return { reads, writes, changed, leaks };
  });
}
