// Retention (DESIGN "Deployment" → "Retention"): pruneExpiredViews and `npm run db:prune` delete exactly the view rows
// of every tenant not refreshed for VIEW_RETENTION_DAYS, once even when processes race, as the tables' owner only
// (a plain login owner included, through the owner-only policies); and the server runs it about a second after start.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, type Database, type DbHandle } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';
import { query } from '../db/queries/rows.ts';
import { pruneExpiredViews, RetentionError } from '../db/retention.ts';
import { rlsTables } from '../db/schema/index.ts';
import { loadConfig } from '../server/config.ts';
import { start } from '../server/main.ts';
import { cleanEnv, runProcess, type Proc } from './support/child-process.ts';
import { engines, type TestEngine } from './support/engines.ts';
import { createTenant, daysAgo, insertView, skillSpec, type TenantFixture } from './support/factory.ts';
import { preparePgliteDir } from './support/pglite-dir.ts';
import { openPrivateDb, type PrivateDb } from './support/private-db.ts';
import { fingerprint } from './support/rls.ts';

const DAYS = 30;
const hours = (n: number) => n * 60 * 60 * 1000;

/** Ages of the seeded view rows, relative to a DAYS-day limit: expired ones first. */
const ages = {
  expired: [daysAgo(400), daysAgo(DAYS + 1), new Date(daysAgo(DAYS).getTime() - hours(1))],
  kept: [new Date(daysAgo(DAYS).getTime() + hours(1)), daysAgo(DAYS - 1), daysAgo(1), new Date()],
};

interface Seeded {
  tenants: TenantFixture[];
  /** `tenant:user:skill` of each row that is past the limit, and of each that is not. */
  expired: string[];
  kept: string[];
}

/**
 * Two tenants, two users each, seven skills; each user has one view per age above (user 1 in reverse, so expired
 * rows are spread over users, skills and tenants), plus a tracking preference each.
 */
async function seed(db: Database): Promise<Seeded> {
  const all = [...ages.expired, ...ages.kept];
  const result: Seeded = { tenants: [], expired: [], kept: [] };
  for (let n = 0; n < 2; n++) {
    const t = await createTenant(db, { skills: all.map((_, i) => skillSpec(`s${i}`)) });
    result.tenants.push(t);
    const skills = Object.values(t.skills);
    for (const [u, userId] of t.userIds.entries()) {
      const order = u === 0 ? all : [...all].reverse();
      for (const [i, at] of order.entries()) {
        await insertView(db, t, { userId, skillId: skills[i]!, lastViewedAt: at, lastViewedVersion: 1 });
        (ages.expired.includes(at) ? result.expired : result.kept).push(`${t.tenantId}:${userId}:${skills[i]}`);
      }
      await db.execute(
        sql`insert into user_tracking_preferences (tenant_id, user_id, tracking_enabled) values (${t.tenantId}::uuid, ${userId}::uuid, ${u === 0})`,
      );
    }
  }
  result.expired.sort();
  result.kept.sort();
  return result;
}

/** The view rows left of the seeded tenants, as `tenant:user:skill`, read as the superuser login. */
async function viewRows(db: Database, tenants: TenantFixture[]): Promise<string[]> {
  const ids = sql.join(
    tenants.map((t) => sql`${t.tenantId}::uuid`),
    sql`, `,
  );
  const rows = await query<{ key: string }>(
    db,
    sql`select tenant_id::text || ':' || user_id::text || ':' || skill_id::text as key from user_skill_views where tenant_id in (${ids}) order by 1`,
  );
  return rows.map((r) => r.key);
}

/** Every other table of the seeded tenants, to prove the prune touched nothing but expired view rows. */
async function everythingButViews(db: Database, tenants: TenantFixture[]) {
  const result: Record<string, string> = {};
  for (const t of tenants) {
    const print = await fingerprint(db, t.tenantId);
    for (const table of rlsTables) if (table !== 'user_skill_views') result[`${t.tenantId} ${table}`] = print[table]!;
  }
  return result;
}

