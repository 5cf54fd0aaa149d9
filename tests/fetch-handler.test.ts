// The Fetch-API handler (server/fetch.ts) answers what the Fastify server answers: the same statuses and bodies for a
// table of requests, on each engine, with the same database and the same tokens.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { createJwtAuthenticator } from '../server/auth.ts';
import { createFetchHandler } from '../server/fetch.ts';
import { LiveHub } from '../server/live.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, createTenant, editSkill, insertView, skillSpec, type TenantFixture } from './support/factory.ts';
import { startTestServer, TEST_SECRET, tokenFor, type TestServer } from './support/server.ts';

interface Case {
  name: string;
  method: 'GET' | 'POST';
  /** Path after /trpc/ and the query string. */
  path: string;
  body?: unknown;
  token?: 'valid' | 'none' | 'garbage';
  /** Send to this path under the server's root instead of under /trpc/ (e.g. outside the endpoint). */
  rootPath?: string;
  headers?: Record<string, string>;
}

const envelope = (input: unknown) => encodeURIComponent(JSON.stringify({ json: input }));

describe.each(engines)('fetch handler parity with the Fastify server on $name', (engine) => {
  let h: DbHandle;
  let server: TestServer;
  let handler: (req: Request) => Promise<Response>;
  let t: TenantFixture;
  let other: TenantFixture;
  let token: string;

  beforeAll(async () => {
    h = await engine.open();
    server = await startTestServer(engine, { handle: h });
    handler = createFetchHandler({
      db: h.db,
      authenticate: createJwtAuthenticator({ secret: TEST_SECRET, db: h.db, appRole: APP_ROLE }),
      appRole: APP_ROLE,
    });
    t = await createTenant(h.db, { userCount: 1, skills: [skillSpec('a'), skillSpec('b')] });
    other = await createTenant(h.db, { userCount: 1, skills: [skillSpec('theirs')] });
    await insertView(h.db, t, { userId: t.userIds[0]!, skillId: t.skills.a! });
    token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
  });
  afterAll(async () => {
    await server?.close();
    await h?.close();
  });

  const cases = (): Case[] => [
    { name: 'a query over GET', method: 'GET', path: `trackingPreference?input=${envelope({})}` },
    { name: 'the count', method: 'GET', path: `whatsNewCount?input=${envelope({})}` },
    { name: 'a Map (superjson)', method: 'GET', path: `viewsForSkills?input=${envelope({ skillIds: [t.skills.b] })}` },
    { name: 'a query as POST (method override)', method: 'POST', path: 'whatsNew', body: { json: { limit: 5 } } },
    {
      name: 'a batch of two',
      method: 'GET',
      path: `trackingPreference,whatsNewCount?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { json: {} }, 1: { json: { windowDays: 7 } } }))}`,
    },
    { name: 'no token', method: 'GET', path: `whatsNew?input=${envelope({})}`, token: 'none' },
    { name: 'a garbage token', method: 'GET', path: `whatsNew?input=${envelope({})}`, token: 'garbage' },
    { name: 'a bad input (zod issues)', method: 'GET', path: `whatsNew?input=${envelope({ limit: 0 })}` },
    { name: 'an unknown key', method: 'GET', path: `trackingPreference?input=${envelope({ x: 1 })}` },
    { name: "another tenant's skill", method: 'GET', path: `changeSummary?input=${envelope({ skillId: other.skills.theirs })}` },
    { name: 'a missing skill', method: 'GET', path: `changeSummary?input=${envelope({ skillId: randomUUID() })}` },
    { name: 'a mutation over GET', method: 'GET', path: `markAllSeen?input=${envelope({})}` },
    { name: 'an unknown procedure', method: 'GET', path: `nope?input=${envelope({})}` },
    { name: 'a mutation', method: 'POST', path: 'setTracking', body: { json: { enabled: true } } },
    { name: 'markSeen of a never-viewed skill', method: 'POST', path: 'markSeen', body: { json: { skillIds: [t.skills.b] } } },
    { name: 'onChange without a token', method: 'GET', path: `onChange?input=${envelope({})}`, token: 'none' },
    { name: 'onChange without live updates', method: 'GET', path: `onChange?input=${envelope({})}` },
    { name: 'a body over 1 MiB', method: 'POST', path: 'setTracking', body: { json: { enabled: true }, pad: 'x'.repeat(1_100_000) } },
    { name: 'a path outside the endpoint', method: 'GET', path: '', rootPath: `trpcwhatsNewCount?input=${envelope({})}` },
    { name: 'another prefix of the same length', method: 'GET', path: '', rootPath: `abcd/whatsNewCount?input=${envelope({})}` },
  ];

  const send = async (c: Case, base: string, via: (req: Request) => Promise<Response>) => {
    const headers: Record<string, string> = { ...(c.headers ?? {}) };
    const kind = c.token ?? 'valid';
    if (kind === 'valid') headers.authorization = `Bearer ${token}`;
    if (kind === 'garbage') headers.authorization = 'Bearer not.a.token';
    if (c.body !== undefined) headers['content-type'] = 'application/json';
    const url = c.rootPath === undefined ? `${base}/${c.path}` : `${base.replace(/\/trpc$/, '')}/${c.rootPath}`;
    const req = new Request(url, { method: c.method, headers, body: c.body === undefined ? undefined : JSON.stringify(c.body) });
    const res = await via(req);
    // The media type (Fastify adds `; charset=utf-8`, the Fetch Response does not; both are UTF-8 JSON).
    const type = res.headers.get('content-type')?.split(';')[0] ?? null;
    return { status: res.status, type, body: await res.text(), retryAfter: res.headers.get('retry-after') };
  };

  it('gives the same status, content type and body for every case', async () => {
    const mismatches: string[] = [];
    for (const c of cases()) {
      const viaFastify = await send(c, server.trpcUrl, (req) => fetch(req));
      const viaFetch = await send(c, 'http://host.invalid/trpc', handler);
      if (JSON.stringify(viaFastify) !== JSON.stringify(viaFetch)) {
        mismatches.push(`${c.name}:\n  fastify ${JSON.stringify(viaFastify)}\n  fetch   ${JSON.stringify(viaFetch)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('actually serves the caller: statuses of the table', async () => {
    const statuses = Object.fromEntries(await Promise.all(cases().map(async (c) => [c.name, (await send(c, 'http://host.invalid/trpc', handler)).status])));
    expect(statuses).toEqual({
      'a query over GET': 200,
      'the count': 200,
      'a Map (superjson)': 200,
      'a query as POST (method override)': 200,
      'a batch of two': 200,
      'no token': 401,
      'a garbage token': 401,
      'a bad input (zod issues)': 400,
      'an unknown key': 400,
      "another tenant's skill": 404,
      'a missing skill': 404,
      'a mutation over GET': 405,
      'an unknown procedure': 404,
      'a mutation': 200,
      'markSeen of a never-viewed skill': 200,
      'onChange without a token': 501,
      'onChange without live updates': 501,
      'a body over 1 MiB': 413,
      'a path outside the endpoint': 404,
      'another prefix of the same length': 404,
    });
  });

  it('serves onChange: refused with 401 before a stream opens, then ready and a change as server-sent events', async () => {
    const hub = new LiveHub({ db: h.db, appRole: APP_ROLE });
    await hub.start(h);
    const live = createFetchHandler({
      db: h.db,
      authenticate: createJwtAuthenticator({ secret: TEST_SECRET, db: h.db, appRole: APP_ROLE }),
      appRole: APP_ROLE,
      live: hub,
    });
    try {
      const refused = await live(new Request(`http://app.test/trpc/onChange?input=${envelope({})}`));
      expect(refused.status).toBe(401);
      expect((await refused.json()).error.json.data.code).toBe('UNAUTHORIZED');
      const ac = new AbortController();
      const res = await live(new Request(`http://app.test/trpc/onChange?input=${envelope({})}`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal }));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      const until = async (pattern: RegExp) => {
        while (!pattern.test(text)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`stream ended: ${text}`);
          text += value;
        }
      };
      await until(/"kind":"ready"/);
      await editSkill(h.db, t, t.skills.a!, { description: 'edited for the fetch handler' });
      await until(/"kind":"changed"/);
      expect(text).toContain(t.skills.a);
      ac.abort();
      await reader.cancel().catch(() => {});
    } finally {
      await hub.close();
    }
  });

  it('serves under another endpoint (a Next.js route at /api/trpc)', async () => {
    const nested = createFetchHandler({
      db: h.db,
      authenticate: createJwtAuthenticator({ secret: TEST_SECRET, db: h.db, appRole: APP_ROLE }),
      appRole: APP_ROLE,
      endpoint: '/api/trpc',
    });
    const res = await nested(new Request(`http://app.test/api/trpc/trackingPreference?input=${envelope({})}`, { headers: { authorization: `Bearer ${token}` } }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ result: { data: { json: { enabled: true } } } });
  });
});
