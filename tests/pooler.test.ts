// Behind a real PgBouncer in transaction mode: exact counts and no leak with DB_PREPARE=false, no hang with the default, safe concurrent migrations.
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, type DbHandle } from '../db/client.ts';
import { migrate, readMigrations } from '../db/migrate.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { rawCall, startTestServer, tokenFor, type TestServer } from './support/server.ts';

const pooledUrl = inject('pgbouncerUrl');
const directUrl = inject('pgUrl');
const postgresEngine = engines.find((e) => e.name === 'postgres');

describe.skipIf(!pooledUrl || !postgresEngine)('behind PgBouncer in transaction mode (pool of 4 server connections)', () => {
  let direct: DbHandle;
  let admin: postgres.Sql;
  let a: TenantFixture;
  let b: TenantFixture;

  beforeAll(async () => {
    direct = await postgresEngine!.open();
    admin = postgres(directUrl!, { max: 2, onnotice: () => {} });
    a = await createTenant(direct.db, { userCount: 3, skills: [skillSpec('s1'), skillSpec('s2', { versionCount: 2 })] });
    b = await createTenant(direct.db, { userCount: 3, skills: [skillSpec('s1'), skillSpec('s2')] });
  });
  afterAll(async () => {
    await admin?.end();
    await direct?.close();
  });

  /** Backends of this app (application_name skill-views) left inside a transaction. */
  async function stuckBackends(): Promise<number> {
    const [row] = await admin`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and application_name = 'skill-views' and state like 'idle in transaction%'`;
    return row!.n as number;
  }

  it('DB_PREPARE=false: 320 concurrent recordView over HTTP add exactly their count per user, with no view crossing users or tenants', async () => {
    const pooled = createDb({ url: pooledUrl!, poolSize: 24, prepare: false, requestTimeoutMs: 15_000 });
    const server = await startTestServer(postgresEngine!, { handle: pooled });
    try {
      const tokens = new Map<string, string>();
      const plan: { tenant: TenantFixture; user: string; skill: string }[] = [];
      for (let i = 0; i < 320; i++) {
        const tenant = i % 2 === 0 ? a : b;
        const user = tenant.userIds[i % 3]!;
        const skill = i % 5 === 0 ? tenant.skills.s2! : tenant.skills.s1!;
        plan.push({ tenant, user, skill });
      }
      for (const p of plan) if (!tokens.has(p.user)) tokens.set(p.user, await tokenFor({ tenantId: p.tenant.tenantId, userId: p.user }));
      const results = await Promise.all(
        plan.map((p) => rawCall(server.trpcUrl, 'recordView', { method: 'POST', input: { skillId: p.skill }, token: tokens.get(p.user)! })),
      );
      expect(results.map((r) => r.status)).toEqual(plan.map(() => 200));
      // Each (user, skill) saw the counts 1..n exactly once: no lost, doubled or misattributed write.
      const byRow = new Map<string, number[]>();
      results.forEach((r, i) => {
        const p = plan[i]!;
        const view = r.body.result.data.json.view;
        expect(view.skillId).toBe(p.skill);
        const key = `${p.user}/${p.skill}`;
        byRow.set(key, [...(byRow.get(key) ?? []), view.viewCount]);
      });
      for (const counts of byRow.values()) {
        expect(counts.sort((x, y) => x - y)).toEqual(Array.from({ length: counts.length }, (_, i) => i + 1));
      }
      // What is committed (read directly as the superuser) is exactly what was acknowledged.
      const rows = await admin`select tenant_id, user_id, skill_id, view_count from user_skill_views
        where tenant_id in (${a.tenantId}, ${b.tenantId})`;
      const committed = new Map(rows.map((r) => [`${r.user_id}/${r.skill_id}`, r.view_count as number]));
      for (const [key, counts] of byRow) expect(committed.get(key)).toBe(counts.length);
      expect(rows.reduce((sum, r) => sum + (r.view_count as number), 0)).toBe(320);
      for (const r of rows) {
        const tenant = r.tenant_id === a.tenantId ? a : b;
        expect(tenant.userIds).toContain(r.user_id);
        expect(Object.values(tenant.skills)).toContain(r.skill_id);
      }
      // Through the same pooler, each user reads back only their own views, whatever skill ids they ask for.
      const everySkill = [...Object.values(a.skills), ...Object.values(b.skills)];
      for (const tenant of [a, b]) {
        for (const user of tenant.userIds) {
          const res = await rawCall(server.trpcUrl, 'viewsForSkills', { method: 'POST', input: { skillIds: everySkill }, token: tokens.get(user)! });
          expect(res.status).toBe(200);
          const entries = res.body.result.data.json as [string, { viewCount: number }][];
          const mine = [...byRow].filter(([key]) => key.startsWith(`${user}/`));
          expect(entries.map(([skill, v]) => `${user}/${skill}:${v.viewCount}`).sort()).toEqual(
            mine.map(([key, counts]) => `${key}:${counts.length}`).sort(),
          );
        }
      }
      expect(await stuckBackends()).toBe(0);
    } finally {
      await server.close();
      await pooled.close();
    }
  });

  it('DB_PREPARE=true (the direct-connection default) behind the pooler: every request answers within REQUEST_TIMEOUT_MS, none hangs, no backend is left in a transaction', async () => {
    const timeoutMs = 2000;
    const pooled = createDb({ url: pooledUrl!, poolSize: 8, prepare: true, requestTimeoutMs: timeoutMs });
    const server = await startTestServer(postgresEngine!, { handle: pooled });
    try {
      const token = await tokenFor({ tenantId: a.tenantId, userId: a.userIds[0]! });
      const statuses: number[] = [];
      for (let round = 0; round < 4; round++) {
        const timed = await Promise.all(
          Array.from({ length: 32 }, async (_, i) => {
            const started = performance.now();
            const res =
              i % 2 === 0
                ? await rawCall(server.trpcUrl, 'recordView', { method: 'POST', input: { skillId: a.skills.s1 }, token })
                : await rawCall(server.trpcUrl, 'changeSummary', { input: { skillId: a.skills.s2 }, token });
            return { status: res.status, ms: performance.now() - started, body: res.text };
          }),
        );
        for (const t of timed) {
          expect(t.ms, `a request took ${Math.round(t.ms)} ms`).toBeLessThan(timeoutMs + 1500);
          expect([200, 500, 503]).toContain(t.status);
          expect(t.body).not.toMatch(/prepared statement|select |insert /i); // no SQL or driver text to the client
        }
        statuses.push(...timed.map((t) => t.status));
      }
      // The pooler breaks named statements, so some calls fail; none may hang, and the app keeps answering.
      expect(statuses.length).toBe(128);
      expect(statuses.some((s) => s !== 200)).toBe(true); // the misconfiguration is real here: it fails, fast
      const health = await fetch(`${server.url}/healthz`);
      expect([200, 503]).toContain(health.status);
      await expect.poll(stuckBackends, { timeout: 5000, interval: 200 }).toBe(0);
    } finally {
      await server.close();
      await pooled.close();
    }
  });

  it('concurrent migrators through the pooler and directly all succeed, and each migration is applied exactly once', async () => {
    const name = `skillviews_migrators_${randomBytes(5).toString('hex')}`;
    await admin.unsafe(`create database "${name}"`);
    const target = new URL(directUrl!);
    target.pathname = `/${name}`;
    const viaPooler = new URL(pooledUrl!);
    viaPooler.pathname = `/${name}`;
    try {
      const runs = await Promise.all(
        Array.from({ length: 6 }, (_, i) => {
          const url = (i % 3 === 2 ? target : viaPooler).toString();
          const handle = createDb({ url, poolSize: 1, prepare: false });
          return migrate(handle, { appRole: 'skillviews_app' }).finally(() => handle.close());
        }),
      );
      const expected = readMigrations().map((m) => m.tag);
      // Exactly one migrator applied everything; the others waited for its lock and found nothing to do.
      expect(runs.map((r) => r.applied.length).sort((x, y) => x - y)).toEqual([0, 0, 0, 0, 0, expected.length]);
      const check = postgres(target.toString(), { max: 1, onnotice: () => {} });
      try {
        const journal = await check`select tag from drizzle.skill_views_migrations order by created_at`;
        expect(journal.map((r) => r.tag)).toEqual(expected);
        const [locks] = await check`select count(*)::int as n from pg_locks where locktype = 'advisory'`;
        expect(locks!.n).toBe(0); // nothing held by an idle pooled backend
      } finally {
        await check.end();
      }
      // A later start, through the pooler, is a no-op and does not wait.
      const later = createDb({ url: viaPooler.toString(), poolSize: 1, prepare: false });
      const started = performance.now();
      await expect(migrate(later, { appRole: 'skillviews_app' }).finally(() => later.close())).resolves.toEqual({ applied: [] });
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
    }
  });
});
