// The typed client over real HTTP: superjson brings back a Map and Dates, and parallel calls share one batch.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCode } from '../client/index.ts';
import { engines } from './support/engines.ts';
import { tracked } from './support/callers.ts';
import { createTenant, daysAgo, insertView, publishVersion, skillSpec } from './support/factory.ts';
import { startTestServer, type TestServer } from './support/server.ts';

describe.each(engines)('typed HTTP client on $name', (engine) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(engine);
  });
  afterAll(() => server.close());

  it('viewsForSkills arrives as a real Map whose values carry Date objects', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('viewed'), skillSpec('fresh'), skillSpec('unseen')] });
    const session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    await insertView(server.db, t, { userId: session.userId, skillId: t.skills.viewed!, lastViewedAt: daysAgo(3) });
    await publishVersion(server.db, t, t.skills.viewed!);
    const client = server.client(session);
    const recorded = tracked(await client.recordView.mutate({ skillId: t.skills.fresh! }));
    expect(recorded.view.lastViewedAt).toBeInstanceOf(Date);
    expect(recorded.previous).toBeNull();

    const views = await client.viewsForSkills.query({ skillIds: [t.skills.viewed!, t.skills.fresh!, t.skills.unseen!] });
    expect(views).toBeInstanceOf(Map);
    expect(views.size).toBe(2);
    const viewed = views.get(t.skills.viewed!);
    expect(viewed?.firstViewedAt).toBeInstanceOf(Date);
    expect(viewed?.lastViewedAt).toBeInstanceOf(Date);
    expect(viewed).toMatchObject({ skillId: t.skills.viewed, lastViewedVersion: 1, viewCount: 1, hasUpdate: true });
    expect(Math.abs(viewed!.lastViewedAt.getTime() - daysAgo(3).getTime())).toBeLessThan(60_000);
    expect(views.get(t.skills.fresh!)).toMatchObject({ hasUpdate: false, viewCount: 1 });
    expect(views.get(t.skills.fresh!)?.lastViewedAt.getTime()).toBe(recorded.view.lastViewedAt.getTime());
    expect(views.has(t.skills.unseen!)).toBe(false);
  });

  it('sends parallel calls as one batched request and returns Dates from every procedure', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('s')] });
    const session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    await insertView(server.db, t, { userId: session.userId, skillId: t.skills.s!, lastViewedAt: daysAgo(3) });
    await publishVersion(server.db, t, t.skills.s!);
    const requests: string[] = [];
    const countingFetch: typeof fetch = (input, init) => {
      requests.push(String(input instanceof Request ? input.url : input));
      return fetch(input, init);
    };
    const client = server.client(session, { fetch: countingFetch });
    const [views, feed, summary, count] = await Promise.all([
      client.viewsForSkills.query({ skillIds: [t.skills.s!] }),
      client.whatsNew.query({ limit: 5 }),
      client.changeSummary.query({ skillId: t.skills.s! }),
      client.whatsNewCount.query({}),
    ]);
    expect(requests).toHaveLength(1);
    expect(requests[0]).toContain('batch=1');
    expect(views.get(t.skills.s!)?.hasUpdate).toBe(true);
    expect(feed.items.map((i) => i.skillId)).toEqual([t.skills.s]);
    expect(feed.items[0]?.updatedAt).toBeInstanceOf(Date);
    expect(feed.items[0]?.lastViewedAt).toBeInstanceOf(Date);
    expect(summary.lastViewedAt).toBeInstanceOf(Date);
    expect(summary.changes).toContainEqual({ kind: 'version_bump', from: 1, to: 2 });
    expect(count).toEqual({ count: 1, capped: false });
  });

  it('passes nextCursor back over the wire to get the next page', async () => {
    const t = await createTenant(server.db, {
      skills: ['a', 'b', 'c'].map((slug) => skillSpec(slug, { changedDaysAgo: 30 })),
    });
    const session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    for (const [i, slug] of ['a', 'b', 'c'].entries()) {
      await insertView(server.db, t, { userId: session.userId, skillId: t.skills[slug]!, lastViewedAt: daysAgo(10) });
      await publishVersion(server.db, t, t.skills[slug]!, { updatedAt: daysAgo(1 + i) });
    }
    const client = server.client(session);
    const first = await client.whatsNew.query({ limit: 2 });
    expect(first.items.map((i) => i.slug)).toEqual(['a', 'b']);
    expect(typeof first.nextCursor).toBe('string');
    const second = await client.whatsNew.query({ limit: 2, cursor: first.nextCursor });
    expect(second.items.map((i) => i.slug)).toEqual(['c']);
    expect(second.nextCursor).toBeNull();
  });

  it('viewsForSkills takes the contract\'s 500 ids through the typed client', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('s')] });
    const session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    await insertView(server.db, t, { userId: session.userId, skillId: t.skills.s!, lastViewedAt: daysAgo(1) });
    const ids = [t.skills.s!, ...Array.from({ length: 499 }, () => randomUUID())];
    const views = await server.client(session).viewsForSkills.query({ skillIds: ids });
    expect([...views.keys()]).toEqual([t.skills.s]);
  });

  it('reports failures with their tRPC code: NOT_FOUND for a missing skill, UNAUTHORIZED without a token', async () => {
    const t = await createTenant(server.db);
    const client = server.client({ tenantId: t.tenantId, userId: t.userIds[0]! });
    const missing = await client.changeSummary.query({ skillId: randomUUID() }).catch((e: unknown) => e);
    expect(errorCode(missing)).toBe('NOT_FOUND');
    const anonymous = await server.client(null).whatsNew.query({}).catch((e: unknown) => e);
    expect(errorCode(anonymous)).toBe('UNAUTHORIZED');
  });
});
