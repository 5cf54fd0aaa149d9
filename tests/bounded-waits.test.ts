// Bounded waits: a held lock or an exhausted pool answers 503 with Retry-After within REQUEST_TIMEOUT_MS, /healthz within 2 s, and recovers.
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type DbHandle } from '../db/client.ts';
import { engines } from './support/engines.ts';
import { query } from '../db/queries/rows.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { openPrivateDb } from './support/private-db.ts';
import { errorOf, rawCall, startTestServer, tokenFor, type TestServer } from './support/server.ts';

const postgresEngine = engines.find((e) => e.name === 'postgres');
const TIMEOUT_MS = 1500;

/** Holds `lock table … in access exclusive mode` in an open transaction on its own connection until release(). */
async function holdLock(url: string, table: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const done = sql.begin(async (tx) => {
    await tx.unsafe(`lock table ${table} in access exclusive mode`);
    locked();
    await released;
  });
  await isLocked;
  return {
    release: async () => {
      release();
      await done;
      await sql.end();
    },
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

describe.skipIf(!postgresEngine)('bounded waits on postgres (REQUEST_TIMEOUT_MS = 1500)', () => {
  let handle: DbHandle;
  let server: TestServer;
  let t: TenantFixture;
  let token: string;
  let admin: postgres.Sql;

  beforeAll(async () => {
    handle = createDb({ url: postgresEngine!.url!, poolSize: 3, requestTimeoutMs: TIMEOUT_MS });
    server = await startTestServer(postgresEngine!, { handle });
    const setup = await postgresEngine!.open();
    t = await createTenant(setup.db, { skills: [skillSpec('s')] });
    await setup.close();
    token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
    admin = postgres(postgresEngine!.url!, { max: 1, onnotice: () => {} });
    // Warm the token cache so the lock below only blocks the procedures, not authentication.
    expect((await rawCall(server.trpcUrl, 'changeSummary', { input: { skillId: t.skills.s }, token })).status).toBe(200);
  });
  afterAll(async () => {
    await server?.close();
    await handle?.close();
    await admin?.end();
  });

  it('with a table lock held, calls answer 503 SERVICE_UNAVAILABLE with Retry-After within the limit, /healthz 503 within 2 s, and both recover after release', async () => {
    const lock = await holdLock(postgresEngine!.url!, 'skills');
    try {
      const calls = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          timed(async () => {
            const res = await fetch(`${server.trpcUrl}/${i % 2 ? 'changeSummary' : 'recordView'}`, {
              method: 'POST',
              headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
              body: JSON.stringify({ json: { skillId: t.skills.s } }),
            });
            return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() };
          }),
        ),
      );
      for (const { value, ms } of calls) {
        expect(value.status).toBe(503);
        expect(value.retryAfter).toMatch(/^\d+$/);
        expect(value.body.error.json.data.code).toBe('SERVICE_UNAVAILABLE');
        expect(JSON.stringify(value.body)).not.toMatch(/statement timeout|canceling|lock|skills/i);
        // Six calls on a pool of three: the last ones wait for a connection, all within the same limit.
        expect(ms).toBeLessThan(TIMEOUT_MS + 700);
        expect(ms).toBeGreaterThan(TIMEOUT_MS - 300);
      }
      const health = await timed(() => fetch(`${server.url}/healthz`));
      expect(health.value.status).toBe(503);
      expect(health.ms).toBeLessThan(2000);
    } finally {
      await lock.release();
    }
    // Nothing was left behind: no backend of ours inside a transaction, no view written.
    const [stuck] = await admin`select count(*)::int as n from pg_stat_activity where datname = current_database()
      and application_name = 'skill-views' and state like 'idle in transaction%'`;
    expect(stuck!.n).toBe(0);
    const [views] = await admin`select count(*)::int as n from user_skill_views where tenant_id = ${t.tenantId}`;
    expect(views!.n).toBe(0);
    // Recovery: the next calls succeed at once.
    const after = await timed(() => rawCall(server.trpcUrl, 'recordView', { method: 'POST', input: { skillId: t.skills.s }, token }));
    expect(after.value.status).toBe(200);
    expect(after.ms).toBeLessThan(1000);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('authentication waits no longer either: a new token while the users table is locked is 503, not 500', async () => {
    const fresh = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[1]! });
    const lock = await holdLock(postgresEngine!.url!, 'users');
    try {
      const res = await timed(() => rawCall(server.trpcUrl, 'changeSummary', { input: { skillId: t.skills.s }, token: fresh }));
      expect(res.value.status).toBe(503);
      expect(errorOf(res.value).data.code).toBe('SERVICE_UNAVAILABLE');
      expect(res.ms).toBeLessThan(TIMEOUT_MS + 700);
    } finally {
      await lock.release();
    }
    expect((await rawCall(server.trpcUrl, 'changeSummary', { input: { skillId: t.skills.s }, token: fresh })).status).toBe(200);
  });

  it('one limit for the whole request: time spent authenticating is taken from the procedure’s share', async () => {
    // A token never seen before (another lifetime), so authentication asks the database.
    const fresh = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[1]! }, { expiresIn: '3h' });
    const skillsLock = await holdLock(postgresEngine!.url!, 'skills');
    const usersLock = await holdLock(postgresEngine!.url!, 'users');
    // Authentication waits on users for 70 % of the limit; then the procedure waits on skills.
    const releaseUsers = setTimeout(() => void usersLock.release(), TIMEOUT_MS * 0.7);
    try {
      const res = await timed(() => rawCall(server.trpcUrl, 'changeSummary', { input: { skillId: t.skills.s }, token: fresh }));
      expect(res.value.status).toBe(503);
      expect(res.ms, 'answered within one limit, not two').toBeLessThan(TIMEOUT_MS + 500);
    } finally {
      clearTimeout(releaseUsers);
      await usersLock.release().catch(() => {});
      await skillsLock.release();
    }
  });

  it('the statement timeout is enforced in Postgres too: the backend is free again right after the limit, not when the lock goes', async () => {
    const lock = await holdLock(postgresEngine!.url!, 'skills');
    try {
      const res = await rawCall(server.trpcUrl, 'recordView', { method: 'POST', input: { skillId: t.skills.s }, token });
      expect(res.status).toBe(503);
      // Within a moment of the answer, no backend of ours still waits on the lock.
      await expect
        .poll(
          async () =>
            (await admin`select count(*)::int as n from pg_stat_activity where datname = current_database()
              and application_name = 'skill-views' and wait_event_type = 'Lock'`)[0]!.n,
          { timeout: 1500, interval: 100 },
        )
        .toBe(0);
    } finally {
      await lock.release();
    }
  });
});

