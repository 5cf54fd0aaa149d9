// A host app's own drizzle migrations (drizzle's default journal, drizzle.__drizzle_migrations) and this module's
// (drizzle.skill_views_migrations) on one database, in either order: both apply, neither skips the other's, running
// either again does nothing, and the module's start-up RLS check still passes beside the host's tables.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf, type DbHandle } from '../db/client.ts';
import { migrate, readMigrations } from '../db/migrate.ts';
import { assertRlsEnforced } from '../server/startup-check.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE } from './support/factory.ts';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { createDb } from '../db/client.ts';
import type { TestEngine } from './support/engines.ts';

/** An empty database (nothing migrated): in-memory PGlite, or a new Postgres database beside the run's. */
async function emptyDatabase(engine: TestEngine): Promise<{ handle: DbHandle; close: () => Promise<void> }> {
  if (!engine.url) {
    const handle = createDb({});
    return { handle, close: () => handle.close() };
  }
  const name = `skillviews_host_${randomBytes(6).toString('hex')}`;
  const admin = postgres(engine.url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  const url = new URL(engine.url);
  url.pathname = `/${name}`;
  const handle = createDb({ url: url.toString(), poolSize: 2 });
  return {
    handle,
    close: async () => {
      await handle.close();
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    },
  };
}

/** A host's drizzle-kit folder: two migrations of its own, one of them timestamped between two of ours. */
async function hostMigrations(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'host-migrations-'));
  await mkdir(path.join(dir, 'meta'));
  const ours = readMigrations();
  const entries = [
    { idx: 0, version: '7', when: ours[3]!.createdAt + 1, tag: '0000_host_accounts', breakpoints: true },
    { idx: 1, version: '7', when: Date.now(), tag: '0001_host_orders', breakpoints: true },
  ];
  await writeFile(path.join(dir, 'meta', '_journal.json'), JSON.stringify({ version: '7', dialect: 'postgresql', entries }));
  await writeFile(path.join(dir, '0000_host_accounts.sql'), 'CREATE TABLE "host_accounts" ("id" serial PRIMARY KEY, "name" text NOT NULL);');
  await writeFile(
    path.join(dir, '0001_host_orders.sql'),
    'CREATE TABLE "host_orders" ("id" serial PRIMARY KEY, "account_id" integer REFERENCES "host_accounts"("id"));',
  );
  return dir;
}

/** drizzle's own migrator for the engine, as a host app runs it (default journal table). */
async function hostMigrate(handle: DbHandle, folder: string) {
  if (handle.engine === 'pglite') {
    const { migrate: run } = await import('drizzle-orm/pglite/migrator');
    await run(handle.db as never, { migrationsFolder: folder });
  } else {
    const { migrate: run } = await import('drizzle-orm/postgres-js/migrator');
    await run(handle.db as never, { migrationsFolder: folder });
  }
}

describe.each(engines)("a host's drizzle migrations beside the module's on $name", (engine) => {
  let folder: string;
  beforeAll(async () => {
    folder = await hostMigrations();
  });
  afterAll(() => rm(folder, { recursive: true, force: true }));

  for (const order of ['module first', 'host first'] as const) {
    it(`both apply, ${order}, and running either again changes nothing`, async () => {
      const db = await emptyDatabase(engine);
      const { handle } = db;
      try {
        if (order === 'module first') {
          expect((await migrate(handle, { appRole: APP_ROLE })).applied).toEqual(readMigrations().map((m) => m.tag));
          await hostMigrate(handle, folder);
        } else {
          await hostMigrate(handle, folder);
          expect((await migrate(handle, { appRole: APP_ROLE })).applied).toEqual(readMigrations().map((m) => m.tag));
        }
        const tables = rowsOf<{ name: string }>(
          await handle.db.execute(sql`select table_name as name from information_schema.tables where table_schema = 'public' order by 1`),
        ).map((r) => r.name);
        expect(tables).toEqual(expect.arrayContaining(['host_accounts', 'host_orders', 'skills', 'user_skill_views']));
        const hostJournal = rowsOf<{ n: number | string }>(await handle.db.execute(sql`select count(*) as n from drizzle.__drizzle_migrations`));
        expect(Number(hostJournal[0]!.n)).toBe(2);
        const ours = rowsOf<{ tag: string }>(await handle.db.execute(sql`select tag from drizzle.skill_views_migrations order by created_at`));
        expect(ours.map((r) => r.tag)).toEqual(readMigrations().map((m) => m.tag));

        // Again, both ways: nothing to do, nothing recorded twice.
        expect((await migrate(handle, { appRole: APP_ROLE })).applied).toEqual([]);
        await hostMigrate(handle, folder);
        const again = rowsOf<{ n: number | string }>(await handle.db.execute(sql`select count(*) as n from drizzle.__drizzle_migrations`));
        expect(Number(again[0]!.n)).toBe(2);
        // The module's safety check looks at its own tables: the host's, without RLS, do not stop it starting.
        await assertRlsEnforced(handle.db, APP_ROLE);
      } finally {
        await db.close();
      }
    });
  }
});
