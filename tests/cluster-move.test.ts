// A database moved to another cluster by dump and restore (as blue/green upgrades and migrations between hosts
// do): the read state still answers right there. Nothing it stores may depend on the cluster, such as transaction
// ids: the new cluster's counter starts elsewhere. Postgres only, on two clusters of the test's own.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type DbHandle } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';
import { callerFor } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { createTenant, editSkill, insertFeedback, skillSpec, type TenantFixture } from './support/factory.ts';
import { canMakeCluster, findPgBin, startCluster, type PgCluster } from './support/pg-cluster.ts';

const enabled = engines.some((e) => e.name === 'postgres') && canMakeCluster();

describe.skipIf(!enabled)('a database moved to another cluster (pg_dump, then restore)', () => {
  let from: PgCluster;
  let to: PgCluster;
  let dir: string;
  let t: TenantFixture;
  let skill: string;

  beforeAll(async () => {
    [from, to] = await Promise.all([startCluster(), startCluster()]);
    dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-move-'));
    const handle = createDb({ url: from.url, poolSize: 2 });
    try {
      await migrate(handle);
      // The old cluster's transaction counter runs well ahead of the new one's when the view is recorded.
      const burn = postgres(from.url, { max: 1, onnotice: () => {} });
      for (let i = 0; i < 3000; i++) await burn`select pg_current_xact_id()`;
      await burn.end();
      t = await createTenant(handle.db, { userCount: 2, skills: [skillSpec('moved')] });
      skill = t.skills.moved!;
      await callerFor(handle.db, t, 0).recordView({ skillId: skill });
      await insertFeedback(handle.db, t, { skillId: skill, userId: t.userIds[1]! });
    } finally {
      await handle.close();
    }
    const bin = findPgBin()!;
    const file = path.join(dir, 'dump.sql');
    execFileSync(path.join(bin, 'pg_dump'), ['--no-owner', '--no-privileges', '-f', file, from.url]);
    execFileSync(path.join(bin, 'psql'), ['-q', '-v', 'ON_ERROR_STOP=1', '-f', file, to.url], { stdio: 'ignore' });
  }, 180_000);
  afterAll(async () => {
    await Promise.all([from?.destroy(), to?.destroy()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reports feedback and edits made after the move, clears them on a visit, and keeps what was unseen before it', async () => {
    const handle = createDb({ url: to.url, poolSize: 2 });
    try {
      await migrate(handle); // grants to the app role, which a dump without privileges does not carry
      const viewer = callerFor(handle.db, t, 0);
      const newFeedback = async () =>
        (await viewer.changeSummary({ skillId: skill })).changes.find((c) => c.kind === 'new_feedback')?.count ?? 0;

      expect(await newFeedback(), 'the feedback written before the move, after the view, is still new').toBe(1);
      await insertFeedback(handle.db, t, { skillId: skill, userId: t.userIds[1]! });
      expect(await newFeedback(), 'feedback written after the move is new').toBe(2);
      await viewer.recordView({ skillId: skill });
      expect(await newFeedback(), 'a visit on the new cluster sees it all').toBe(0);
      await insertFeedback(handle.db, t, { skillId: skill, userId: t.userIds[1]! });
      expect(await newFeedback(), 'and later feedback is new again').toBe(1);
      await editSkill(handle.db, t, skill, { description: 'after the move' });
      expect((await viewer.viewsForSkills({ skillIds: [skill] })).get(skill)?.hasUpdate).toBe(true);
      await viewer.markSeen({ skillIds: [skill] });
      expect(await newFeedback()).toBe(0);
      expect((await viewer.viewsForSkills({ skillIds: [skill] })).get(skill)?.hasUpdate).toBe(false);
    } finally {
      await handle.close();
    }
  }, 60_000);
});