describe.each(engines)('view retention on $name', (engine) => {
  // A database of our own: a prune reaches every tenant, so it must not reach other suites' rows.
  let priv: PrivateDb;
  let h: DbHandle;
  beforeAll(async () => {
    priv = await openPrivateDb(engine);
    h = priv.handle;
  });
  afterAll(() => priv.drop());

  it('pruneExpiredViews deletes exactly the rows last viewed more than N days ago, across tenants and users, and nothing else', async () => {
    const s = await seed(h.db);
    expect(s.expired).toHaveLength(12);
    expect(s.kept).toHaveLength(16);
    const others = await everythingButViews(h.db, s.tenants);

    expect(await pruneExpiredViews(h, { days: DAYS })).toEqual({ ran: true, deleted: s.expired.length });
    expect(await viewRows(h.db, s.tenants)).toEqual(s.kept);
    expect(await everythingButViews(h.db, s.tenants)).toEqual(others);
    // Nothing left to do; a longer limit deletes nothing, a shorter one the next band.
    expect(await pruneExpiredViews(h, { days: DAYS })).toEqual({ ran: true, deleted: 0 });
    expect(await pruneExpiredViews(h, { days: 365 })).toEqual({ ran: true, deleted: 0 });
    // Kept: DAYS - 1h, DAYS - 1, 1 day and now, per user; 2 days prunes the first two of each.
    expect(await pruneExpiredViews(h, { days: 2 })).toEqual({ ran: true, deleted: 8 });
    expect(await viewRows(h.db, s.tenants)).toHaveLength(8);
    expect(await everythingButViews(h.db, s.tenants)).toEqual(others);
  });

  it('rejects a limit that is not a positive whole number of days, deleting nothing', async () => {
    const s = await seed(h.db);
    for (const days of [0, -1, 1.5, Number.NaN]) {
      await expect(pruneExpiredViews(h, { days })).rejects.toThrow(RangeError);
    }
    expect(await viewRows(h.db, s.tenants)).toEqual([...s.expired, ...s.kept].sort());
    await pruneExpiredViews(h, { days: DAYS }); // leave nothing expired for the next test
  });

  it('the server prunes about a second after start when VIEW_RETENTION_DAYS is set', async () => {
    const s = await seedServerDatabase(engine, priv);
    const logs: Record<string, unknown>[] = [];
    const running = await start(s.config({ VIEW_RETENTION_DAYS: String(DAYS) }), {
      logger: { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) } },
    });
    const started = Date.now();
    let entry: Record<string, unknown> | undefined;
    try {
      while (!(entry = logs.find((l) => String(l.msg).startsWith('view retention'))) && Date.now() - started < 15_000) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await running.close();
    }
    expect(entry, JSON.stringify(logs.map((l) => l.msg))).toMatchObject({ msg: 'view retention', retentionDays: DAYS, ran: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
    const after = await s.rows();
    expect(after).toEqual(s.kept);
    await s.done();
  }, 60_000);

  if (engine.name === 'postgres') {
    it('without VIEW_RETENTION_DAYS the server prunes nothing', async () => {
      const s = await seedServerDatabase(engine, priv);
      const running = await start(s.config({}), { logger: false });
      try {
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      } finally {
        await running.close();
      }
      expect(await s.rows()).toEqual([...s.expired, ...s.kept].sort());
      await pruneExpiredViews(h, { days: DAYS });
      await s.done();
    }, 60_000);
  }
});

/**
 * Seeded expired and kept rows where start() will find them: the private Postgres database, or a fresh PGlite
 * data directory (the server holds its lock while it runs, so the rows are read after it stops).
 */
