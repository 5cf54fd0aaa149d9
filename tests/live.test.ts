// onChange over real HTTP and server-sent events, on each engine: who hears of which catalogue change, auth, resume,
// limits, shutdown. Changes are committed by the owner, as the host app does; notifications travel through the real
// database (LISTEN/NOTIFY) and every event is re-checked under the subscriber's scope.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { unseenAnnounced, unseenAnnouncedForUsers } from '../db/queries/live.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { LiveHub } from '../server/live.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, createTenant, editSkill, insertFeedback, insertView, publishVersion, skillSpec, type TenantFixture } from './support/factory.ts';
import { startTestServer, tokenFor, type TestServer } from './support/server.ts';
import { openStream, type OpenStream } from './support/sse.ts';

const within = 2_000; // the issue's bound, commit to delivery

describe.each(engines)('onChange live updates on $name', (engine) => {
  let h: DbHandle;
  let server: TestServer;
  const streams: OpenStream[] = [];
  const open = async (...args: Parameters<typeof openStream>) => {
    const s = await openStream(...args);
    streams.push(s);
    return s;
  };
  const sessionOf = (t: TenantFixture, i = 0) => ({ tenantId: t.tenantId, userId: t.userIds[i]! });
  /** An open stream of user `i` of `t`, after its `ready`. */
  const subscribe = async (t: TenantFixture, i = 0) => {
    const s = await open(server.trpcUrl, { token: await tokenFor(sessionOf(t, i)) });
    expect(s.status).toBe(200);
    await s.waitForLive((e) => e.kind === 'ready');
    return s;
  };

  beforeAll(async () => {
    h = await engine.open({ poolSize: 8 });
    server = await startTestServer(engine, { handle: h, live: { streamsPerUser: 3 } });
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await server?.close();
    await h?.close();
  });

  it('tells a viewer of a skill about an in-place edit, a new version and feedback by someone else, within 2 s each', async () => {
    const t = await createTenant(h.db, { userCount: 2, skills: [skillSpec('a'), skillSpec('b'), skillSpec('c')] });
    const viewer = t.userIds[0]!;
    for (const slug of ['a', 'b', 'c']) await insertView(h.db, t, { userId: viewer, skillId: t.skills[slug]! });
    const s = await subscribe(t);

    let started = Date.now();
    await editSkill(h.db, t, t.skills.a!, { description: 'edited in place' });
    const edit = await s.waitForLive((e) => e.kind === 'changed' && e.skillId === t.skills.a, within);
    expect(Date.now() - started).toBeLessThan(within);
    expect(edit.reasons).toEqual(['content']);

    started = Date.now();
    await publishVersion(h.db, t, t.skills.b!, { name: 'B, version 2' });
    const publish = await s.waitForLive((e) => e.kind === 'changed' && e.skillId === t.skills.b, within);
    expect(Date.now() - started).toBeLessThan(within);
    expect(publish.reasons).toEqual(['content']);

    started = Date.now();
    await insertFeedback(h.db, t, { skillId: t.skills.c!, userId: t.userIds[1]! });
    const feedback = await s.waitForLive((e) => e.kind === 'changed' && e.skillId === t.skills.c, within);
    expect(Date.now() - started).toBeLessThan(within);
    expect(feedback.reasons).toEqual(['feedback']);
    // Ids only grow, so a reconnect resumes after the last one.
    const ids = s.live().map((e) => Number(e.id.split('.')[1]));
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
  });

  it("tells nobody else: not the author of feedback, not a user who never viewed the skill, not another tenant's user", async () => {
    const t = await createTenant(h.db, { userCount: 3, skills: [skillSpec('watched'), skillSpec('control')] });
    const other = await createTenant(h.db, { userCount: 1, skills: [skillSpec('control')] });
    const [author, nonViewer] = [t.userIds[0]!, t.userIds[1]!];
    // The author viewed both; the non-viewer only the control skill; the other tenant's user its own control skill.
    await insertView(h.db, t, { userId: author, skillId: t.skills.watched! });
    await insertView(h.db, t, { userId: author, skillId: t.skills.control! });
    await insertView(h.db, t, { userId: nonViewer, skillId: t.skills.control! });
    await insertView(h.db, other, { userId: other.userIds[0]!, skillId: other.skills.control! });
    const authorStream = await subscribe(t, 0);
    const nonViewerStream = await subscribe(t, 1);
    const otherStream = await subscribe(other, 0);

    // The author's own feedback, and an edit of a skill only the author viewed.
    await insertFeedback(h.db, t, { skillId: t.skills.watched!, userId: author });
    await editSkill(h.db, t, t.skills.watched!, { description: 'only the author viewed this' });
    // Then a control change each of them must hear: if the others were told anything, it would have arrived first.
    await editSkill(h.db, t, t.skills.control!, { description: 'control' });
    await editSkill(h.db, other, other.skills.control!, { description: 'control' });
    await authorStream.waitForLive((e) => e.kind === 'changed' && e.skillId === t.skills.control, within);
    await nonViewerStream.waitForLive((e) => e.kind === 'changed' && e.skillId === t.skills.control, within);
    await otherStream.waitForLive((e) => e.kind === 'changed' && e.skillId === other.skills.control, within);

    const changed = (s: OpenStream) => s.live().filter((e) => e.kind === 'changed');
    // The author hears of the edit (content), never of their own feedback.
    expect(changed(authorStream).map((e) => [e.skillId, e.reasons])).toEqual([
      [t.skills.watched, ['content']],
      [t.skills.control, ['content']],
    ]);
    expect(changed(nonViewerStream).map((e) => e.skillId)).toEqual([t.skills.control]);
    expect(changed(otherStream).map((e) => e.skillId)).toEqual([other.skills.control]);
  });

  it('gives a forged notification to nobody: every payload is re-checked under the subscriber’s own scope', async () => {
    const t = await createTenant(h.db, { userCount: 1, skills: [skillSpec('seen'), skillSpec('control')] });
    const other = await createTenant(h.db, { userCount: 1, skills: [skillSpec('theirs')] });
    await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.seen! });
    await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.control! });
    await insertView(h.db, other, { userId: other.userIds[0]!, skillId: other.skills.theirs! });
    const s = await subscribe(t);
    // Anyone may NOTIFY: claims about a skill they have fully seen, about another tenant's skill under their tenant
    // id, about a skill that does not exist, and garbage.
    for (const payload of [
      `${t.tenantId}:${t.skills.seen}:content:999`,
      `${t.tenantId}:${t.skills.seen}:feedback:1`,
      `${t.tenantId}:${other.skills.theirs}:content:999`,
      `${t.tenantId}:${randomUUID()}:content:2`,
      `${t.tenantId}:not-a-uuid:content:2`,
    ]) {
      await h.db.execute(sql`select pg_notify('skill_views_changes', ${payload})`);
    }
    await editSkill(h.db, t, t.skills.control!, { description: 'control' });
    await s.waitForLive((e) => e.kind === 'changed' && e.skillId === t.skills.control, within);
    expect(s.live().filter((e) => e.kind === 'changed').map((e) => e.skillId)).toEqual([t.skills.control]);
  });

  it('follows a fresh stream’s ready with the news of the last seconds: a change between a page’s fetch and its stream', async () => {
    const t = await createTenant(h.db, { userCount: 2, skills: [skillSpec('a'), skillSpec('b')] });
    await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.a! });
    await insertView(h.db, t, { userId: t.userIds[1]!, skillId: t.skills.b! });
    // The page has fetched; then this commits; then the stream opens.
    await editSkill(h.db, t, t.skills.a!, { description: 'committed before the stream opened' });
    await new Promise((r) => setTimeout(r, 100));
    const s = await subscribe(t, 0);
    const e = await s.waitForLive((x) => x.kind === 'changed', within);
    expect(e).toMatchObject({ skillId: t.skills.a, reasons: ['content'] });
    // The other user never viewed `a`: their fresh stream gets `ready` and nothing about it.
    const other = await subscribe(t, 1);
    await editSkill(h.db, t, t.skills.b!, { description: 'control' });
    await other.waitForLive((x) => x.kind === 'changed', within);
    expect(other.live().filter((x) => x.kind === 'changed').map((x) => x.skillId)).toEqual([t.skills.b]);
  });

  it('gives a forged claim about a real skill with unseen news to nobody unless the claimed change exists', async () => {
    const t = await createTenant(h.db, { userCount: 2, skills: [skillSpec('news'), skillSpec('control')] });
    for (const slug of ['news', 'control']) await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills[slug]! });
    await editSkill(h.db, t, t.skills.news!, { description: 'unseen content' });
    await insertFeedback(h.db, t, { skillId: t.skills.news!, userId: t.userIds[1]! });
    const s = await subscribe(t);
    // The real news arrives once (the fresh stream's look back), merged into one event.
    await s.waitForLive((x) => x.kind === 'changed', within);
    await new Promise((r) => setTimeout(r, 300));
    const before = s.live().length;
    // Claims of a revision and feedback numbers that do not exist, about that very skill.
    for (const payload of [`${t.tenantId}:${t.skills.news}:content:999`, `${t.tenantId}:${t.skills.news}:feedback:0`, `${t.tenantId}:${t.skills.news}:feedback:77`]) {
      await h.db.execute(sql`select pg_notify('skill_views_changes', ${payload})`);
    }
    await editSkill(h.db, t, t.skills.control!, { description: 'control' });
    await s.waitForLive((x) => x.kind === 'changed' && x.skillId === t.skills.control, within);
    expect(s.live().slice(before).map((x) => x.skillId)).toEqual([t.skills.control]);
  });

  it('resumes from Last-Event-ID with what the client missed while disconnected, and resyncs what it cannot prove', async () => {
    const t = await createTenant(h.db, { userCount: 1, skills: [skillSpec('a'), skillSpec('b')] });
    for (const slug of ['a', 'b']) await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills[slug]! });
    const token = await tokenFor(sessionOf(t));
    const first = await subscribe(t);
    const ready = first.live()[0]!;
    first.close();
    // Committed while no stream was open.
    await editSkill(h.db, t, t.skills.a!, { description: 'while away' });
    await new Promise((r) => setTimeout(r, 200)); // heard by the process meanwhile

    // tRPC's client resumes with the Last-Event-ID header (EventSource) or lastEventId in the input.
    for (const how of ['header', 'input'] as const) {
      const resumed = await open(server.trpcUrl, { token, ...(how === 'header' ? { lastEventIdHeader: ready.id } : { lastEventId: ready.id }) });
      const missed = await resumed.waitForLive((e) => e.kind !== 'ready', within);
      expect(missed).toMatchObject({ kind: 'changed', skillId: t.skills.a, reasons: ['content'] });
      resumed.close();
    }

    // A position from another process (or before this one last lost its listening connection), or garbage: resync.
    for (const lastEventId of ['0123456789abcdef.1', 'nonsense']) {
      const s = await open(server.trpcUrl, { token, lastEventId });
      const e = await s.waitForLive(() => true, within);
      expect(e.kind).toBe('resync');
      s.close();
    }
    // Up to date: nothing to replay, and later changes still arrive.
    const latest = await open(server.trpcUrl, { token });
    const position = (await latest.waitForLive((e) => e.kind === 'ready')).id;
    latest.close();
    const upToDate = await open(server.trpcUrl, { token, lastEventId: position });
    await editSkill(h.db, t, t.skills.b!, { description: 'later' });
    const next = await upToDate.waitForLive(() => true, within);
    expect(next).toMatchObject({ kind: 'changed', skillId: t.skills.b });
  });

  it('refuses a missing, invalid or foreign-signed token with 401 before any stream opens, and accepts connectionParams', async () => {
    const t = await createTenant(h.db, { userCount: 1 });
    const bad = [undefined, 'not.a.jwt', await tokenFor(sessionOf(t), { secret: 'another-secret-of-at-least-32-characters!' })];
    for (const token of bad) {
      const s = await open(server.trpcUrl, token ? { token } : {});
      expect(s.status).toBe(401);
      expect(String(s.headers['content-type'])).toMatch(/application\/json/);
      expect(s.body.error.json.data.code).toBe('UNAUTHORIZED');
    }
    const viaParams = await open(server.trpcUrl, { connectionParams: { token: await tokenFor(sessionOf(t)) } });
    expect(viaParams.status).toBe(200);
    await viaParams.waitForLive((e) => e.kind === 'ready');
    const badParams = await open(server.trpcUrl, { connectionParams: { token: 'nope' } });
    expect(badParams.status).toBe(401);
  });

  it('refuses a bad input with 400 BAD_REQUEST and its zod issues before any stream opens', async () => {
    const t = await createTenant(h.db, { userCount: 1 });
    const token = await tokenFor(sessionOf(t));
    for (const input of [{ unknown: 1 }, { lastEventId: 'x'.repeat(65) }, { lastEventId: 42 }]) {
      const s = await open(server.trpcUrl, { token, input });
      expect(s.status).toBe(400);
      expect(s.body.error.json.data.code).toBe('BAD_REQUEST');
      expect(s.body.error.json.data.zodIssues.length).toBeGreaterThan(0);
    }
    // Not JSON at all.
    const garbled = await fetch(`${server.trpcUrl}/onChange?input=%7Bnot-json`, { headers: { authorization: `Bearer ${token}` } });
    expect(garbled.status).toBe(400);
    await garbled.body?.cancel();
  });

  it('ends the stream with UNAUTHORIZED when the token expires', async () => {
    const t = await createTenant(h.db, { userCount: 1 });
    const s = await open(server.trpcUrl, { token: await tokenFor(sessionOf(t), { expiresIn: '2s' }) });
    expect(s.status).toBe(200);
    await s.waitForLive((e) => e.kind === 'ready');
    const error = await s.waitFor((e) => e.event === 'serialized-error', 4_000);
    expect(error.data.json.data.code).toBe('UNAUTHORIZED');
    await s.ended;
  });

  it('refuses a stream past the per-user cap with 429 TOO_MANY_REQUESTS, and frees the slot when one closes', async () => {
    const t = await createTenant(h.db, { userCount: 2 });
    const open3 = [await subscribe(t), await subscribe(t), await subscribe(t)];
    const token = await tokenFor(sessionOf(t));
    const refused = await open(server.trpcUrl, { token });
    expect(refused.status).toBe(429);
    expect(refused.body.error.json.data.code).toBe('TOO_MANY_REQUESTS');
    // Another user of the tenant is not affected.
    await subscribe(t, 1);
    open3[0]!.close();
    await expect.poll(async () => (await open(server.trpcUrl, { token })).status, { timeout: 2_000 }).toBe(200);
  });
});

