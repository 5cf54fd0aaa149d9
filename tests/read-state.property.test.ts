// Property: random sequences of catalogue writes (edits, publishes, rollbacks, unpublishes, status changes, feedback)
// and read-state calls (recordView, markSeen, markAllSeen, setTracking); after every step, for every user and skill,
// the read procedures agree with each other and with a plain in-memory model (DESIGN "What changed since seen").
// Seeded: READ_STATE_SEED replays a run, READ_STATE_RUNS changes how many sequences run.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, DbHandle } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { asOwnerInTenant } from '../db/seed.ts';
import { createContextInner } from '../server/context.ts';
import { createCaller } from '../server/router.ts';
import { engines } from './support/engines.ts';
import { ReadStateModel, type Field, type ModelSkill, type Status } from './support/read-state-model.ts';

const SEED = Number(process.env.READ_STATE_SEED ?? 20261129);
const RUNS = Number(process.env.READ_STATE_RUNS ?? 200);
/** A skill id in no tenant: markSeen skips it. */
const FOREIGN_SKILL = randomUUID();

// Small alphabets, so edits repeat values and go back to earlier ones.
const value = fc.constantFrom('A', 'B', 'C');
const index = fc.nat({ max: 3 }); // taken modulo the run's user or skill count

const step = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('edit' as const), skill: index, field: fc.constantFrom<Field>('name', 'description'), value }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('publishNew' as const), skill: index, name: value, description: value }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('publishOld' as const), skill: index, version: fc.nat({ max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('unpublish' as const), skill: index }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('status' as const), skill: index, status: fc.constantFrom<Status>('draft', 'published', 'archived') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('backdate' as const), skill: index }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('feedback' as const), skill: index, author: fc.option(index, { nil: null }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('view' as const), user: index, skill: index }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('markSeen' as const), user: index, skills: fc.uniqueArray(index, { minLength: 1, maxLength: 4 }), foreign: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('markAllSeen' as const), user: index }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('tracking' as const), user: index, enabled: fc.boolean() }) },
);
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

const scenario = fc.record({
  users: fc.integer({ min: 2, max: 3 }),
  skills: fc.integer({ min: 3, max: 4 }),
  steps: fc.array(step, { minLength: 5, maxLength: 10 }),
});

interface Run {
  tenantId: string;
  userIds: string[];
  skillIds: string[];
  /** versionIds[skill][version - 1] */
  versionIds: string[][];
  model: ReadStateModel;
}

