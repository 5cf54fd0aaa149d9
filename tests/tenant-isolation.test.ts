// Tenant isolation by RLS: inside tenant A nothing of tenant B can be read or written, and view rows and tracking preferences are personal.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { personalTables, rlsTables } from '../db/schema/index.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE } from './support/factory.ts';
import { expectRlsViolation } from './support/pg-error.ts';
import {
  attemptWrite,
  catalogueWrites,
  createThrowawayWriter,
  expectedOwnRows,
  fingerprint,
  isolationReport,
  personalWrites,
  rollingBack,
  seedIsolationPair,
  type IsolationPair,
  type IsolationReport,
} from './support/rls.ts';

describe.each(engines)('tenant isolation on $name', (engine) => {
  let h: DbHandle;
  let pair: IsolationPair;
  let report: IsolationReport;
  beforeAll(async () => {
    h = await engine.open();
    pair = await seedIsolationPair(h.db);
    report = await isolationReport(h.db, pair);
  });
  afterAll(() => h.close());

  it('the isolation check finds no leak', () => {
    expect(report.leaks).toEqual([]);
  });

  it("reads with no tenant filter return exactly tenant A's rows in every table, and only the user's own personal rows", () => {
    for (const table of rlsTables) {
      expect(report.reads[table], table).toEqual({ own: expectedOwnRows[table], otherTenants: 0, tenantB: 0, otherUsers: 0 });
    }
  });

  it('tenant B has rows in every table (the isolation check is not vacuous)', async () => {
    const b = await fingerprint(h.db, pair.b.tenantId);
    for (const table of rlsTables) expect(b[table], table).toMatch(/^[1-9]\d*:/);
  });

  it("inserting rows with tenant B's id is rejected by RLS in every table", () => {
    const inserts = report.writes.filter((w) => w.action === 'insert' && w.target === 'tenant B');
    expect(inserts.map((w) => w.table).sort()).toEqual([...rlsTables].sort());
    for (const w of inserts) expect(w.outcome, w.table).toBe('rls-violation');
  });

  it("updating or deleting tenant B's rows touches no row in any table, and B's rows are unchanged", () => {
    const writes = report.writes.filter((w) => w.action !== 'insert' && w.target === 'tenant B');
    expect(writes.filter((w) => w.action === 'update').map((w) => w.table).sort()).toEqual([...rlsTables].sort());
    expect(writes.filter((w) => w.action === 'delete').map((w) => w.table).sort()).toEqual([...rlsTables].sort());
    for (const w of writes) expect(w.outcome, `${w.action} ${w.table}`).toBe('rows:0');
    expect(report.changed).toEqual([]);
  });

  it("moving tenant A's rows into tenant B is rejected by RLS", () => {
    const moves = report.writes.filter((w) => w.target === 'move to B');
    expect(moves.map((w) => w.table).sort()).toEqual(['skill_feedback', 'skill_revisions', 'user_skill_views', 'user_tracking_preferences']);
    for (const w of moves) expect(w.outcome, w.table).toBe('rls-violation');
  });

  it("user A0 cannot insert, update, delete or take over user A1's views or tracking preference in the same tenant", () => {
    const peer = report.writes.filter((w) => w.target === 'user A1' || w.target === 'move to A1');
    expect(peer.map((w) => `${w.target} ${w.table} ${w.action}:${w.outcome}`).sort()).toEqual(
      personalTables
        .flatMap((t) => [
          `move to A1 ${t} update:rls-violation`,
          `user A1 ${t} delete:rows:0`,
          // For the preference: setTracking's upsert, whose existing row A0 may not take over either.
          `user A1 ${t} insert:rls-violation`,
          `user A1 ${t} update:rows:0`,
        ])
        .sort(),
    );
  });

  it("user A1's personal rows exist (the checks above are not vacuous)", async () => {
    const peer = await fingerprint(h.db, pair.a.tenantId, pair.a.userIds[1]!);
    for (const table of personalTables) expect(peer[table], table).toMatch(/^[1-9]\d*:/);
  });

  it("the throwaway writer can write its own tenant's rows, so the rejections above come from policies, not grants", async () => {
    const { a } = pair;
    const own = { tenantId: a.tenantId, userId: a.userIds[0]!, skillId: a.skills.alpha!, unviewedSkillId: a.skills.beta! };
    const outcomes = await rollingBack(h.db, async (tx) => {
      const writer = await createThrowawayWriter(tx);
      const scope = { role: writer, tenantId: a.tenantId, userId: a.userIds[0]! };
      const writes = catalogueWrites(own);
      const order = [
        ...writes.filter((w) => w.action === 'insert' && w.table !== 'tenants'),
        ...writes.filter((w) => w.action === 'update'),
        // Deleting skills cascades to their versions; deleting a published version alone would violate a foreign key.
        ...(['skill_feedback', 'skill_revisions', 'skills', 'users'] as const).map((t) => writes.find((w) => w.action === 'delete' && w.table === t)!),
      ];
      const result: string[] = [];
      for (const w of order) result.push(`${w.action} ${w.table}:${await attemptWrite(tx, scope, w.statement)}`);
      return result;
    });
    expect(outcomes).toEqual([
      'insert users:rows:1',
      'insert skills:rows:1',
      'insert skill_versions:rows:1',
      'insert skill_feedback:rows:1',
      'insert skill_revisions:rows:1',
      'update tenants:rows:1',
      'update users:rows:3',
      'update skills:rows:3',
      'update skill_versions:rows:4',
      'update skill_feedback:rows:3',
      // 4 seeded + 1 by the trigger for the inserted skill + the inserted one.
      'update skill_revisions:rows:6',
      'delete skill_feedback:rows:3',
      'delete skill_revisions:rows:6',
      'delete skills:rows:3',
      'delete users:rows:3',
    ]);
  });

  it("the application role can write the user's own personal rows, so the rejections above come from policies, not grants", async () => {
    const { a } = pair;
    const own = { tenantId: a.tenantId, userId: a.userIds[0]!, skillId: a.skills.alpha!, unviewedSkillId: a.skills.beta! };
    const outcomes = await rollingBack(h.db, async (tx) => {
      const scope = { role: APP_ROLE, tenantId: a.tenantId, userId: a.userIds[0]! };
      // User 0 has viewed both skills: make beta unviewed, so the insert has a row to add.
      await tx.execute(sql`delete from user_skill_views where tenant_id = ${a.tenantId}::uuid and user_id = ${own.userId}::uuid and skill_id = ${own.unviewedSkillId}::uuid`);
      const result: string[] = [];
      for (const w of personalWrites(own)) result.push(`${w.action} ${w.table}:${await attemptWrite(tx, scope, w.statement)}`);
      return result;
    });
    expect(outcomes).toEqual([
      'insert user_skill_views:rows:1',
      'update user_skill_views:rows:2',
      'delete user_skill_views:rows:2',
      'insert user_tracking_preferences:rows:1',
      'update user_tracking_preferences:rows:1',
      'delete user_tracking_preferences:rows:1',
    ]);
  });

  describe('with the application role, committed', () => {
    it("updates aimed at tenant B's or user A1's views and preferences touch nothing, and the rows stay as they were", async () => {
      const { a, b } = pair;
      const scope = { role: APP_ROLE, tenantId: a.tenantId, userId: a.userIds[0]! };
      const beforeB = await fingerprint(h.db, b.tenantId);
      const beforePeer = await fingerprint(h.db, a.tenantId, a.userIds[1]!);
      const touched = await withTenantTransaction(h.db, scope, async (tx) => ({
        b: await query(tx, sql`update user_skill_views set view_count = view_count + 1 where tenant_id = ${b.tenantId}::uuid returning 1`),
        peer: await query(tx, sql`update user_skill_views set view_count = view_count + 1 where user_id = ${a.userIds[1]!}::uuid returning 1`),
        all: await query(tx, sql`update user_skill_views set view_count = view_count + 1 returning user_id::text as "userId"`),
        preferenceB: await query(tx, sql`update user_tracking_preferences set tracking_enabled = true where tenant_id = ${b.tenantId}::uuid returning 1`),
        preferencePeer: await query(tx, sql`update user_tracking_preferences set tracking_enabled = true where user_id = ${a.userIds[1]!}::uuid returning 1`),
        preferenceAll: await query(tx, sql`update user_tracking_preferences set updated_at = now() returning user_id::text as "userId"`),
      }));
      expect(touched.b).toHaveLength(0);
      expect(touched.peer).toHaveLength(0);
      expect(touched.preferenceB).toHaveLength(0);
      expect(touched.preferencePeer).toHaveLength(0);
      // An unfiltered update reaches exactly the caller's own rows: two views, one preference.
      expect(touched.all).toEqual([{ userId: a.userIds[0] }, { userId: a.userIds[0] }]);
      expect(touched.preferenceAll).toEqual([{ userId: a.userIds[0] }]);
      expect(await fingerprint(h.db, b.tenantId)).toEqual(beforeB);
      expect(await fingerprint(h.db, a.tenantId, a.userIds[1]!)).toEqual(beforePeer);
    });

    it("inserting a view row for user A1 or for tenant B fails with 42501 and leaves no row", async () => {
      const { a, b } = pair;
      const scope = { role: APP_ROLE, tenantId: a.tenantId, userId: a.userIds[0]! };
      const beforePeer = await fingerprint(h.db, a.tenantId, a.userIds[1]!);
      const beforeB = await fingerprint(h.db, b.tenantId);
      await expectRlsViolation(
        withTenantTransaction(h.db, scope, (tx) =>
          tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id) values (${a.tenantId}::uuid, ${a.userIds[1]!}::uuid, ${a.skills.beta!}::uuid)`),
        ),
      );
      await expectRlsViolation(
        withTenantTransaction(h.db, scope, (tx) =>
          tx.execute(sql`insert into user_skill_views (tenant_id, user_id, skill_id) values (${b.tenantId}::uuid, ${b.userIds[1]!}::uuid, ${b.skills.beta!}::uuid)`),
        ),
      );
      expect(await fingerprint(h.db, a.tenantId, a.userIds[1]!)).toEqual(beforePeer);
      expect(await fingerprint(h.db, b.tenantId)).toEqual(beforeB);
    });

    it('each user of a tenant sees only their own view rows and their own tracking preference', async () => {
      const { a } = pair;
      for (const [userId, expected, enabled] of [
        [a.userIds[0]!, [a.skills.alpha!, a.skills.beta!].sort(), true],
        [a.userIds[1]!, [a.skills.alpha!], false],
      ] as const) {
        const { views, preferences } = await withTenantTransaction(h.db, { role: APP_ROLE, tenantId: a.tenantId, userId }, async (tx) => ({
          views: await query<{ userId: string; skillId: string }>(tx, sql`select user_id::text as "userId", skill_id::text as "skillId" from user_skill_views`),
          preferences: await query<{ userId: string; enabled: boolean }>(
            tx,
            sql`select user_id::text as "userId", tracking_enabled as enabled from user_tracking_preferences`,
          ),
        }));
        expect(views.every((r) => r.userId === userId)).toBe(true);
        expect(views.map((r) => r.skillId).sort()).toEqual(expected);
        expect(preferences).toEqual([{ userId, enabled }]);
      }
    });

    it("deletes aimed at tenant B's or user A1's personal rows delete nothing, and the rows stay as they were", async () => {
      const { a, b } = pair;
      const scope = { role: APP_ROLE, tenantId: a.tenantId, userId: a.userIds[0]! };
      const beforeB = await fingerprint(h.db, b.tenantId);
      const beforePeer = await fingerprint(h.db, a.tenantId, a.userIds[1]!);
      const deleted = await withTenantTransaction(h.db, scope, async (tx) => {
        const result: Record<string, number> = {};
        for (const table of personalTables) {
          const t = sql.identifier(table);
          result[`${table} of B`] = (await query(tx, sql`delete from ${t} where tenant_id = ${b.tenantId}::uuid returning 1`)).length;
          result[`${table} of A1`] = (await query(tx, sql`delete from ${t} where user_id = ${a.userIds[1]!}::uuid returning 1`)).length;
        }
        return result;
      });
      expect(Object.values(deleted)).toEqual(personalTables.flatMap(() => [0, 0]));
      expect(await fingerprint(h.db, b.tenantId)).toEqual(beforeB);
      expect(await fingerprint(h.db, a.tenantId, a.userIds[1]!)).toEqual(beforePeer);
    });
  });
});
