// Commit order, not clocks (DESIGN "What changed since seen"): an edit or feedback whose transaction began before a
// view and committed after it is unseen by all four read procedures alike; the same write committed before the
// view is seen. Postgres only: it takes two real connections (PGlite has one).
import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { callerFor } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';

const postgresEngine = engines.find((e) => e.name === 'postgres');

type Caller = ReturnType<typeof callerFor>;

/** One catalogue write by the owner (the host app), on the owner's own connection. */
type Write = (tx: postgres.TransactionSql, t: TenantFixture, skillId: string) => Promise<unknown>;

const writes: Record<'name' | 'description' | 'publish' | 'feedback', Write> = {
  name: (tx, _t, skillId) => tx`update skills set name = 'Renamed in a long transaction' where id = ${skillId}`,
  description: (tx, _t, skillId) => tx`update skills set description = 'Rewritten in a long transaction' where id = ${skillId}`,
  // A new version with the same name and description: only the version moves.
  publish: async (tx, t, skillId) => {
    const [v2] = await tx<{ id: string }[]>`
      insert into skill_versions (tenant_id, skill_id, version, name, description)
      select tenant_id, id, 2, name, description from skills where id = ${skillId}
      returning id`;
    await tx`update skills set published_version_id = ${v2!.id} where id = ${skillId}`;
  },
  feedback: (tx, t, skillId) => tx`
    insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment)
    values (${t.tenantId}, ${skillId}, ${t.userIds[1]!}, 'comment', 'written in a long transaction')`,
};

/** What changeSummary must report for each write once it is unseen. */
const unseenChanges = {
  name: [{ kind: 'details_updated', fields: ['name'] }],
  description: [{ kind: 'details_updated', fields: ['description'] }],
  publish: [{ kind: 'version_bump', from: 1, to: 2 }],
  feedback: [{ kind: 'new_feedback', count: 1 }],
} as const;

/** The nav badge's count of the caller's feed. */
async function feedCount(caller: Caller): Promise<number> {
  const { count, capped } = await caller.whatsNewCount({});
  expect(capped).toBe(false);
  return count;
}

/** Every item of the caller's feed, paged one at a time. */
async function feedIds(caller: Caller): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 20; page++) {
    const res: Awaited<ReturnType<Caller['whatsNew']>> = await caller.whatsNew({ limit: 1, cursor });
    ids.push(...res.items.map((i) => i.skillId));
    cursor = res.nextCursor;
    if (!cursor) return ids;
  }
  throw new Error('whatsNew did not end');
}

/** What the four read procedures say about one skill for one caller. */
async function readState(caller: Caller, skillId: string) {
  const views = await caller.viewsForSkills({ skillIds: [skillId] });
  const summary = await caller.changeSummary({ skillId });
  return {
    hasUpdate: views.get(skillId)?.hasUpdate,
    inFeed: (await feedIds(caller)).includes(skillId),
    count: await feedCount(caller),
    changes: summary.changes,
  };
}

describe.skipIf(!postgresEngine)('commit order on postgres: a write in flight during a view', () => {
  let h: DbHandle;
  let owner: postgres.Sql;

  beforeAll(async () => {
    h = await postgresEngine!.open();
    owner = postgres(postgresEngine!.url!, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await owner?.end();
    await h?.close();
  });

  /**
   * Begins an owner transaction, runs `write` in it and leaves it open: returns once the write is done, with
   * `commit()` to finish it and `startedAt`, the transaction's now() (what updated_at and created_at get).
   */
  async function beginWrite(t: TenantFixture, skillId: string, write: Write) {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let written!: (startedAt: Date) => void;
    const isWritten = new Promise<Date>((r) => (written = r));
    const done = owner.begin(async (tx) => {
      await tx`select set_config('app.current_tenant_id', ${t.tenantId}, true)`;
      await write(tx, t, skillId);
      const [row] = await tx<{ now: Date }[]>`select now() as now`;
      written(row!.now);
      await released;
    });
    // A write that fails must fail the test, not hang it.
    const startedAt = await Promise.race([isWritten, done.then(() => Promise.reject(new Error('the write ended early')))]);
    return {
      startedAt,
      commit: async () => {
        release();
        await done;
      },
    };
  }

  async function freshSkill() {
    const t = await createTenant(h.db, { skills: [skillSpec('s', { changedDaysAgo: 2 })] });
    return { t, skillId: t.skills.s! };
  }

  it.each(['name', 'description', 'publish'] as const)(
    'an edit of the %s that began before the view and committed after it is unseen by all four read procedures',
    async (kind) => {
      const { t, skillId } = await freshSkill();
      const caller = callerFor(h.db, t, 0);
      const write = await beginWrite(t, skillId, writes[kind]);
      const { view } = await caller.recordView({ skillId });
      await write.commit();

      // The clock trap: the edit's time (its transaction's start) is before the view's.
      expect(write.startedAt.getTime()).toBeLessThan(view!.lastViewedAt.getTime());
      expect(await readState(caller, skillId)).toEqual({ hasUpdate: true, inFeed: true, count: 1, changes: unseenChanges[kind] });
      const [item] = (await caller.whatsNew({})).items;
      expect(item?.updatedAt.getTime()).toBe(write.startedAt.getTime());
      // Another user who never viewed it is unaffected; the viewer's next view clears everything.
      expect(await readState(callerFor(h.db, t, 1), skillId)).toEqual({ hasUpdate: undefined, inFeed: false, count: 0, changes: [] });
      await caller.recordView({ skillId });
      expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: [] });
    },
  );

  it('feedback by another user that began before the view and committed after it is new feedback, and no content badge', async () => {
    const { t, skillId } = await freshSkill();
    const caller = callerFor(h.db, t, 0);
    const write = await beginWrite(t, skillId, writes.feedback);
    const { view } = await caller.recordView({ skillId });
    await write.commit();

    expect(write.startedAt.getTime()).toBeLessThan(view!.lastViewedAt.getTime());
    expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: unseenChanges.feedback });
    await caller.recordView({ skillId });
    expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: [] });
  });

  it.each(['name', 'description', 'publish', 'feedback'] as const)(
    'control: the same %s write committed before the view is seen by all four',
    async (kind) => {
      const { t, skillId } = await freshSkill();
      const caller = callerFor(h.db, t, 0);
      const write = await beginWrite(t, skillId, writes[kind]);
      await write.commit();
      await caller.recordView({ skillId });
      expect(await readState(caller, skillId)).toEqual({ hasUpdate: false, inFeed: false, count: 0, changes: [] });
    },
  );

  it('two writes in flight on two skills, views between them: each procedure reports exactly the unseen one', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('a'), skillSpec('b')] });
    const [a, b] = [t.skills.a!, t.skills.b!];
    const caller = callerFor(h.db, t, 0);
    // b's edit commits before its view (seen); a's edit is in flight during its view (unseen).
    const writeB = await beginWrite(t, b, writes.description);
    await writeB.commit();
    const writeA = await beginWrite(t, a, writes.name);
    await caller.recordView({ skillId: a });
    await caller.recordView({ skillId: b });
    await writeA.commit();
    const views = await caller.viewsForSkills({ skillIds: [a, b, randomUUID()] });
    expect([...views.entries()].map(([id, v]) => [id, v.hasUpdate]).sort()).toEqual([[a, true], [b, false]].sort());
    expect(await feedIds(caller)).toEqual([a]);
    expect(await feedCount(caller)).toBe(1);
    expect((await caller.changeSummary({ skillId: a })).changes).toEqual(unseenChanges.name);
    expect((await caller.changeSummary({ skillId: b })).changes).toEqual([]);
  });
});
