// Without a tenant (empty or absent settings) the app role reads nothing and writes nothing, and no request's scope outlives it.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, DbHandle, Executor } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { personalTables, rlsTables, skillFeedback, userSkillViews, userTrackingPreferences } from '../db/schema/index.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, countAll, createTenant, daysAgo, skillSpec } from './support/factory.ts';
import { expectRlsViolation } from './support/pg-error.ts';
import {
  attemptWrite,
  catalogueWrites,
  createThrowawayWriter,
  expectedOwnRows,
  fingerprint,
  personalWrites,
  rollingBack,
  seedIsolationPair,
  visibleCounts,
  visibleRows,
  type IsolationPair,
  type RlsTable,
  type WriteTarget,
} from './support/rls.ts';

const none = Object.fromEntries(rlsTables.map((t) => [t, 0])) as Record<RlsTable, number>;

interface SessionState {
  tenant: string | null;
  user: string | null;
  currentUser: string;
  sessionUser: string;
}

async function sessionState(db: Executor): Promise<SessionState> {
  const [row] = await query<SessionState>(
    db,
    sql`select current_setting('app.current_tenant_id', true) as tenant, current_setting('app.current_user_id', true) as "user",
               current_user::text as "currentUser", session_user::text as "sessionUser"`,
  );
  return row!;
}

/** Switches only the role, leaving app.current_tenant_id and app.current_user_id as they are. */
const roleOnly = (db: Executor) => db.execute(sql`select set_config('role', ${APP_ROLE}, true)`);

async function expectEveryTableHasRows(db: Database) {
  for (const table of rlsTables) expect(await countAll(db, table), table).toBeGreaterThan(0);
}

