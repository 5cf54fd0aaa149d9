// markAllSeen and markSeen under concurrency on a PostgreSQL cluster of the test's own: the same user's calls
// racing each other, recordView and catalogue edits. An UPDATE whose WHERE held the correlated "something unseen"
// subqueries crashed PostgreSQL 15.20 (a segfault in ExecSubPlan under EvalPlanQual) when another transaction had
// just changed a chosen row; the cluster is private so such a crash can hurt no other suite. Postgres only.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type DbHandle } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';
import { callerFor } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { sql } from 'drizzle-orm';
import { asOwnerInTenant } from '../db/seed.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { canMakeCluster, startCluster, type PgCluster } from './support/pg-cluster.ts';

const enabled = engines.some((e) => e.name === 'postgres') && canMakeCluster();
const SKILLS = 200;
const RUN_MS = 4000;

describe.skipIf(!enabled)('markSeen and markAllSeen racing the same user (a PostgreSQL cluster of the test’s own)', () => {
  let cluster: PgCluster;
  let handle: DbHandle;
  let t: TenantFixture;
  const slugs = Array.from({ length: SKILLS }, (_, i) => `race-${i}`);

  beforeAll(async () => {
    cluster = await startCluster();
    handle = createDb({ url: cluster.url, poolSize: 10 });
    await migrate(handle);
    t = await createTenant(handle.db, { userCount: 1, skills: slugs.map((s) => skillSpec(s)) });
    const me = callerFor(handle.db, t);
    await Promise.all([0, 1, 2, 3].map(async (k) => {
      for (let i = k; i < SKILLS; i += 4) await me.recordView({ skillId: t.skills[slugs[i]!]! });
    }));
  }, 120_000);
  afterAll(async () => {
    await handle?.close();
    await cluster?.destroy();
  });

  it('never crashes the server, deadlocks or fails, and ends with nothing unseen', async () => {
    const me = callerFor(handle.db, t);
    const errors: string[] = [];
    const until = Date.now() + RUN_MS;
    let marks = 0;
    let edits = 0;
    const loop = async (step: (i: number) => Promise<unknown>) => {
      for (let i = 0; Date.now() < until; i++) {
        try {
          await step(i);
        } catch (err) {
          errors.push(String((err as { cause?: unknown }).cause ?? err));
        }
      }
    };
    const skillAt = (i: number) => t.skills[slugs[i % SKILLS]!]!;
    await Promise.all([
      // Four callers marking everything, two marking a few: the same rows, chosen and updated concurrently.
      ...[0, 1, 2, 3].map(() => loop(async () => (marks += (await me.markAllSeen({})).marked))),
      ...[0, 1].map((k) => loop((i) => me.markSeen({ skillIds: [skillAt(i + k), skillAt(i + k + 7), skillAt(i + k + 13)] }))),
      // The same user's visits change the rows in between, and the owner renames every skill over and over, so
      // each mark has every row to update.
      ...[0, 1].map((k) => loop((i) => me.recordView({ skillId: skillAt(i * 5 + k) }))),
      loop(async (i) => {
        await asOwnerInTenant(handle.db, t.tenantId, (tx) =>
          tx.execute(sql`update skills set name = ${`race ${i}`} where tenant_id = ${t.tenantId}::uuid`),
        );
        edits += 1;
      }),
    ]);
    const log = readFileSync(cluster.logFile, 'utf8');

    expect(errors, 'every call succeeded (no crash, no deadlock, no lost connection)').toEqual([]);
    expect(log, 'no server process crashed').not.toMatch(/terminated by signal|server process .* was terminated/);
    expect(edits, 'the edits kept changing rows during the run').toBeGreaterThan(5);
    expect(marks, 'the marks found things to mark').toBeGreaterThan(0);
    await me.markAllSeen({});
    expect(await me.whatsNewCount({})).toEqual({ count: 0, capped: false });
    const views = await me.viewsForSkills({ skillIds: slugs.map((s) => t.skills[s]!) });
    expect([...views.values()].filter((v) => v.hasUpdate)).toEqual([]);
  }, 60_000);
});