describe.each(engines)('live streams, bounded, on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open({ poolSize: 4 });
  });
  afterAll(() => h?.close());

  it('collapses the backlog of a client that stopped reading into one resync, then drops it', async () => {
    const hub = new LiveHub({ db: h.db, appRole: APP_ROLE, queueLimit: 3, burstLimit: 1000 });
    await hub.start(h);
    try {
      const slugs = Array.from({ length: 10 }, (_, i) => `s${i}`);
      const t = await createTenant(h.db, { userCount: 1, skills: slugs.map((s) => skillSpec(s)) });
      for (const slug of slugs) await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills[slug]! });
      let dropped = 0;
      const stream = hub.stream({ tenantId: t.tenantId, userId: t.userIds[0]! }, { transport: { drop: () => dropped++ } });
      expect((await stream.next()).value?.[1]).toEqual({ kind: 'ready' });
      // Reads nothing more. Ten changed skills in one transaction: 3 queue, the 4th collapses them into a resync, and
      // filling up again before the client read anything drops it.
      await h.db.transaction(async (tx) => {
        await tx.execute(sql`update skills set description = description || ' (edited)' where tenant_id = ${t.tenantId}::uuid`);
      });
      await expect.poll(() => dropped, { timeout: 3_000 }).toBe(1);
      expect(hub.stats.dropped).toBe(1);
      expect(hub.streams).toBe(0);
      // What it still holds is bounded (the resync and what followed it), then the error that ended it.
      const rest: unknown[] = [];
      await expect(
        (async () => {
          for await (const m of stream) rest.push(m[1]);
        })(),
      ).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
      expect(rest[0]).toEqual({ kind: 'resync' });
      expect(rest.length).toBeLessThanOrEqual(3);
    } finally {
      await hub.close();
    }
  });

  it('re-checks many users of a tenant in groups, each under RLS as itself: exactly the viewers hear of a change', async () => {
    const hub = new LiveHub({ db: h.db, appRole: APP_ROLE });
    await hub.start(h);
    try {
      // 120 users: three groups of checks (50 per transaction). Every third user viewed the skill.
      const t = await createTenant(h.db, { userCount: 120, skills: [skillSpec('s'), skillSpec('control')] });
      const viewers = t.userIds.filter((_, i) => i % 3 === 0);
      for (const userId of viewers) await insertView(h.db, t, { userId, skillId: t.skills.s! });
      for (const userId of t.userIds) await insertView(h.db, t, { userId, skillId: t.skills.control! });
      const received = new Map<string, unknown[]>();
      const ac = new AbortController();
      const readers = t.userIds.map(async (userId) => {
        const events: unknown[] = [];
        received.set(userId, events);
        for await (const [, event] of hub.stream({ tenantId: t.tenantId, userId }, { signal: ac.signal })) {
          if (event.kind !== 'ready') events.push(event);
        }
      });
      await expect.poll(() => hub.streams).toBe(120);
      await editSkill(h.db, t, t.skills.s!, { description: 'edited' });
      await editSkill(h.db, t, t.skills.control!, { description: 'edited' });
      await expect.poll(() => [...received.values()].every((e) => e.some((x: any) => x.skillId === t.skills.control)), { timeout: 5_000 }).toBe(true);
      ac.abort();
      await Promise.all(readers);
      for (const [userId, events] of received) {
        const skills = events.map((e: any) => e.skillId);
        expect(skills).toEqual(viewers.includes(userId) ? [t.skills.s, t.skills.control] : [t.skills.control]);
      }
      expect(hub.stats.checkFailures).toBe(0);
    } finally {
      await hub.close();
    }
  });

  it('refuses to answer for a user its check did not run as (fails closed, the subscribers resync)', async () => {
    const t = await createTenant(h.db, { userCount: 2, skills: [skillSpec('s')] });
    const [a, b] = [t.userIds[0]!, t.userIds[1]!];
    const announced = [{ skillId: t.skills.s!, contentRevision: 1, feedbackSeq: null }];
    // Scoped to a, asked about b: an error, never an empty "nothing new for b".
    await expect(
      withTenantTransaction(h.db, { role: APP_ROLE, tenantId: t.tenantId, userId: a }, (tx) => unseenAnnounced(tx, { tenantId: t.tenantId, userId: b }, announced)),
    ).rejects.toThrow(/did not run as its user/);
    const both = await withTenantTransaction(h.db, { role: APP_ROLE, tenantId: t.tenantId, userId: a }, (tx) =>
      unseenAnnouncedForUsers(tx, t.tenantId, [a, b], announced),
    );
    expect([...both.keys()]).toEqual([a, b]);
  });

  it('ends every stream with a retryable SERVICE_UNAVAILABLE when the server closes, promptly', async () => {
    const server = await startTestServer(engine, { handle: h, live: {} });
    const t = await createTenant(h.db, { userCount: 1 });
    const s = await openStream(server.trpcUrl, { token: await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! }) });
    await s.waitForLive((e) => e.kind === 'ready');
    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    const error = await s.waitFor((e) => e.event === 'serialized-error', 1_000);
    expect(error.data.json.data.code).toBe('SERVICE_UNAVAILABLE');
    await s.ended;
  });
});

describe('onChange without live updates (LIVE_UPDATES=false)', () => {
  it('is refused with 501 NOT_IMPLEMENTED before any stream opens', async () => {
    const server = await startTestServer(engines[0]!);
    try {
      const s = await openStream(server.trpcUrl, { token: await tokenFor({ tenantId: randomUUID(), userId: randomUUID() }) });
      expect(s.status).toBe(501);
      expect(s.body.error.json.data.code).toBe('NOT_IMPLEMENTED');
    } finally {
      await server.close();
    }
  });
});
