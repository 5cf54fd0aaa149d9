// Test run set-up: a migrated PGlite template for every suite, and a fresh Postgres database when DATABASE_URL is set.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { createDb } from '../../db/client.ts';
import { migrate } from '../../db/migrate.ts';
import { findPgBouncer, startPgBouncer, type PgBouncer } from './pgbouncer.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of this run's fresh Postgres database, or null when DATABASE_URL is unset. */
    pgUrl: string | null;
    /** A migrated PGlite data directory dump that suites load instead of migrating again. */
    pgliteTemplate: string;
    /** pgUrl through a real PgBouncer in transaction mode (null without Postgres or without pgbouncer installed). */
    pgbouncerUrl: string | null;
  }
}

export default async function setup(project: TestProject) {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'skill-views-test-'));
  const pglite = new PGlite();
  const handle = createDb({ pglite });
  await migrate(handle);
  const dump = await pglite.dumpDataDir('none');
  const template = path.join(tmp, 'pglite-template.tar');
  await writeFile(template, Buffer.from(await dump.arrayBuffer()));
  await pglite.close();
  project.provide('pgliteTemplate', template);

  const baseUrl = process.env.DATABASE_URL;
  let dropDatabase: (() => Promise<void>) | null = null;
  let bouncer: PgBouncer | null = null;
  if (baseUrl) {
    const name = `skillviews_test_${Date.now()}_${process.pid}`;
    const admin = postgres(baseUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database "${name}"`);
    const url = new URL(baseUrl);
    url.pathname = `/${name}`;
    const pg = createDb({ url: url.toString(), poolSize: 1 });
    await migrate(pg);
    await pg.close();
    project.provide('pgUrl', url.toString());
    // The reliability suites need a transaction pooler; CI installs PgBouncer and sets REQUIRE_PGBOUNCER=1.
    if (findPgBouncer()) {
      bouncer = await startPgBouncer(url.toString(), { poolSize: 4 });
      project.provide('pgbouncerUrl', bouncer.urlFor(url.toString()));
    } else if (process.env.REQUIRE_PGBOUNCER === '1') {
      throw new Error('REQUIRE_PGBOUNCER=1 but pgbouncer is not installed (apt-get install -y pgbouncer)');
    } else {
      project.provide('pgbouncerUrl', null);
    }
    dropDatabase = async () => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    };
  } else {
    project.provide('pgUrl', null);
    project.provide('pgbouncerUrl', null);
  }

  return async () => {
    await bouncer?.stop();
    await dropDatabase?.();
    await rm(tmp, { recursive: true, force: true });
  };
}