describe.skipIf(!postgresEngine)('a time limit that passes during COMMIT (postgres, a database of its own)', () => {
  it('never answers 503 for a write that committed: the caller waits for COMMIT and gets its real outcome', async () => {
    const db = await openPrivateDb(postgresEngine!);
    const handle = createDb({ url: db.url!, poolSize: 2, requestTimeoutMs: TIMEOUT_MS });
    const server = await startTestServer(postgresEngine!, { handle });
    try {
      const t = await createTenant(db.handle.db, { skills: [skillSpec('s')] });
      // The insert takes 60 % of the limit and a deferred trigger another 60 % inside COMMIT, so the limit
      // passes while COMMIT runs (still within Postgres's statement_timeout for the COMMIT itself).
      const slow = Math.round(TIMEOUT_MS * 0.6) / 1000;
      await db.handle.db.execute(sql.raw(`
        create function slow_down() returns trigger language plpgsql as $$ begin perform pg_sleep(${slow}); return new; end $$;
        create trigger slow_insert before insert on user_skill_views for each row execute function slow_down();
        create constraint trigger slow_commit after insert on user_skill_views deferrable initially deferred
          for each row execute function slow_down();`));
      const token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      const res = await timed(() => rawCall(server.trpcUrl, 'recordView', { method: 'POST', input: { skillId: t.skills.s }, token }));
      const [row] = await query<{ n: number }>(db.handle.db, sql`select count(*)::int as n from user_skill_views where tenant_id = ${t.tenantId}::uuid`);
      expect(res.ms, 'the limit did pass before the answer').toBeGreaterThan(TIMEOUT_MS);
      expect({ status: res.value.status, committed: row!.n }).toEqual({ status: 200, committed: 1 });
    } finally {
      await server.close();
      await handle.close();
      await db.drop();
    }
  });
});

describe.skipIf(!postgresEngine || process.getuid?.() !== 0)('a backend frozen during COMMIT (postgres, SIGSTOP; needs root)', () => {
  it('answers 504 GATEWAY_TIMEOUT (outcome unknown) within two limits, not when the backend wakes', async () => {
    const db = await openPrivateDb(postgresEngine!);
    const handle = createDb({ url: db.url!, poolSize: 2, requestTimeoutMs: TIMEOUT_MS });
    const server = await startTestServer(postgresEngine!, { handle });
    let frozen: number | null = null;
    try {
      const t = await createTenant(db.handle.db, { skills: [skillSpec('s')] });
      // The insert and the deferred trigger each take 60 % of the limit, so the limit passes inside COMMIT;
      // the backend is frozen there, as a stalled server or network would leave it.
      const slow = Math.round(TIMEOUT_MS * 0.6) / 1000;
      await db.handle.db.execute(sql.raw(`
        create function slow_down() returns trigger language plpgsql as $$ begin perform pg_sleep(${slow}); return new; end $$;
        create trigger slow_insert before insert on user_skill_views for each row execute function slow_down();
        create constraint trigger slow_commit after insert on user_skill_views deferrable initially deferred
          for each row execute function slow_down();`));
      const token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      const call = timed(() => rawCall(server.trpcUrl, 'recordView', { method: 'POST', input: { skillId: t.skills.s }, token }));
      await new Promise((r) => setTimeout(r, TIMEOUT_MS * 0.6 + 300)); // inside COMMIT's deferred trigger
      const [backend] = await query<{ pid: number }>(
        db.handle.db,
        sql`select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()
            and state = 'active' and query ilike 'commit%'`,
      );
      frozen = backend!.pid;
      process.kill(frozen, 'SIGSTOP');
      // Thawed after three limits whatever happens, so a wrong answer is late rather than a hung test.
      const thaw = setTimeout((pid: number) => process.kill(pid, 'SIGCONT'), 3 * TIMEOUT_MS, frozen);
      const res = await call;
      clearTimeout(thaw);
      expect(res.value.status).toBe(504);
      expect(errorOf(res.value).data.code).toBe('GATEWAY_TIMEOUT');
      expect(res.ms).toBeLessThan(2 * TIMEOUT_MS + 700);
    } finally {
      if (frozen !== null) process.kill(frozen, 'SIGCONT');
      await server.close();
      await handle.close();
      await db.drop();
    }
  });
});

describe.each(engines)('/healthz runs a real request transaction on $name', (engine) => {
  it('answers 503 when the role switch fails (while `select 1` would still work)', async () => {
    const broken = await startTestServer(engine, { appRole: 'sv_role_that_does_not_exist' });
    try {
      const res = await fetch(`${broken.url}/healthz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ status: 'unavailable' });
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
      const call = await rawCall(broken.trpcUrl, 'whatsNew', { input: {}, token: 'x' });
      expect(errorOf(call).data.code).toBe('UNAUTHORIZED');
    } finally {
      await broken.close();
    }
  });
});