describe.each(engines)('no tenant context on $name', (engine) => {
  let h: DbHandle;
  let pair: IsolationPair;
  beforeAll(async () => {
    h = await engine.open();
    pair = await seedIsolationPair(h.db);
  });
  afterAll(() => h.close());

  it('with empty tenant and user settings, every table reads empty', async () => {
    await expectEveryTableHasRows(h.db);
    const counts = await h.db.transaction((tx) => visibleCounts(tx, { role: APP_ROLE, tenantId: '', userId: '' }));
    expect(counts).toEqual(none);
  });

  it('with the tenant set but no user, the catalogue is visible and personal rows (views, preferences) are not', async () => {
    const counts = await h.db.transaction((tx) => visibleCounts(tx, { role: APP_ROLE, tenantId: pair.a.tenantId, userId: '' }));
    expect(counts).toEqual({ ...expectedOwnRows, user_skill_views: 0, user_tracking_preferences: 0 });
    const noUser = { role: APP_ROLE, tenantId: pair.a.tenantId, userId: '' };
    await expectRlsViolation(
      withTenantTransaction(h.db, noUser, (tx) =>
        tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id) values (${pair.a.tenantId}::uuid, ${pair.a.userIds[1]!}::uuid, ${pair.a.skills.beta!}::uuid)`),
      ),
    );
    await expectRlsViolation(
      withTenantTransaction(h.db, noUser, (tx) =>
        tx.execute(sql`insert into user_tracking_preferences (tenant_id, user_id, tracking_enabled) values (${pair.a.tenantId}::uuid, ${pair.a.userIds[1]!}::uuid, true)
                       on conflict (tenant_id, user_id) do update set tracking_enabled = true`),
      ),
    );
    // The app role may delete personal rows, but with no user there are none it may reach.
    const deleted = await rollingBack(h.db, async (tx) => {
      await tx.execute(sql`select set_config('role', ${APP_ROLE}, true), set_config('app.current_tenant_id', ${pair.a.tenantId}, true)`);
      return {
        views: (await query(tx, sql`delete from user_skill_views returning 1`)).length,
        preferences: (await query(tx, sql`delete from user_tracking_preferences returning 1`)).length,
      };
    });
    expect(deleted).toEqual({ views: 0, preferences: 0 });
    expect(await countAll(h.db, 'user_tracking_preferences', sql`where tenant_id = ${pair.a.tenantId}::uuid`)).toBe(2);
  });

  it("with empty settings, every write is rejected or touches nothing, and tenant A's rows stay unchanged", async () => {
    const { a } = pair;
    const target: WriteTarget = { tenantId: a.tenantId, userId: a.userIds[1]!, skillId: a.skills.alpha!, unviewedSkillId: a.skills.beta! };
    const before = await fingerprint(h.db, a.tenantId);
    const { outcomes, after } = await rollingBack(h.db, async (tx) => {
      const writer = await createThrowawayWriter(tx);
      const result: string[] = [];
      for (const w of catalogueWrites(target)) {
        result.push(`${w.action} ${w.table}:${await attemptWrite(tx, { role: writer, tenantId: '', userId: '' }, w.statement)}`);
      }
      // The personal tables with the app role itself: it is granted insert, update and delete on them.
      for (const w of personalWrites(target)) {
        result.push(`${w.action} ${w.table}:${await attemptWrite(tx, { role: APP_ROLE, tenantId: '', userId: '' }, w.statement)}`);
      }
      await tx.execute(sql`select set_config('role', 'none', true)`);
      return { outcomes: result, after: await fingerprint(tx, a.tenantId) };
    });
    expect(outcomes.sort()).toEqual(
      [
        ...rlsTables.map((t) => `insert ${t}:rls-violation`),
        ...rlsTables.map((t) => `update ${t}:rows:0`),
        ...rlsTables.map((t) => `delete ${t}:rows:0`),
      ].sort(),
    );
    expect(after).toEqual(before);
  });

  it('on a fresh connection the settings are absent (NULL), and with only the role switched every table reads empty and writes fail', async () => {
    const fresh = await engine.open({ poolSize: 1 });
    try {
      // Seed through this same connection without ever setting app.* (the superuser login bypasses RLS).
      const t = await createTenant(fresh.db, { skills: [skillSpec('alpha')], setTenant: false });
      const [userId] = t.userIds as [string];
      const skillId = t.skills.alpha!;
      await fresh.db.insert(skillFeedback).values({ tenantId: t.tenantId, skillId, userId, feedbackType: 'comment', createdAt: daysAgo(1) });
      await fresh.db.insert(userSkillViews).values({ tenantId: t.tenantId, userId, skillId, lastViewedVersion: 1 });
      await fresh.db.insert(userTrackingPreferences).values({ tenantId: t.tenantId, userId, trackingEnabled: false });
      await expectEveryTableHasRows(fresh.db);

      await fresh.db.transaction(async (tx) => {
        const state = await sessionState(tx);
        expect(state.tenant).toBeNull();
        expect(state.user).toBeNull();
        await roleOnly(tx);
        expect((await sessionState(tx)).currentUser).toBe(APP_ROLE);
        const rows = await visibleRows(tx);
        for (const table of rlsTables) expect(rows[table], table).toEqual([]);
        for (const table of personalTables) {
          expect(await query(tx, sql`delete from ${sql.identifier(table)} returning 1`), `delete from ${table}`).toEqual([]);
        }
      });
      for (const table of personalTables) {
        expect(await countAll(fresh.db, table, sql`where tenant_id = ${t.tenantId}::uuid`), table).toBe(1);
      }
      await expectRlsViolation(
        fresh.db.transaction(async (tx) => {
          await roleOnly(tx);
          await tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id) values (${t.tenantId}::uuid, ${userId}::uuid, ${skillId}::uuid)`);
        }),
      );
      await expectRlsViolation(
        fresh.db.transaction(async (tx) => {
          await roleOnly(tx);
          await tx.execute(sql`insert into user_tracking_preferences (tenant_id, user_id, tracking_enabled) values (${t.tenantId}::uuid, ${userId}::uuid, true)`);
        }),
      );
    } finally {
      await fresh.close();
    }
  });

  describe('a pooled connection that just served a tenant', () => {
    let pooled: DbHandle;
    let p: IsolationPair;
    beforeAll(async () => {
      // One connection, so every transaction below reuses the one the tenant transaction ran on.
      pooled = await engine.open({ poolSize: 1 });
      p = await seedIsolationPair(pooled.db);
    });
    afterAll(() => pooled.close());

    const scopeOfA = () => ({ role: APP_ROLE, tenantId: p.a.tenantId, userId: p.a.userIds[0]! });

    async function expectClean() {
      await pooled.db.transaction(async (tx) => {
        const state = await sessionState(tx);
        expect(state.tenant ?? '').toBe('');
        expect(state.user ?? '').toBe('');
        expect(state.currentUser).toBe(state.sessionUser);
        expect(state.currentUser).not.toBe(APP_ROLE);
        await roleOnly(tx);
        const rows = await visibleRows(tx);
        for (const table of rlsTables) expect(rows[table], table).toEqual([]);
      });
      // Outside any transaction too.
      const state = await sessionState(pooled.db);
      expect([state.tenant ?? '', state.user ?? '', state.currentUser]).toEqual(['', '', state.sessionUser]);
    }

    it('after a committed tenant transaction, the next one starts with no tenant, no user and the login role', async () => {
      const seen = await withTenantTransaction(pooled.db, scopeOfA(), async (tx) => ({
        state: await sessionState(tx),
        rows: await visibleRows(tx),
      }));
      // The tenant transaction really was scoped (so "clean" below is not vacuous).
      expect(seen.state).toMatchObject({ tenant: p.a.tenantId, user: p.a.userIds[0], currentUser: APP_ROLE });
      for (const table of rlsTables) expect(seen.rows[table], table).toHaveLength(expectedOwnRows[table]);
      await expectClean();
    });

    it('after a tenant transaction that failed and rolled back, the same holds', async () => {
      await expect(
        withTenantTransaction(pooled.db, scopeOfA(), async (tx) => {
          await tx.execute(sql`select 1`);
          throw new Error('procedure failed');
        }),
      ).rejects.toThrow('procedure failed');
      await expectClean();
      await expect(
        withTenantTransaction(pooled.db, scopeOfA(), (tx) => tx.execute(sql`select 1 / 0`)),
      ).rejects.toThrow();
      await expectClean();
    });
  });
});
