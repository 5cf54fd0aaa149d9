// A PostgreSQL restart under load (a cluster of the test's own): the server process survives, answers in time, and serves again within 5 s.
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { canMakeCluster, startCluster, type PgCluster } from './support/pg-cluster.ts';
import { TEST_SECRET, tokenFor } from './support/server.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';
import { expectExactAccounting, recordViewLoad } from './support/view-load.ts';

// A slow suite: it runs once, in the Postgres run (DATABASE_URL set), not per engine.
const enabled = engines.some((e) => e.name === 'postgres') && canMakeCluster();
const TIMEOUT_MS = 3000;

describe.skipIf(!enabled)('a PostgreSQL restart under load (a real server process on a cluster of the test’s own)', () => {
  let cluster: PgCluster;
  let server: ServerProcess;
  let t: TenantFixture;

  beforeAll(async () => {
    cluster = await startCluster();
    const handle = createDb({ url: cluster.url, poolSize: 2 });
    try {
      await migrate(handle);
      t = await createTenant(handle.db, { userCount: 2, skills: [skillSpec('s')] });
    } finally {
      await handle.close();
    }
    server = await startServerProcess({
      DATABASE_URL: cluster.url,
      AUTH_SECRET: TEST_SECRET,
      REQUEST_TIMEOUT_MS: String(TIMEOUT_MS),
      DB_POOL_SIZE: '6',
      MIGRATE_ON_START: 'false',
      LOG_LEVEL: 'fatal',
    });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await cluster?.destroy();
  });

  it('calls fail fast while the database is down, never hang, succeed again within 5 s of it coming back, and lose no acknowledged view', async () => {
    const tokens = await Promise.all(t.userIds.map((userId) => tokenFor({ tenantId: t.tenantId, userId })));
    const load = recordViewLoad(server.url, tokens, t.skills.s!, TIMEOUT_MS);
    load.start(8, 5);
    await new Promise((r) => setTimeout(r, 800));
    cluster.stop(); // fast shutdown: sessions are terminated, the server refuses connections
    await new Promise((r) => setTimeout(r, 1500));
    cluster.start();
    const recoveredAfterMs = await load.recovery(performance.now(), 8000);
    await new Promise((r) => setTimeout(r, 500));
    await load.stop();

    expect(server.child.exitCode, `the server died:\n${server.output()}`).toBeNull();
    expect(recoveredAfterMs).toBeLessThan(5000);
    expect(load.outcomes.filter((o) => o.status === -1), 'every call got an answer').toEqual([]);
    expect(Math.max(...load.outcomes.map((o) => o.ms))).toBeLessThan(TIMEOUT_MS + 1500);
    for (const s of new Set(load.outcomes.map((o) => o.status))) expect([200, 503]).toContain(s);
    expect(load.outcomes.some((o) => o.status === 503), 'some calls met the database down').toBe(true);

    const check = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      await expectExactAccounting(check, t.tenantId, t.userIds, load.outcomes);
    } finally {
      await check.end();
    }
  }, 90_000);
});
