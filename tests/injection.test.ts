// Injection-shaped ids never become SQL text: they are bind parameters that match nothing or fail as invalid uuids.
import { sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { changeSummary } from '../db/queries/change-summary.ts';
import { query } from '../db/queries/rows.ts';
import { scopeStatement, withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { recordView, viewsForSkills } from '../db/queries/views.ts';
import { rlsTables } from '../db/schema/index.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE } from './support/factory.ts';
import { pgError } from './support/pg-error.ts';
import { fingerprint, seedIsolationPair, type IsolationPair } from './support/rls.ts';

const hostile = [
  ["a quote that closes the literal", "x' or '1'='1"],
  ['a statement terminator', "'; drop table skills; --"],
  ['a uuid followed by a condition', "00000000-0000-4000-8000-000000000000' or tenant_id is not null --"],
  ['a 10,000-character string', `'${'a'.repeat(9_998)}'`],
] as const;

const dialect = new PgDialect();

/** What happened to a read: rows came back, or it failed with a SQLSTATE. */
async function settle(promise: Promise<unknown[]>): Promise<{ rows: unknown[] } | { code: string | undefined }> {
  try {
    return { rows: await promise };
  } catch (err) {
    return { code: pgError(err)?.code };
  }
}

describe.each(engines)('injection-shaped ids on $name', (engine) => {
  let h: DbHandle;
  let pair: IsolationPair;
  beforeAll(async () => {
    h = await engine.open();
    pair = await seedIsolationPair(h.db);
  });
  afterAll(() => h.close());

  async function tablesAndTenantB() {
    const tables = await query<{ name: string }>(
      h.db,
      sql`select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind = 'r' order by 1`,
    );
    return { tables: tables.map((t) => t.name), b: await fingerprint(h.db, pair.b.tenantId) };
  }

  describe.each(hostile)('%s', (_, value) => {
    it('as the tenant id: every table either rejects it as an invalid uuid (22P02) or returns no row', async () => {
      const before = await tablesAndTenantB();
      const scope = { role: APP_ROLE, tenantId: value, userId: pair.a.userIds[0]! };
      for (const table of rlsTables) {
        const outcome = await settle(
          withTenantTransaction(h.db, scope, (tx) => query(tx, sql`select * from ${sql.identifier(table)}`)),
        );
        expect(outcome, table).toSatisfy((o: typeof outcome) => ('code' in o ? o.code === '22P02' : o.rows.length === 0));
      }
      expect(await tablesAndTenantB()).toEqual(before);
      expect(before.tables).toEqual(expect.arrayContaining([...rlsTables]));
    });

    it('as the user id: view rows either reject it (22P02) or return nothing, and the catalogue shows only the own tenant', async () => {
      const before = await tablesAndTenantB();
      const scope = { role: APP_ROLE, tenantId: pair.a.tenantId, userId: value };
      const views = await settle(withTenantTransaction(h.db, scope, (tx) => query(tx, sql`select * from user_skill_views`)));
      expect(views).toSatisfy((o: typeof views) => ('code' in o ? o.code === '22P02' : o.rows.length === 0));
      const skills = await withTenantTransaction(h.db, scope, (tx) =>
        query<{ tenantId: string }>(tx, sql`select tenant_id::text as "tenantId" from skills`),
      );
      expect(skills.map((s) => s.tenantId)).toEqual([pair.a.tenantId, pair.a.tenantId]);
      expect(await tablesAndTenantB()).toEqual(before);
    });

    it('as a skill id: query functions reject it before or at the database, writing nothing', async () => {
      const before = await tablesAndTenantB();
      const viewsOfA = await fingerprint(h.db, pair.a.tenantId);
      const scope = { role: APP_ROLE, tenantId: pair.a.tenantId, userId: pair.a.userIds[0]! };
      await expect(withTenantTransaction(h.db, scope, (tx) => viewsForSkills(tx, scope, [value]))).rejects.toThrow('not a uuid');
      for (const call of [
        () => withTenantTransaction(h.db, scope, (tx) => changeSummary(tx, scope, value)),
        () => withTenantTransaction(h.db, scope, (tx) => recordView(tx, scope, value)),
      ]) {
        expect(await settle(call().then(() => []))).toEqual({ code: '22P02' });
      }
      expect(await tablesAndTenantB()).toEqual(before);
      expect(await fingerprint(h.db, pair.a.tenantId)).toEqual(viewsOfA);
    });

    it('scopeStatement keeps it out of the SQL text: it is only a bind parameter', () => {
      const rendered = dialect.sqlToQuery(scopeStatement({ role: APP_ROLE, tenantId: value, userId: value }));
      expect(rendered.sql).not.toContain(value);
      expect(rendered.sql).not.toMatch(/drop table|'1'='1|aaaa/i);
      expect(rendered.params).toEqual([APP_ROLE, value, value, '10000', '10000']); // then statement and idle-in-transaction timeouts (ms)
      // The same text whatever the values: one statement shape, values only in parameters.
      const benign = dialect.sqlToQuery(scopeStatement({ role: 'r', tenantId: 't', userId: 'u' }));
      expect(rendered.sql).toBe(benign.sql);
      expect(rendered.sql).toMatch(/set_config\('role', \$1, true\).*\$2.*\$3/);
    });
  });

  it('an injection-shaped role name is refused (no such role) and drops nothing', async () => {
    const before = await tablesAndTenantB();
    const scope = { role: `${APP_ROLE}; drop table skills; --`, tenantId: pair.a.tenantId, userId: pair.a.userIds[0]! };
    const outcome = await settle(withTenantTransaction(h.db, scope, (tx) => query(tx, sql`select * from skills`)));
    expect(outcome).toEqual({ code: '22023' });
    expect(await tablesAndTenantB()).toEqual(before);
  });
});
