// Lost database connections: backends terminated under load never kill the server, every call answers in time, and counts stay exact.
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { openPrivateDb, type PrivateDb } from './support/private-db.ts';
import { TEST_SECRET, tokenFor } from './support/server.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

const postgresEngine = engines.find((e) => e.name === 'postgres');
const TIMEOUT_MS = 3000;

describe.skipIf(!postgresEngine)('connection loss (a real server process, backends terminated with pg_terminate_backend)', () => {
  let db: PrivateDb;
  let admin: postgres.Sql;
  let server: ServerProcess;
  let t: TenantFixture;

  beforeAll(async () => {
    db = await openPrivateDb(postgresEngine!);
    admin = postgres(db.url!, { max: 1, onnotice: () => {} });
    t = await createTenant(db.handle.db, { userCount: 4, skills: [skillSpec('s')] });
    server = await startServerProcess({
      DATABASE_URL: db.url!,
      AUTH_SECRET: TEST_SECRET,
      REQUEST_TIMEOUT_MS: String(TIMEOUT_MS),
      DB_POOL_SIZE: '6',
      MIGRATE_ON_START: 'false',
      LOG_LEVEL: 'error',
    });
  }, 90_000);
  afterAll(async () => {
    await server?.stop();
    await admin?.end();
    await db?.drop();
  });

  it('six rounds of terminated backends under load: the process survives, every call answers within the time limit, calls succeed again within 5 s, and no acknowledged view is lost', async () => {
    const tokens = await Promise.all(t.userIds.map((userId) => tokenFor({ tenantId: t.tenantId, userId })));
    const outcomes: { status: number; ms: number; user: number }[] = [];
    let stop = false;
    const call = async (user: number) => {
      const started = performance.now();
      let status = 0;
      try {
        const res = await fetch(`${server.url}/trpc/recordView`, {
          method: 'POST',
          headers: { authorization: `Bearer ${tokens[user]}`, 'content-type': 'application/json' },
          body: JSON.stringify({ json: { skillId: t.skills.s } }),
          signal: AbortSignal.timeout(TIMEOUT_MS * 5),
        });
        status = res.status;
        await res.arrayBuffer();
      } catch {
        status = -1; // no answer at all (connection refused, reset, or our own 15 s give-up)
      }
      return { status, ms: performance.now() - started, user };
    };
    const workers = Array.from({ length: 12 }, async (_, w) => {
      while (!stop) outcomes.push(await call(w % tokens.length));
    });

    let terminated = 0;
    for (let round = 0; round < 6; round++) {
      await new Promise((r) => setTimeout(r, 600));
      const killed = await admin`select count(*)::int as n from (
          select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and application_name = 'skill-views' and pid <> pg_backend_pid()) k`;
      terminated += killed[0]!.n as number;
    }
    const lastKill = performance.now();
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await Promise.all(workers);

    // Calls succeed again within 5 s of the last termination.
    let recoveredAfterMs = Infinity;
    while (performance.now() - lastKill < 5000) {
      const probe = await call(0);
      outcomes.push(probe);
      if (probe.status === 200) {
        recoveredAfterMs = performance.now() - lastKill;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }

    expect(terminated, 'the rounds terminated some backends').toBeGreaterThan(0);
    expect(server.child.exitCode, `the server died:\n${server.output()}`).toBeNull();
    expect(server.output()).not.toMatch(/TypeError|uncaught/i);
    expect(recoveredAfterMs).toBeLessThan(5000);
    const slowest = Math.max(...outcomes.map((o) => o.ms));
    expect(slowest, 'every call answered within the time limit (plus scheduling slack)').toBeLessThan(TIMEOUT_MS + 1500);
    const statuses = new Set(outcomes.map((o) => o.status));
    for (const s of statuses) expect([200, 503], `unexpected status ${s}`).toContain(s);
    expect(outcomes.filter((o) => o.status === 503).length, 'some calls did hit a terminated backend').toBeGreaterThan(0);

    // Exact accounting per user: every acknowledged view is committed; a failed call committed at most its own.
    const rows = await admin`select user_id, view_count from user_skill_views where tenant_id = ${t.tenantId}`;
    const committed = new Map(rows.map((r) => [r.user_id as string, r.view_count as number]));
    t.userIds.forEach((userId, user) => {
      const acked = outcomes.filter((o) => o.user === user && o.status === 200).length;
      const failed = outcomes.filter((o) => o.user === user && o.status !== 200).length;
      const count = committed.get(userId) ?? 0;
      expect(count).toBeGreaterThanOrEqual(acked);
      expect(count).toBeLessThanOrEqual(acked + failed);
    });
    // Nothing is left inside a transaction on the server.
    const [stuck] = await admin`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and application_name = 'skill-views' and state like 'idle in transaction%'`;
    expect(stuck!.n).toBe(0);
  }, 60_000);
});
