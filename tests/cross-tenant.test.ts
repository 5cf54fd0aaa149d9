// Cross-tenant attempts through every procedure: another tenant's skill looks exactly like a missing one, and nothing is written.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callerFor, countViews, expectTrpcError } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { createTenant, daysAgo, insertFeedback, insertView, publishVersion, skillSpec, type TenantFixture } from './support/factory.ts';
import { errorOf, rawCall, startTestServer, tokenFor, type TestServer } from './support/server.ts';

describe.each(engines)('cross-tenant attempts on $name', (engine) => {
  let server: TestServer;
  let a: TenantFixture;
  let b: TenantFixture;
  beforeAll(async () => {
    server = await startTestServer(engine);
    const skills = [skillSpec('shared-slug', { changedDaysAgo: 30 }), skillSpec('b-only', { changedDaysAgo: 30 })];
    a = await createTenant(server.db, { skills: [skillSpec('shared-slug', { changedDaysAgo: 30 })] });
    b = await createTenant(server.db, { skills });
    // B's user viewed B's skills before they changed (new versions, others' feedback), so they are in B's feed and have updates.
    for (const slug of ['shared-slug', 'b-only']) {
      await insertView(server.db, b, { userId: b.userIds[0]!, skillId: b.skills[slug]!, lastViewedAt: daysAgo(10) });
      await publishVersion(server.db, b, b.skills[slug]!);
      await insertFeedback(server.db, b, { skillId: b.skills[slug]!, userId: b.userIds[1]! });
    }
    await publishVersion(server.db, b, b.skills['b-only']!);
    await insertView(server.db, a, { userId: a.userIds[0]!, skillId: a.skills['shared-slug']!, lastViewedAt: daysAgo(10) });
    await publishVersion(server.db, a, a.skills['shared-slug']!);
  });
  afterAll(() => server.close());

  const bSkills = () => [b.skills['shared-slug']!, b.skills['b-only']!];

  it('recordView: another tenant\'s skill is NOT_FOUND with the same message as a nonexistent one, and nothing is written', async () => {
    const before = await countViews(server.db, a.tenantId, b.tenantId);
    const caller = callerFor(server.db, a);
    const missing = await expectTrpcError(caller.recordView({ skillId: randomUUID() }), 'NOT_FOUND');
    for (const skillId of bSkills()) {
      const foreign = await expectTrpcError(caller.recordView({ skillId }), 'NOT_FOUND');
      expect(foreign.message).toBe(missing.message);
    }
    expect(await countViews(server.db, a.tenantId, b.tenantId)).toBe(before);
    // B's user's row on that skill is untouched.
    const bViews = await callerFor(server.db, b).viewsForSkills({ skillIds: bSkills() });
    expect([...bViews.values()].map((v) => v.viewCount)).toEqual([1, 1]);
  });

  it('changeSummary: another tenant\'s skill is NOT_FOUND like a nonexistent one', async () => {
    const caller = callerFor(server.db, a);
    const missing = await expectTrpcError(caller.changeSummary({ skillId: randomUUID() }), 'NOT_FOUND');
    for (const skillId of bSkills()) {
      const foreign = await expectTrpcError(caller.changeSummary({ skillId }), 'NOT_FOUND');
      expect(foreign.message).toBe(missing.message);
    }
    // The control: B's user does get a summary of the same skill.
    const own = await callerFor(server.db, b).changeSummary({ skillId: b.skills['b-only']! });
    expect(own.changes).toContainEqual({ kind: 'version_bump', from: 1, to: 3 });
  });

  it('over HTTP the two NOT_FOUND responses are byte-for-byte the same', async () => {
    const token = await tokenFor({ tenantId: a.tenantId, userId: a.userIds[0]! });
    const before = await countViews(server.db, a.tenantId, b.tenantId);
    for (const [path, method] of [['recordView', 'POST'], ['changeSummary', 'GET']] as const) {
      const foreign = await rawCall(server.trpcUrl, path, { method, token, input: { skillId: b.skills['b-only']! } });
      const missing = await rawCall(server.trpcUrl, path, { method, token, input: { skillId: randomUUID() } });
      expect(foreign.status).toBe(404);
      expect(errorOf(foreign).data.code).toBe('NOT_FOUND');
      expect(foreign.text).toBe(missing.text);
    }
    expect(await countViews(server.db, a.tenantId, b.tenantId)).toBe(before);
  });

  it('viewsForSkills: another tenant\'s skills are absent, even ones its users viewed', async () => {
    const caller = callerFor(server.db, a);
    const views = await caller.viewsForSkills({ skillIds: [...bSkills(), a.skills['shared-slug']!] });
    expect([...views.keys()]).toEqual([a.skills['shared-slug']]);
    expect((await caller.viewsForSkills({ skillIds: bSkills() })).size).toBe(0);
    // Control: B's user sees them.
    expect((await callerFor(server.db, b).viewsForSkills({ skillIds: bSkills() })).size).toBe(2);
  });

  it('whatsNew: never lists another tenant\'s skills', async () => {
    for (const userIndex of [0, 1]) {
      const feed = await callerFor(server.db, a, userIndex).whatsNew({ limit: 50, windowDays: 90 });
      for (const item of feed.items) expect(bSkills()).not.toContain(item.skillId);
    }
    expect((await callerFor(server.db, a).whatsNew({})).items.map((i) => i.skillId)).toEqual([a.skills['shared-slug']]);
    // Control: B's user's feed holds both.
    expect((await callerFor(server.db, b).whatsNew({})).items.map((i) => i.skillId).sort()).toEqual([...bSkills()].sort());
  });

  it('whatsNewCount never counts, and markSeen / markAllSeen never mark, another tenant\'s skills', async () => {
    // A tenant of its own (the shared fixtures stay unmarked), whose user has one unseen change.
    const c = await createTenant(server.db, { skills: [skillSpec('shared-slug', { changedDaysAgo: 30 })] });
    await insertView(server.db, c, { userId: c.userIds[0]!, skillId: c.skills['shared-slug']!, lastViewedAt: daysAgo(10) });
    await publishVersion(server.db, c, c.skills['shared-slug']!);
    const caller = callerFor(server.db, c);
    const bCaller = callerFor(server.db, b);
    const bBefore = await bCaller.viewsForSkills({ skillIds: bSkills() });
    const bSummary = await bCaller.changeSummary({ skillId: b.skills['b-only']! });
    expect(await caller.whatsNewCount({ windowDays: 90 })).toEqual({ count: 1, capped: false });
    expect(await caller.markSeen({ skillIds: bSkills() })).toEqual({ marked: 0 });
    // Only the caller's own skill is marked.
    expect(await caller.markAllSeen({})).toEqual({ marked: 1 });
    expect(await caller.whatsNewCount({ windowDays: 90 })).toEqual({ count: 0, capped: false });
    // B's user still has both updates and the feedback unseen, on the same rows.
    expect(await bCaller.viewsForSkills({ skillIds: bSkills() })).toEqual(bBefore);
    expect([...bBefore.values()].every((v) => v.hasUpdate)).toBe(true);
    expect(await bCaller.whatsNewCount({})).toEqual({ count: 2, capped: false });
    expect(await bCaller.changeSummary({ skillId: b.skills['b-only']! })).toEqual(bSummary);
    expect(bSummary.changes).toContainEqual({ kind: 'new_feedback', count: 1 });
  });

  it('a session pairing a tenant with another tenant\'s user sees and writes nothing of either', async () => {
    // The JWT authenticator refuses such a session (see auth.test.ts); RLS must hold even if one got through.
    const mixed = { tenantId: a.tenantId, userId: b.userIds[0]! };
    const caller = callerFor(server.db, { ...a, userIds: [mixed.userId] });
    const before = await countViews(server.db, a.tenantId, b.tenantId);
    expect((await caller.viewsForSkills({ skillIds: [...bSkills(), a.skills['shared-slug']!] })).size).toBe(0);
    expect((await caller.whatsNew({})).items).toEqual([]);
    await expectTrpcError(caller.recordView({ skillId: b.skills['b-only']! }), 'NOT_FOUND');
    await expect(caller.recordView({ skillId: a.skills['shared-slug']! })).rejects.toThrow();
    expect(await countViews(server.db, a.tenantId, b.tenantId)).toBe(before);
  });
});
