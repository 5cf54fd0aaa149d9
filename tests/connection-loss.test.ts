// Lost database connections: backends terminated under load never kill the server, every call answers in time, and counts stay exact.
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { openPrivateDb, type PrivateDb } from './support/private-db.ts';
import { TEST_SECRET, tokenFor } from './support/server.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';
import { expectExactAccounting, recordViewLoad } from './support/view-load.ts';

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
    const load = recordViewLoad(server.url, tokens, t.skills.s!, TIMEOUT_MS);
    load.start(12);

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
    await load.stop();
    // Calls succeed again within 5 s of the last termination.
    const recoveredAfterMs = await load.recovery(lastKill, 5000);

    expect(terminated, 'the rounds terminated some backends').toBeGreaterThan(0);
    expect(server.child.exitCode, `the server died:\n${server.output()}`).toBeNull();
    expect(server.output()).not.toMatch(/TypeError|uncaught/i);
    expect(recoveredAfterMs).toBeLessThan(5000);
    const slowest = Math.max(...load.outcomes.map((o) => o.ms));
    expect(slowest, 'every call answered within the time limit (plus scheduling slack)').toBeLessThan(TIMEOUT_MS + 1500);
    for (const s of new Set(load.outcomes.map((o) => o.status))) expect([200, 503], `unexpected status ${s}`).toContain(s);
    expect(load.outcomes.filter((o) => o.status === 503).length, 'some calls did hit a terminated backend').toBeGreaterThan(0);
    await expectExactAccounting(admin, t.tenantId, t.userIds, load.outcomes);
  }, 60_000);
});