describe.each(engines)('read state property on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open();
  });
  afterAll(() => h?.close());

  const owner = (run: Run, fn: Parameters<typeof asOwnerInTenant>[2]) => asOwnerInTenant(h.db, run.tenantId, fn);
  const caller = (run: Run, user: number) =>
    createCaller(createContextInner({ db: h.db as Database, session: { tenantId: run.tenantId, userId: run.userIds[user]! } }));

  /** A fresh tenant: users, and skills each published at v1 named 'A' / 'a' (five statements, one transaction). */
  async function setUp(userCount: number, skillCount: number): Promise<Run> {
    const tenantId = randomUUID();
    const userIds = Array.from({ length: userCount }, () => randomUUID());
    const skillIds = Array.from({ length: skillCount }, () => randomUUID());
    const versionIds = skillIds.map(() => [randomUUID()]);
    await asOwnerInTenant(h.db, tenantId, async (tx) => {
      await tx.execute(sql`insert into tenants (id, name, slug) values (${tenantId}::uuid, 'property', ${`p-${tenantId}`})`);
      const list = <T>(items: T[], row: (item: T, i: number) => ReturnType<typeof sql>) => sql.join(items.map(row), sql`, `);
      await tx.execute(sql`insert into users (id, tenant_id, email, name) values ${list(userIds, (id, i) => sql`(${id}::uuid, ${tenantId}::uuid, ${`u${i}@${tenantId}.test`}, ${`User ${i}`})`)}`);
      await tx.execute(sql`insert into skills (id, tenant_id, name, slug, description, category, status) values ${list(skillIds, (id, i) => sql`(${id}::uuid, ${tenantId}::uuid, 'A', ${`s${i}`}, 'A', 'Testing', 'published')`)}`);
      await tx.execute(sql`insert into skill_versions (id, tenant_id, skill_id, version, name, description) values ${list(skillIds, (id, i) => sql`(${versionIds[i]![0]!}::uuid, ${tenantId}::uuid, ${id}::uuid, 1, 'A', 'A')`)}`);
      await tx.execute(sql`update skills s set published_version_id = v.id from skill_versions v where v.skill_id = s.id and s.tenant_id = ${tenantId}::uuid`);
    });
    const skills: ModelSkill[] = skillIds.map(() => ({
      name: 'A',
      description: 'A',
      publishedVersion: 1,
      status: 'published',
      versions: [{ name: 'A', description: 'A' }],
      inWindow: true,
      feedback: [],
    }));
    return { tenantId, userIds, skillIds, versionIds, model: new ReadStateModel(userCount, skills) };
  }

  /** Applies one step to the database (owner writes as plain SQL, read-state calls through createCaller) and the model. */
  async function apply(run: Run, s: Step) {
    const { model } = run;
    const skill = 'skill' in s ? s.skill % run.skillIds.length : 0;
    const skillId = run.skillIds[skill]!;
    const user = 'user' in s ? s.user % run.userIds.length : 0;
    const m = model.skills[skill]!;
    switch (s.kind) {
      case 'edit': {
        const column = sql.identifier(s.field);
        await owner(run, (tx) => tx.execute(sql`update skills set ${column} = ${s.value} where id = ${skillId}::uuid`));
        model.setContent(skill, { ...m, [s.field]: s.value });
        return;
      }
      case 'publishNew': {
        const version = m.versions.length + 1;
        const id = randomUUID();
        await owner(run, async (tx) => {
          await tx.execute(sql`insert into skill_versions (id, tenant_id, skill_id, version, name, description)
            values (${id}::uuid, ${run.tenantId}::uuid, ${skillId}::uuid, ${version}, ${s.name}, ${s.description})`);
          await tx.execute(sql`update skills set published_version_id = ${id}::uuid, name = ${s.name}, description = ${s.description} where id = ${skillId}::uuid`);
        });
        run.versionIds[skill]!.push(id);
        m.versions.push({ name: s.name, description: s.description });
        model.setContent(skill, { name: s.name, description: s.description, publishedVersion: version });
        return;
      }
      case 'publishOld': {
        // Publishes an existing version (a rollback, or the current one again: no change).
        const version = (s.version % m.versions.length) + 1;
        const snapshot = m.versions[version - 1]!;
        await owner(run, (tx) =>
          tx.execute(sql`update skills set published_version_id = ${run.versionIds[skill]![version - 1]!}::uuid,
            name = ${snapshot.name}, description = ${snapshot.description} where id = ${skillId}::uuid`),
        );
        model.setContent(skill, { ...snapshot, publishedVersion: version });
        return;
      }
      case 'unpublish':
        await owner(run, (tx) => tx.execute(sql`update skills set published_version_id = null where id = ${skillId}::uuid`));
        model.setContent(skill, { ...m, publishedVersion: null });
        return;
      case 'status':
        await owner(run, (tx) => tx.execute(sql`update skills set status = ${s.status} where id = ${skillId}::uuid`));
        m.status = s.status;
        return;
      case 'backdate':
        // An explicit updated_at is kept (imports); no content change, so no new revision.
        await owner(run, (tx) => tx.execute(sql`update skills set updated_at = now() - interval '40 days' where id = ${skillId}::uuid`));
        m.inWindow = false;
        return;
      case 'feedback': {
        const author = s.author === null ? null : s.author % run.userIds.length;
        await owner(run, (tx) =>
          tx.execute(sql`insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment)
            values (${run.tenantId}::uuid, ${skillId}::uuid, ${author === null ? null : run.userIds[author]!}::uuid, 'comment', 'property')`),
        );
        m.feedback.push(author);
        return;
      }
      case 'view': {
        const result = await caller(run, user).recordView({ skillId });
        const tracked = model.recordView(user, skill);
        expect(result.tracked, 'recordView.tracked').toBe(tracked);
        expect(result.view?.viewCount ?? null, 'recordView.view.viewCount').toBe(tracked ? model.views[user]![skill]!.viewCount : null);
        return;
      }
      case 'markSeen': {
        const skills = s.skills.map((i) => i % run.skillIds.length);
        const ids = skills.map((i) => run.skillIds[i]!);
        const { marked } = await caller(run, user).markSeen({ skillIds: s.foreign ? [...ids, FOREIGN_SKILL] : ids });
        expect(marked, 'markSeen.marked').toBe(model.markSeen(user, skills));
        return;
      }
      case 'markAllSeen': {
        const { marked } = await caller(run, user).markAllSeen({});
        expect(marked, 'markAllSeen.marked').toBe(model.markSeen(user, null));
        return;
      }
      case 'tracking': {
        const { enabled } = await caller(run, user).setTracking({ enabled: s.enabled });
        expect(enabled).toBe(s.enabled);
        model.tracking[user] = s.enabled;
        return;
      }
    }
  }

  /** Every read procedure, for every user and skill, against each other and the model. */
  async function check(run: Run, where: string) {
    const { model } = run;
    for (let user = 0; user < run.userIds.length; user++) {
      const c = caller(run, user);
      const at = `${where}, user ${user}`;
      const views = await c.viewsForSkills({ skillIds: [...run.skillIds, FOREIGN_SKILL] });
      const expectedViews = new Map(
        run.skillIds.flatMap((id, skill) => {
          const v = model.views[user]![skill];
          return v ? [[id, { hasUpdate: model.contentUnseen(user, skill), viewCount: v.viewCount, lastViewedVersion: v.lastViewedVersion }] as const] : [];
        }),
      );
      const actualViews = new Map([...views].map(([id, v]) => [id, { hasUpdate: v.hasUpdate, viewCount: v.viewCount, lastViewedVersion: v.lastViewedVersion }]));
      expect(actualViews, `viewsForSkills ${at}`).toEqual(expectedViews);

      for (let skill = 0; skill < run.skillIds.length; skill++) {
        const summary = await c.changeSummary({ skillId: run.skillIds[skill]! });
        const v = model.views[user]![skill];
        const content = summary.changes.some((ch) => ch.kind === 'version_bump' || ch.kind === 'details_updated');
        // The equivalence between procedures, independent of the model.
        expect(content, `hasUpdate ⇔ version_bump/details_updated ${at}, skill ${skill}`).toBe(views.get(run.skillIds[skill]!)?.hasUpdate ?? false);
        expect(
          { firstView: summary.firstView, currentVersion: summary.currentVersion, lastViewedVersion: summary.lastViewedVersion, changes: summary.changes },
          `changeSummary ${at}, skill ${skill}`,
        ).toEqual({
          firstView: !v,
          currentVersion: model.skills[skill]!.publishedVersion,
          lastViewedVersion: v?.lastViewedVersion ?? null,
          changes: model.expectedChanges(user, skill),
        });
      }

      const paged: { skillId: string; updatedAt: Date }[] = [];
      let cursor: string | null = null;
      for (let page = 0; ; page++) {
        expect(page, `whatsNew pages end ${at}`).toBeLessThan(10);
        const res: Awaited<ReturnType<typeof c.whatsNew>> = await c.whatsNew({ limit: 2, cursor });
        paged.push(...res.items.map((i) => ({ skillId: i.skillId, updatedAt: i.updatedAt })));
        cursor = res.nextCursor;
        if (!cursor) break;
      }
      const expectedFeed = model.expectedFeed(user).map((i) => run.skillIds[i]!);
      expect(paged.map((i) => i.skillId).sort(), `whatsNew membership ${at}`).toEqual([...expectedFeed].sort());
      const ordered = [...paged].sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime() || (a.skillId < b.skillId ? 1 : -1));
      expect(paged, `whatsNew order ${at}`).toEqual(ordered);
      expect(await c.whatsNewCount({}), `whatsNewCount ${at}`).toEqual({ count: paged.length, capped: false });
    }
  }

  it(`holds for ${RUNS} random sequences (seed ${SEED})`, async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async ({ users, skills, steps }) => {
        runs += 1;
        const run = await setUp(users, skills);
        await check(run, 'at the start');
        for (const [i, s] of steps.entries()) {
          await apply(run, s);
          await check(run, `after step ${i} ${JSON.stringify(s)}`);
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: process.env.READ_STATE_SHRINK === '0' },
    );
    expect(runs).toBe(RUNS);
  }, 600_000);
});
