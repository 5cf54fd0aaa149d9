// Start-up self-check: the server refuses a role or schema that would let requests bypass row-level security.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { loadConfig } from '../server/config.ts';
import { start } from '../server/main.ts';
import { assertRlsEnforced, findRlsProblems, UnsafeDatabaseError } from '../server/startup-check.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE } from './support/factory.ts';
import { preparePgliteDir } from './support/pglite-dir.ts';
import { openPrivateDb, type PrivateDb } from './support/private-db.ts';

const randomName = (prefix: string) => `${prefix}_${randomBytes(6).toString('hex')}`;

/** A temporary PGLITE_DIR; for the embedded engine it already holds the migrated template (fresh initdb on disk is slow). */
async function tempPgliteDir(engine: { name: string }): Promise<{ dir: string; pgliteDir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-startup-'));
  const pgliteDir = path.join(dir, 'pglite');
  if (engine.name === 'pglite') await preparePgliteDir(pgliteDir);
  return { dir, pgliteDir };
}

describe.each(engines)('start-up RLS check on $name', (engine) => {
  // A database of our own: these tests alter tables, which must never be seen by suites running in parallel.
  let priv: PrivateDb;
  let h: DbHandle;
  beforeAll(async () => {
    priv = await openPrivateDb(engine);
    h = priv.handle;
  });
  afterAll(() => priv.drop());

  it('finds no problem with the default application role', async () => {
    expect(await findRlsProblems(h.db, APP_ROLE)).toEqual([]);
    await expect(assertRlsEnforced(h.db, APP_ROLE)).resolves.toBeUndefined();
  });

  it('refuses a superuser role, naming the problem', async () => {
    const problems = await findRlsProblems(h.db, 'postgres');
    expect(problems).toContainEqual(expect.stringMatching(/"postgres" is a superuser/));
    const error = await assertRlsEnforced(h.db, 'postgres').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsafeDatabaseError);
    expect((error as UnsafeDatabaseError).message).toMatch(/superuser/);
    expect((error as UnsafeDatabaseError).problems).toEqual(problems);
  });

  it('refuses a role with BYPASSRLS, naming the problem', async () => {
    const role = randomName('sv_bypass');
    await h.db.execute(sql.raw(`create role ${role} nologin bypassrls`));
    try {
      const problems = await findRlsProblems(h.db, role);
      expect(problems).toEqual([`application role "${role}" has BYPASSRLS`]);
      await expect(assertRlsEnforced(h.db, role)).rejects.toThrow(/BYPASSRLS/);
    } finally {
      await h.db.execute(sql.raw(`drop role ${role}`));
    }
  });

  it('refuses a role that owns a table, naming the table', async () => {
    const role = randomName('sv_owner');
    const table = randomName('sv_owned');
    await h.db.execute(sql.raw(`create role ${role} nologin`));
    try {
      await h.db.execute(sql.raw(`create table ${table} (id int)`));
      await h.db.execute(sql.raw(`alter table ${table} owner to ${role}`));
      const problems = await findRlsProblems(h.db, role);
      expect(problems).toContainEqual(expect.stringMatching(new RegExp(`"${role}" owns tables \\(${table}\\)`)));
    } finally {
      await h.db.execute(sql.raw(`drop table if exists ${table}`));
      await h.db.execute(sql.raw(`drop role ${role}`));
    }
  });

  it("refuses a role that is a member of the tables' owner, naming the owner (it could pass the owner-only retention policies)", async () => {
    const role = randomName('sv_member');
    const [{ owner } = { owner: '' }] = await query<{ owner: string }>(
      h.db,
      sql`select relowner::regrole::text as owner from pg_class where oid = 'public.user_skill_views'::regclass`,
    );
    await h.db.execute(sql.raw(`create role ${role} nologin nosuperuser nobypassrls`));
    try {
      await h.db.execute(sql.raw(`grant ${owner} to ${role}`));
      // Why it matters: such a role passes skillviews_owner_maintenance() by setting one variable.
      const claim = await h.db.transaction(async (tx) => {
        await tx.execute(sql`select set_config('role', ${role}, true), set_config('skillviews.maintenance', 'retention', true)`);
        return (await query<{ maintenance: boolean }>(tx, sql`select skillviews_owner_maintenance() as maintenance`))[0];
      });
      expect(claim?.maintenance).toBe(true);
      const problems = await findRlsProblems(h.db, role);
      expect(problems).toEqual([`application role "${role}" is a member of "${owner}", the owner of the tables; owners can disable RLS`]);
      await expect(assertRlsEnforced(h.db, role)).rejects.toThrow(/is a member of/);
    } finally {
      await h.db.execute(sql.raw(`drop role ${role}`));
    }
    expect(await findRlsProblems(h.db, APP_ROLE)).toEqual([]);
  });

  it('refuses a role it cannot switch to', async () => {
    const problems = await findRlsProblems(h.db, 'sv_no_such_role');
    expect(problems).toEqual([expect.stringMatching(/cannot switch to application role "sv_no_such_role"/)]);
  });

  it('refuses a table that does not force, or does not enable, row-level security', async () => {
    await h.db.execute(sql`alter table skills no force row level security`);
    await h.db.execute(sql`alter table user_skill_views disable row level security`);
    try {
      const problems = await findRlsProblems(h.db, APP_ROLE);
      expect(problems).toEqual(
        expect.arrayContaining(['table skills does not force row-level security', 'table user_skill_views does not have row-level security enabled']),
      );
      expect(problems).toHaveLength(2);
      await expect(assertRlsEnforced(h.db, APP_ROLE)).rejects.toThrow(/skills does not force/);
    } finally {
      await h.db.execute(sql`alter table skills force row level security`);
      await h.db.execute(sql`alter table user_skill_views enable row level security`);
    }
    expect(await findRlsProblems(h.db, APP_ROLE)).toEqual([]);
  });

  it('start() refuses to serve with a superuser DB_APP_ROLE, naming the problem', async () => {
    const { dir, pgliteDir } = await tempPgliteDir(engine);
    try {
      const config = loadConfig({
        NODE_ENV: 'test',
        PORT: '0',
        DB_APP_ROLE: 'postgres',
        LOG_LEVEL: 'silent',
        PGLITE_DIR: pgliteDir,
        ...(priv.url ? { DATABASE_URL: priv.url, DB_POOL_SIZE: '1' } : {}),
      });
      const result = await start(config, { logger: false }).then(
        async (running) => {
          await running.close();
          return null;
        },
        (err: unknown) => err,
      );
      expect(result).toBeInstanceOf(UnsafeDatabaseError);
      expect((result as Error).message).toMatch(/Refusing to start/);
      expect((result as Error).message).toMatch(/application role "postgres" is a superuser/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // The control; on the embedded engine tests/npm-start.test.ts starts the real thing end to end.
  if (engine.name === 'postgres') {
    it('start() serves with the default role (the control)', async () => {
      const { dir, pgliteDir } = await tempPgliteDir(engine);
      try {
        const config = loadConfig({
          NODE_ENV: 'test',
          PORT: '0',
          LOG_LEVEL: 'silent',
          PGLITE_DIR: pgliteDir,
          ...(priv.url ? { DATABASE_URL: priv.url, DB_POOL_SIZE: '2' } : {}),
        });
        const running = await start(config, { logger: false });
        try {
          expect(running.engine).toBe(engine.name);
          const res = await fetch(`${running.url}/healthz`);
          expect(res.status).toBe(200);
          expect(await res.json()).toEqual({ status: 'ok' });
          // Demo data and tokens are for the embedded database only.
          expect(running.demoTokens).toEqual([]);
        } finally {
          await running.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