async function seedServerDatabase(engine: TestEngine, priv: PrivateDb) {
  if (engine.name === 'postgres') {
    const s = await seed(priv.handle.db);
    return {
      ...s,
      config: (extra: Record<string, string>) =>
        loadConfig({ NODE_ENV: 'test', PORT: '0', LOG_LEVEL: 'info', DATABASE_URL: priv.url!, DB_POOL_SIZE: '2', ...extra }),
      rows: () => viewRows(priv.handle.db, s.tenants),
      done: async () => {},
    };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-retention-'));
  const pgliteDir = path.join(dir, 'pglite');
  await preparePgliteDir(pgliteDir);
  const seeding = createDb({ pgliteDir });
  const s = await seed(seeding.db);
  await seeding.close();
  return {
    ...s,
    config: (extra: Record<string, string>) => loadConfig({ NODE_ENV: 'test', PORT: '0', LOG_LEVEL: 'info', PGLITE_DIR: pgliteDir, ...extra }),
    rows: async () => {
      const reading = createDb({ pgliteDir });
      try {
        return await viewRows(reading.db, s.tenants);
      } finally {
        await reading.close();
      }
    },
    done: () => rm(dir, { recursive: true, force: true }),
  };
}

const pgUrl = inject('pgUrl');

describe.skipIf(!pgUrl)('view retention on Postgres: processes, owners and other logins', () => {
  const id = `sv_ret_${randomBytes(5).toString('hex')}`;
  const owner = `${id}_owner`;
  const app = `${id}_app`;
  const runtime = `${id}_runtime`;
  const database = `${id}_db`;
  const urlFor = (user: string) => {
    const url = new URL(pgUrl!);
    url.username = user;
    url.password = '';
    url.pathname = `/${database}`;
    return url.toString();
  };
  const superuser = () => urlFor(new URL(pgUrl!).username || 'postgres');

  let admin: postgres.Sql;
  let dba: DbHandle; // superuser in the suite's database: seeds and inspects (bypasses RLS)
  const children: Proc[] = [];

  beforeAll(async () => {
    admin = postgres(pgUrl!, { max: 1, onnotice: () => {} });
    // As in tests/managed-postgres.test.ts: a plain login owns the database and the tables; the app role is the
    // DBA's; another login (the server's runtime credentials, say) is a member of the app role, not the owner.
    await admin.unsafe(`create role "${owner}" login nosuperuser nocreaterole nocreatedb nobypassrls`);
    await admin.unsafe(`create role "${app}" nologin nosuperuser nobypassrls`);
    await admin.unsafe(`grant "${app}" to "${owner}"`);
    await admin.unsafe(`create role "${runtime}" login nosuperuser nobypassrls`);
    await admin.unsafe(`grant "${app}" to "${runtime}"`);
    await admin.unsafe(`create database "${database}" owner "${owner}"`);
    const asOwner = createDb({ url: urlFor(owner), poolSize: 1 });
    try {
      await migrate(asOwner, { appRole: app });
    } finally {
      await asOwner.close();
    }
    dba = createDb({ url: superuser(), poolSize: 2 });
  });

  afterAll(async () => {
    for (const r of children) if (!r.hasExited()) await r.stop(1_000);
    await dba?.close();
    if (!admin) return;
    await admin.unsafe(`drop database if exists "${database}" with (force)`);
    for (const role of [runtime, app, owner]) {
      await admin.unsafe(`drop owned by "${role}" cascade`).catch(() => {});
      await admin.unsafe(`drop role if exists "${role}"`);
    }
    await admin.end();
  });

  const prune = (user: string, days: number) => {
    const proc = runProcess(
      'npm',
      ['run', '--silent', 'db:prune', '--', '--days', String(days)],
      cleanEnv({ NODE_ENV: 'test', LOG_LEVEL: 'warn', DATABASE_URL: urlFor(user), VIEW_RETENTION_DAYS: '' }),
    );
    children.push(proc);
    return proc;
  };

  it("a plain login that owns the tables prunes every tenant's expired rows (through the owner-only policies)", async () => {
    const s = await seed(dba.db);
    const others = await everythingButViews(dba.db, s.tenants);
    // Forced RLS binds this owner too: without the retention setting it sees no view row at all.
    const asOwner = createDb({ url: urlFor(owner), poolSize: 1 });
    try {
      expect(await query(asOwner.db, sql`select 1 from user_skill_views`)).toEqual([]);
      expect(await pruneExpiredViews(asOwner, { days: DAYS, url: urlFor(owner) })).toEqual({ ran: true, deleted: s.expired.length });
    } finally {
      await asOwner.close();
    }
    expect(await viewRows(dba.db, s.tenants)).toEqual(s.kept);
    expect(await everythingButViews(dba.db, s.tenants)).toEqual(others);

    // And `npm run db:prune` as that owner.
    const more = await seed(dba.db);
    const proc = prune(owner, DAYS);
    expect(await proc.exitWithin(60_000), proc.output()).toEqual({ code: 0, signal: null });
    expect(proc.stdout()).toContain(`deleted ${more.expired.length} view row(s) not viewed for ${DAYS} day(s)`);
    expect(await viewRows(dba.db, more.tenants)).toEqual(more.kept);
  }, 90_000);

  it('a login that is not the owner fails with RetentionError naming what to do, and deletes nothing', async () => {
    const s = await seed(dba.db);
    const before = await viewRows(dba.db, s.tenants);
    const asRuntime = createDb({ url: urlFor(runtime), poolSize: 1 });
    try {
      const err = await pruneExpiredViews(asRuntime, { days: DAYS, url: urlFor(runtime) }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(RetentionError);
      expect((err as Error).message).toMatch(/needs the owner of the tables/);
      expect((err as Error).message).toMatch(/DATABASE_DIRECT_URL/);
    } finally {
      await asRuntime.close();
    }
    expect(await viewRows(dba.db, s.tenants)).toEqual(before);

    const proc = prune(runtime, DAYS);
    expect(await proc.exitWithin(60_000), proc.output()).toEqual({ code: 1, signal: null });
    expect(proc.stderr()).toMatch(/pruning view rows needs the owner of the tables: run it with the migration credentials \(DATABASE_DIRECT_URL\)/);
    expect(proc.output()).not.toMatch(/^\s+at /m); // a message, not a stack trace
    expect(await viewRows(dba.db, s.tenants)).toEqual(before);
    // Clean up as the owner would.
    const asOwner = createDb({ url: urlFor(owner), poolSize: 1 });
    try {
      await pruneExpiredViews(asOwner, { days: DAYS, url: urlFor(owner) });
    } finally {
      await asOwner.close();
    }
  }, 90_000);

  it('two `npm run db:prune` processes racing delete the expired rows once, without an error; one reports the other running', async () => {
    const s = await seed(dba.db);
    // Make the race certain: a transaction holds one expired row, so whichever process takes the retention lock
    // first waits inside its delete, lock held, until the other has come and gone.
    const blocker = postgres(superuser(), { max: 1, onnotice: () => {} });
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked = () => {};
    const rowLocked = new Promise<void>((resolve) => (locked = resolve));
    const holding = blocker.begin(async (tx) => {
      await tx`select 1 from user_skill_views where tenant_id = ${s.tenants[0]!.tenantId}::uuid
               and last_viewed_at < now() - interval '400 days' + interval '1 hour' for update`;
      locked();
      await released;
    });
    try {
      await rowLocked;
      const racers = [prune(owner, DAYS), prune(owner, DAYS)];
      const first = await Promise.race(racers.map((r, i) => r.exitWithin(60_000).then((exit) => ({ i, exit }))));
      const skipped = racers[first.i]!;
      const pruner = racers[1 - first.i]!;
      expect(first.exit, skipped.output()).toEqual({ code: 0, signal: null });
      expect(skipped.stdout()).toMatch(/^another process is pruning right now; nothing done here\n$/);
      // The other one is still inside its delete, waiting for the held row.
      expect(pruner.hasExited(), pruner.output()).toBe(false);
      const [waiting] = await query<{ n: number }>(
        dba.db,
        sql`select count(*)::int as n from pg_stat_activity
            where application_name = 'skill-views retention' and datname = current_database() and wait_event_type = 'Lock'`,
      );
      expect(waiting?.n).toBe(1);
      release();
      await holding;
      expect(await pruner.exitWithin(60_000), pruner.output()).toEqual({ code: 0, signal: null });
      expect(pruner.stdout()).toBe(`deleted ${s.expired.length} view row(s) not viewed for ${DAYS} day(s)\n`);
    } finally {
      release();
      await holding.catch(() => {});
      await blocker.end();
    }
    expect(await viewRows(dba.db, s.tenants)).toEqual(s.kept);
  }, 120_000);

  it('two `npm run db:prune` processes started together, unhindered, delete the expired rows once between them', async () => {
    const s = await seed(dba.db);
    const racers = [prune(owner, DAYS), prune(owner, DAYS)];
    const exits = await Promise.all(racers.map((r) => r.exitWithin(60_000)));
    const outputs = racers.map((r) => r.output());
    expect(exits, outputs.join('\n---\n')).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    let total = 0;
    for (const out of outputs) {
      const m = out.match(/^deleted (\d+) view row\(s\) not viewed for 30 day\(s\)\n$/);
      if (m) total += Number(m[1]);
      else expect(out).toMatch(/^another process is pruning right now; nothing done here\n$/);
    }
    expect(total).toBe(s.expired.length);
    expect(await viewRows(dba.db, s.tenants)).toEqual(s.kept);
  }, 120_000);
});
