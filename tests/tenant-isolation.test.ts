// Tenant isolation by RLS: inside tenant A nothing of tenant B can be read or written, and view rows are personal.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { rlsTables } from '../db/schema/index.ts';
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

  it("reads with no tenant filter return exactly tenant A's rows in every table, and only the user's own views", () => {
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
    expect(moves).toHaveLength(2);
    for (const w of moves) expect(w.outcome, w.table).toBe('rls-violation');
  });

  it("user A0 cannot insert, update, delete or take over user A1's view rows in the same tenant", () => {
    const peer = report.writes.filter((w) => w.target === 'user A1' || w.target === 'move to A1');
    expect(peer.map((w) => `${w.target} ${w.action}:${w.outcome}`).sort()).toEqual([
      'move to A1 update:rls-violation',
      'user A1 delete:rows:0',
      'user A1 insert:rls-violation',
      'user A1 update:rows:0',
    ]);
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
        ...(['skill_feedback', 'skills', 'users'] as const).map((t) => writes.find((w) => w.action === 'delete' && w.table === t)!),
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
      'update tenants:rows:1',
      'update users:rows:3',
      'update skills:rows:3',
      'update skill_versions:rows:4',
      'update skill_feedback:rows:3',
      'delete skill_feedback:rows:3',
      'delete skills:rows:3',
      'delete users:rows:3',
    ]);
  });

  describe('with the application role, committed', () => {
    it("updates aimed at tenant B's or user A1's view rows touch nothing, and the rows stay as they were", async () => {
      const { a, b } = pair;
      const scope = { role: APP_ROLE, tenantId: a.tenantId, userId: a.userIds[0]! };
      const beforeB = await fingerprint(h.db, b.tenantId);
      const beforePeer = await fingerprint(h.db, a.tenantId, a.userIds[1]!);
      const touched = await withTenantTransaction(h.db, scope, async (tx) => ({
        b: await query(tx, sql`update user_skill_views set view_count = view_count + 1 where tenant_id = ${b.tenantId}::uuid returning 1`),
        peer: await query(tx, sql`update user_skill_views set view_count = view_count + 1 where user_id = ${a.userIds[1]!}::uuid returning 1`),
        all: await query(tx, sql`update user_skill_views set view_count = view_count + 1 returning user_id::text as "userId"`),
      }));
      expect(touched.b).toHaveLength(0);
      expect(touched.peer).toHaveLength(0);
      // An unfiltered update reaches exactly the caller's own two rows.
      expect(touched.all).toEqual([{ userId: a.userIds[0] }, { userId: a.userIds[0] }]);
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

    it('each user of a tenant sees only their own view rows', async () => {
      const { a } = pair;
      for (const [userId, expected] of [
        [a.userIds[0]!, [a.skills.alpha!, a.skills.beta!].sort()],
        [a.userIds[1]!, [a.skills.alpha!]],
      ] as const) {
        const rows = await withTenantTransaction(h.db, { role: APP_ROLE, tenantId: a.tenantId, userId }, (tx) =>
          query<{ userId: string; skillId: string }>(tx, sql`select user_id::text as "userId", skill_id::text as "skillId" from user_skill_views`),
        );
        expect(rows.every((r) => r.userId === userId)).toBe(true);
        expect(rows.map((r) => r.skillId).sort()).toEqual(expected);
      }
    });
  });
});
