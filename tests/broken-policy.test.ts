// The isolation check catches broken policies: with a policy loosened (DDL rolled back afterwards) it reports the leak.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle, Transaction } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { engines } from './support/engines.ts';
import { isolationReport, seedIsolationPair, type IsolationPair } from './support/rls.ts';

interface Breakage {
  name: string;
  ddl: (tx: Transaction) => Promise<unknown>;
  /** A leak the check must report, matched against its `leaks` lines. */
  expectLeak: RegExp;
}

const breakages: Breakage[] = [
  {
    name: 'skills tenant policy replaced by USING (true) WITH CHECK (true)',
    ddl: async (tx) => {
      await tx.execute(sql`drop policy "rows are visible only inside their own tenant" on skills`);
      await tx.execute(sql`create policy leak on skills using (true) with check (true)`);
    },
    expectLeak: /^skills: sees \d+ row\(s\) of other tenants$/,
  },
  {
    name: 'restrictive personal policy on user_skill_views replaced by USING (true)',
    ddl: async (tx) => {
      await tx.execute(sql`drop policy "a user sees only their own views" on user_skill_views`);
      await tx.execute(sql`create policy leak on user_skill_views as restrictive using (true) with check (true)`);
    },
    expectLeak: /^user_skill_views: sees 1 row\(s\) of other users$/,
  },
  {
    name: 'row-level security disabled on users',
    ddl: (tx) => tx.execute(sql`alter table users disable row level security`),
    expectLeak: /^users: sees \d+ row\(s\) of other tenants$/,
  },
  {
    name: 'tenant policy on skill_feedback checks reads but not writes (WITH CHECK (true))',
    ddl: async (tx) => {
      await tx.execute(sql`drop policy "rows are visible only inside their own tenant" on skill_feedback`);
      await tx.execute(
        sql`create policy leak on skill_feedback using (tenant_id = (select nullif(current_setting('app.current_tenant_id', true), '')::uuid)) with check (true)`,
      );
    },
    expectLeak: /^skill_feedback: insert \(tenant B\) wrote rows:1$/,
  },
];

async function policies(h: DbHandle) {
  return query<{ table: string; name: string; permissive: string; qual: string; check: string }>(
    h.db,
    sql`select tablename as "table", policyname as name, permissive, qual, with_check as "check"
        from pg_policies where schemaname = 'public' order by tablename, policyname`,
  );
}

describe.each(engines)('a broken policy is caught on $name', (engine) => {
  let h: DbHandle;
  let pair: IsolationPair;
  let policiesBefore: Awaited<ReturnType<typeof policies>>;
  beforeAll(async () => {
    h = await engine.open();
    pair = await seedIsolationPair(h.db);
    policiesBefore = await policies(h);
  });
  afterAll(() => h.close());

  it('the check passes with the migrated policies', async () => {
    expect((await isolationReport(h.db, pair)).leaks).toEqual([]);
  });

  it.each(breakages)('reports a leak when $name, and passes again after the rollback', async ({ ddl, expectLeak }) => {
    const broken = await isolationReport(h.db, pair, ddl);
    expect(broken.leaks.length).toBeGreaterThan(0);
    expect(broken.leaks.some((l) => expectLeak.test(l)), broken.leaks.join('\n')).toBe(true);

    const restored = await isolationReport(h.db, pair);
    expect(restored.leaks).toEqual([]);
    expect(await policies(h)).toEqual(policiesBefore);
  });

  it("USING (true) on skills lets tenant A read tenant B's skills and write them", async () => {
    const broken = await isolationReport(h.db, pair, breakages[0]!.ddl);
    expect(broken.reads.skills.tenantB).toBe(2);
    expect(broken.writes.find((w) => w.table === 'skills' && w.action === 'insert')?.outcome).toBe('rows:1');
    // B's two skills plus the one the leaking insert just added.
    expect(broken.writes.find((w) => w.table === 'skills' && w.action === 'update')?.outcome).toBe('rows:3');
    expect(broken.changed).toContain('skills of tenant B');
  });
});
