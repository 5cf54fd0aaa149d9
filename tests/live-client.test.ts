// The typed client's live path over real HTTP: createClient routes onChange to server-sent events with the token in
// connectionParams, the cache invalidation a live event causes is exactly the affected queries, and the shared
// connection behind useSkillViewsLive retries a refused or expired token with a fresh one.
import { QueryClient } from '@tanstack/react-query';
import { createTRPCOptionsProxy } from '@trpc/tanstack-react-query';
import { EventSource } from 'eventsource';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, errorCode, TRPCClientError, type ClientOptions, type LiveEvent } from '../client/index.ts';
import { LiveConnection, liveErrorCode, refreshAfterLiveEvent, type LiveState } from '../client/react.ts';
import type { DbHandle } from '../db/client.ts';
import { buildServer } from '../server/app.ts';
import { createJwtAuthenticator } from '../server/auth.ts';
import { LiveHub } from '../server/live.ts';
import type { Session } from '../server/session.ts';
import { engines, type TestEngine } from './support/engines.ts';
import { APP_ROLE, createTenant, editSkill, skillSpec } from './support/factory.ts';
import { TEST_SECRET, tokenFor } from './support/server.ts';

/** The real app with a live hub on `engine`'s fresh database, on a random port. */
async function startLiveServer(engine: TestEngine) {
  const handle: DbHandle = await engine.open();
  const live = new LiveHub({ db: handle.db, appRole: APP_ROLE });
  await live.start(handle, engine.url ? { url: engine.url } : {});
  const app = buildServer({
    db: handle.db,
    authenticate: createJwtAuthenticator({ secret: TEST_SECRET, db: handle.db, appRole: APP_ROLE }),
    appRole: APP_ROLE,
    panel: false,
    exposeErrors: false,
    logger: false,
    live,
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    trpcUrl: `${url}/trpc`,
    db: handle.db,
    close: async () => {
      await app.close();
      await live.close();
      await handle.close();
    },
  };
}

/** An EventSource that records the URLs it opens. */
function recordingEventSource(urls: string[]): NonNullable<ClientOptions['EventSource']> {
  return class extends EventSource {
    constructor(url: string | URL, init?: ConstructorParameters<typeof EventSource>[1]) {
      urls.push(String(url));
      super(url, init);
    }
  };
}

/** The status, and that an error is given exactly when the status is `error`. */
function errorOfState(state: LiveState): LiveState['status'] {
  expect(state.error !== undefined).toBe(state.status === 'error');
  return state.status;
}

/**
 * An EventSource whose error events carry nothing but their type, as a browser's do: whether a refused stream got
 * 401 or 429 cannot be read from them.
 */
function browserLikeEventSource(urls: string[]): NonNullable<ClientOptions['EventSource']> {
  return class extends EventSource {
    constructor(url: string | URL, init?: ConstructorParameters<typeof EventSource>[1]) {
      urls.push(String(url));
      super(url, init);
    }
    override addEventListener(type: string, listener: (event: any) => void, options?: unknown) {
      const wrapped = type === 'error' ? () => listener(new Event('error')) : listener;
      super.addEventListener(type as 'error', wrapped, options as AddEventListenerOptions);
    }
  };
}

/** Subscribes to onChange and collects what arrives. */
function listen(client: ReturnType<typeof createClient>, input: { lastEventId?: string | null } = {}) {
  const seen = { events: [] as { id: string; data: LiveEvent }[], errors: [] as unknown[], started: 0 };
  const subscription = client.onChange.subscribe(input, {
    onStarted: () => (seen.started += 1),
    onData: (event) => seen.events.push(event),
    onError: (error) => seen.errors.push(error),
  });
  return { seen, unsubscribe: () => subscription.unsubscribe() };
}

describe.each(engines)('live client on $name', (engine) => {
  let server: Awaited<ReturnType<typeof startLiveServer>>;
  const cleanups: (() => unknown)[] = [];
  beforeAll(async () => {
    server = await startLiveServer(engine);
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(() => server?.close());

  it('createClient subscribes over SSE at /trpc/onChange with the token in connectionParams: ready, then changed for an owner edit', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('viewed'), skillSpec('other')] });
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    const token = await tokenFor(session);
    const urls: string[] = [];
    const client = createClient({ url: server.trpcUrl, getToken: () => token, EventSource: recordingEventSource(urls) });
    // An ordinary call still goes through the batch link (no EventSource).
    await client.recordView.mutate({ skillId: t.skills.viewed! });
    expect(urls).toEqual([]);

    const sub = listen(client);
    cleanups.push(sub.unsubscribe);
    await expect.poll(() => sub.seen.events.length).toBe(1);
    expect(sub.seen.events[0]).toEqual({ id: expect.any(String), data: { kind: 'ready' } });
    expect(sub.seen.started).toBe(1);
    expect(urls).toHaveLength(1);
    const opened = new URL(urls[0]!);
    expect(opened.pathname).toBe('/trpc/onChange');
    expect(JSON.parse(opened.searchParams.get('connectionParams')!)).toEqual({ token });

    // A skill the user never viewed first (nothing for them), then the one they viewed.
    await editSkill(server.db, t, t.skills.other!, { description: 'Edited, never viewed' });
    await editSkill(server.db, t, t.skills.viewed!, { description: 'Edited by the owner' });
    await expect.poll(() => sub.seen.events.length, { timeout: 5_000 }).toBe(2);
    expect(sub.seen.events[1]).toEqual({ id: expect.any(String), data: { kind: 'changed', skillId: t.skills.viewed, reasons: ['content'] } });
    expect(sub.seen.errors).toEqual([]);
  });

  it('a stream without a token is refused with HTTP 401 before it opens (what the hook reads as UNAUTHORIZED)', async () => {
    const client = createClient({ url: server.trpcUrl, EventSource });
    const sub = listen(client);
    cleanups.push(sub.unsubscribe);
    await expect.poll(() => sub.seen.errors.length).toBe(1);
    const error = sub.seen.errors[0];
    expect(error).toBeInstanceOf(TRPCClientError);
    expect(liveErrorCode(error)).toBe('UNAUTHORIZED');
    expect(sub.seen.started).toBe(0);
    expect(sub.seen.events).toEqual([]);
  });

  it.skipIf(typeof (globalThis as { EventSource?: unknown }).EventSource !== 'undefined')(
    'without an EventSource (Node 20), a subscription fails with a message saying what to pass',
    async () => {
      const client = createClient({ url: server.trpcUrl, getToken: () => 'unused' });
      const sub = listen(client);
      cleanups.push(sub.unsubscribe);
      await expect.poll(() => sub.seen.errors.length).toBe(1);
      expect(sub.seen.errors[0]).toBeInstanceOf(TRPCClientError);
      expect((sub.seen.errors[0] as Error).message).toContain('pass ClientOptions.EventSource');
    },
  );

  it('a live event invalidates exactly the queries it affects', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('changed'), skillSpec('untouched')] });
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    const client = createClient({ url: server.trpcUrl, getToken: () => tokenFor(session), EventSource });
    await client.recordView.mutate({ skillId: t.skills.changed! });
    await client.recordView.mutate({ skillId: t.skills.untouched! });
    const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
    const trpc = createTRPCOptionsProxy({ client, queryClient });
    const changed = t.skills.changed!;
    const keys = {
      views: trpc.viewsForSkills.queryOptions({ skillIds: [changed, t.skills.untouched!] }),
      feed: trpc.whatsNew.queryOptions({ limit: 5 }),
      feedInfinite: trpc.whatsNew.infiniteQueryOptions({ limit: 5 }, { getNextPageParam: (page) => page.nextCursor }),
      count: trpc.whatsNewCount.queryOptions({}),
      count7: trpc.whatsNewCount.queryOptions({ windowDays: 7 }),
      summary: trpc.changeSummary.queryOptions({ skillId: changed }),
      summaryUpper: trpc.changeSummary.queryOptions({ skillId: changed.toUpperCase() }),
      otherSummary: trpc.changeSummary.queryOptions({ skillId: t.skills.untouched! }),
      tracking: trpc.trackingPreference.queryOptions({}),
    };
    // Each fetched for real (the options differ in type, hence one call each).
    await Promise.all([
      queryClient.fetchQuery(keys.views),
      queryClient.fetchQuery(keys.feed),
      queryClient.fetchInfiniteQuery(keys.feedInfinite),
      queryClient.fetchQuery(keys.count),
      queryClient.fetchQuery(keys.count7),
      queryClient.fetchQuery(keys.summary),
      queryClient.fetchQuery(keys.summaryUpper),
      queryClient.fetchQuery(keys.otherSummary),
      queryClient.fetchQuery(keys.tracking),
    ]);
    const invalidated = () =>
      Object.entries(keys)
        .filter(([, options]) => queryClient.getQueryState(options.queryKey)?.isInvalidated)
        .map(([name]) => name)
        .sort();
    expect(invalidated()).toEqual([]);

    // The event as the server sends it for an owner's edit.
    const sub = listen(client);
    cleanups.push(sub.unsubscribe);
    await expect.poll(() => sub.seen.events.length).toBe(1);
    await refreshAfterLiveEvent(queryClient, trpc, sub.seen.events[0]!.data);
    expect(invalidated()).toEqual([]); // ready: nothing
    await editSkill(server.db, t, changed, { name: 'Renamed' });
    await expect.poll(() => sub.seen.events.length, { timeout: 5_000 }).toBe(2);
    const event = sub.seen.events[1]!.data;
    expect(event).toEqual({ kind: 'changed', skillId: changed, reasons: ['content'] });
    await refreshAfterLiveEvent(queryClient, trpc, event);
    expect(invalidated()).toEqual(['count', 'count7', 'feed', 'feedInfinite', 'summary', 'summaryUpper', 'views']);

    // resync: every view query, the other skill's summary too; never the tracking preference.
    await refreshAfterLiveEvent(queryClient, trpc, { kind: 'resync' });
    expect(invalidated()).toEqual(['count', 'count7', 'feed', 'feedInfinite', 'otherSummary', 'summary', 'summaryUpper', 'views']);
  });

  it("the hook's shared connection retries a refused token with a fresh one, calls onUnauthorized, and refetches after the gap", async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('s')] });
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    const good = await tokenFor(session);
    const refused = await tokenFor(session, { secret: 'not-the-server-secret-0123456789abcdefghij' });
    let current = good;
    const urls: string[] = [];
    const client = createClient({ url: server.trpcUrl, getToken: () => current, EventSource: recordingEventSource(urls) });
    const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
    const trpc = createTRPCOptionsProxy({ client, queryClient });
    await client.recordView.mutate({ skillId: t.skills.s! });
    const count = trpc.whatsNewCount.queryOptions({});
    await queryClient.fetchQuery(count);

    // The stream first sends a token the server refuses; the app gets a new one when told (as a host would).
    current = refused;
    const unauthorized: unknown[] = [];
    const onUnauthorized = (error: unknown) => {
      unauthorized.push(error);
      current = good;
    };
    const connection = new LiveConnection(queryClient, client, trpc, { onUnauthorized });
    const states: LiveState['status'][] = [];
    connection.subscribe(() => states.push(connection.getSnapshot().status));
    const holder = { current: undefined };
    connection.acquire(holder);
    cleanups.push(() => connection.release(holder));

    await expect.poll(() => unauthorized.length).toBe(1);
    expect(errorOfState(connection.getSnapshot())).toBe('error');
    // The retry (after about a second) asks getToken again and the stream opens.
    await expect.poll(() => connection.getSnapshot().status, { timeout: 5_000 }).toBe('live');
    expect(urls.map((u) => JSON.parse(new URL(u).searchParams.get('connectionParams')!).token)).toEqual([refused, good]);
    expect(states).toEqual(expect.arrayContaining(['error', 'reconnecting', 'live']));
    // The stream that failed never gave a position: changes during the gap are unknown, so its `ready` refetches.
    await expect.poll(() => connection.getSnapshot().lastEventAt).toBeInstanceOf(Date);
    expect(queryClient.getQueryState(count.queryKey)?.isInvalidated).toBe(true);

    // Live from here: an owner's edit invalidates the count again (after a refetch cleared the flag).
    await queryClient.refetchQueries({ queryKey: count.queryKey });
    expect(queryClient.getQueryState(count.queryKey)?.isInvalidated).toBe(false);
    await editSkill(server.db, t, t.skills.s!, { description: 'Changed while live' });
    await expect.poll(() => queryClient.getQueryState(count.queryKey)?.isInvalidated, { timeout: 5_000 }).toBe(true);
    expect(unauthorized).toHaveLength(1);
  });

  it('a token that expires mid-stream ends it with UNAUTHORIZED; the connection resumes with a fresh token after the last event', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('s')] });
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    const shortLived = await tokenFor(session, { expiresIn: '2s' });
    const fresh = await tokenFor(session);
    let current = shortLived;
    const urls: string[] = [];
    // The host refreshes its token when told the old one was refused.
    const client = createClient({ url: server.trpcUrl, getToken: () => current, EventSource: recordingEventSource(urls) });
    const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
    const trpc = createTRPCOptionsProxy({ client, queryClient });
    await client.recordView.mutate({ skillId: t.skills.s! });

    const unauthorized: unknown[] = [];
    const onUnauthorized = (error: unknown) => {
      unauthorized.push(error);
      current = fresh;
    };
    const connection = new LiveConnection(queryClient, client, trpc, { onUnauthorized });
    const holder = { current: (error: unknown) => unauthorized.push(['hook', error]) };
    connection.acquire(holder);
    cleanups.push(() => connection.release(holder));
    await expect.poll(() => connection.getSnapshot().status).toBe('live');
    await expect.poll(() => connection.getSnapshot().lastEventAt).toBeInstanceOf(Date);

    // The provider's handler and the hook's both hear of it, once.
    await expect.poll(() => unauthorized.length, { timeout: 6_000 }).toBe(2);
    expect(errorOfState(connection.getSnapshot())).toBe('error');
    expect(unauthorized[1]).toEqual(['hook', unauthorized[0]]);
    await expect.poll(() => connection.getSnapshot().status, { timeout: 5_000 }).toBe('live');
    expect(urls).toHaveLength(2);
    const resumed = new URL(urls[1]!);
    expect(JSON.parse(resumed.searchParams.get('connectionParams')!)).toEqual({ token: fresh });
    // The new stream resumes after the `ready` of the first one.
    expect(JSON.parse(resumed.searchParams.get('input')!)).toEqual({ json: { lastEventId: expect.any(String) } });
  });

  it('when the EventSource hides why it was refused (browsers), a second refusal in a row makes one call to find UNAUTHORIZED', async () => {
    const t = await createTenant(server.db, { skills: [skillSpec('s')] });
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    const good = await tokenFor(session);
    let current = await tokenFor(session, { secret: 'not-the-server-secret-0123456789abcdefghij' });
    const urls: string[] = [];
    const calls: string[] = [];
    const countingFetch: typeof fetch = (input, init) => {
      calls.push(new URL(String(input instanceof Request ? input.url : input)).pathname);
      return fetch(input, init);
    };
    const client = createClient({ url: server.trpcUrl, getToken: () => current, EventSource: browserLikeEventSource(urls), fetch: countingFetch });
    const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
    const trpc = createTRPCOptionsProxy({ client, queryClient });
    const unauthorized: unknown[] = [];
    const connection = new LiveConnection(queryClient, client, trpc, {
      onUnauthorized: (error) => {
        unauthorized.push(error);
        current = good;
      },
    });
    const holder = { current: undefined };
    connection.acquire(holder);
    cleanups.push(() => connection.release(holder));

    // The first refusal: no code, no call (a page's first load with a stale token is reported by its queries).
    await expect.poll(() => connection.getSnapshot().status).toBe('error');
    expect(liveErrorCode(connection.getSnapshot().error)).toBeNull();
    expect(calls).toEqual([]);
    // The retry is refused too: one call asks, finds UNAUTHORIZED, and the host's new token gets the stream open.
    await expect.poll(() => unauthorized.length, { timeout: 5_000 }).toBe(1);
    expect(calls).toEqual(['/trpc/trackingPreference']);
    expect(errorCode(unauthorized[0])).toBe('UNAUTHORIZED');
    await expect.poll(() => connection.getSnapshot().status, { timeout: 8_000 }).toBe('live');
    expect(urls).toHaveLength(3);
    expect(calls).toHaveLength(1);
  });
});
