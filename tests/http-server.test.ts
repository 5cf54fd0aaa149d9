// The HTTP server around tRPC: health check, panel switch, request ids, request logs without tokens, methods, graceful close.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countViews } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { rawCall, startTestServer, tokenFor, type TestServer } from './support/server.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(engines)('HTTP server on $name', (engine) => {
  let server: TestServer;
  let t: TenantFixture;
  let token: string;
  const logs: Record<string, unknown>[] = [];
  beforeAll(async () => {
    server = await startTestServer(engine, {
      panel: false,
      logger: { level: 'debug', stream: { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) } },
    });
    t = await createTenant(server.db, { skills: [skillSpec('s')] });
    token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
  });
  afterAll(() => server.close());

  it('answers /healthz with ok while the database is up, and 503 when it is not', async () => {
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });

    const handle = await engine.open({ poolSize: 1 });
    const down = await startTestServer(engine, { handle });
    try {
      await handle.close();
      const unhealthy = await fetch(`${down.url}/healthz`);
      expect(unhealthy.status).toBe(503);
      expect(await unhealthy.json()).toEqual({ status: 'unavailable' });
    } finally {
      await down.close();
    }
  });

  it('serves /panel only when enabled', async () => {
    expect((await fetch(`${server.url}/panel`)).status).toBe(404);
    const withPanel = await startTestServer(engine, { panel: true, handle: { db: server.db, engine: engine.name, close: async () => {} } });
    try {
      const res = await fetch(`${withPanel.url}/panel`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('whatsNew');
    } finally {
      await withPanel.close();
    }
  });

  it('keeps a well-formed x-request-id and replaces anything else', async () => {
    const kept = await fetch(`${server.url}/healthz`, { headers: { 'x-request-id': 'req-123.abc:7' } });
    expect(kept.headers.get('x-request-id')).toBe('req-123.abc:7');
    const replaced = await fetch(`${server.url}/healthz`, { headers: { 'x-request-id': 'bad id\twith "quotes"' } });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const fresh = await fetch(`${server.url}/healthz`);
    expect(fresh.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('logs one line per request naming the procedures, and never the token or the input', async () => {
    const skillId = t.skills.s!;
    logs.length = 0;
    const res = await rawCall(server.trpcUrl, 'changeSummary', { token, input: { skillId } });
    expect(res.status).toBe(200);
    await sleep(50); // onResponse logs after the body is sent
    const lines = logs.filter((l) => l.msg === 'request completed');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ path: '/trpc', procedures: ['changeSummary'], statusCode: 200, outcome: 'ok' });
    const all = JSON.stringify(logs);
    expect(all).not.toContain(token);
    expect(all).not.toContain(token.split('.')[2]!);
    expect(all).not.toContain(skillId);
  });

  it('refuses a mutation over GET (nothing written) and accepts a query over POST', async () => {
    const before = await countViews(server.db, t.tenantId);
    const viaGet = await rawCall(server.trpcUrl, 'recordView', { method: 'GET', token, input: { skillId: t.skills.s! } });
    expect(viaGet.status).toBe(405);
    expect(await countViews(server.db, t.tenantId)).toBe(before);
    const queryViaPost = await rawCall(server.trpcUrl, 'viewsForSkills', { method: 'POST', token, input: { skillIds: [t.skills.s!] } });
    expect(queryViaPost.status).toBe(200);
  });

  it('finishes an in-flight request on close, then closes its keep-alive connection and stops', async () => {
    const slow = await startTestServer(engine, {
      handle: { db: server.db, engine: engine.name, close: async () => {} },
      authenticate: async () => {
        await sleep(400);
        return null;
      },
    });
    // fetch keeps connections alive, as browsers and most HTTP clients do.
    const inFlight = rawCall(slow.trpcUrl, 'whatsNew');
    await sleep(100);
    const closed = slow.close().then(() => 'closed' as const);
    const res = await inFlight;
    expect(res.status).toBe(401); // a full answer, not a dropped connection
    // The answer's connection must not hold the shutdown open (main.ts gives up and exits 1 after 10 s).
    const outcome = await Promise.race([closed, sleep(3_000).then(() => 'still open after 3 s' as const)]);
    expect(outcome).toBe('closed');
    await expect(fetch(`${slow.url}/healthz`)).rejects.toThrow();
  });

  it('sends JSON answers whole, with a Content-Length (no chunked framing), batches and errors included', async () => {
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const single = await fetch(`${server.trpcUrl}/whatsNew?input=${encodeURIComponent(JSON.stringify({ json: {} }))}`, { headers });
    const batch = await fetch(`${server.trpcUrl}/whatsNew,changeSummary?batch=1`, {
      method: 'POST',
      headers: { ...headers, 'x-trpc-method-override': 'POST' },
      body: JSON.stringify({ 0: { json: {} }, 1: { json: { skillId: 'not-a-uuid' } } }),
    });
    const unauthorized = await fetch(`${server.trpcUrl}/whatsNew`);
    for (const [res, status] of [[single, 200], [batch, 207], [unauthorized, 401]] as const) {
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(res.headers.get('transfer-encoding')).toBeNull();
      const text = await res.text();
      expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(text));
      expect(res.headers.get('x-request-id')).toBeTruthy();
    }
    const [ok, bad] = (await (
      await fetch(`${server.trpcUrl}/whatsNew,changeSummary?batch=1`, {
        method: 'POST',
        headers: { ...headers, 'x-trpc-method-override': 'POST' },
        body: JSON.stringify({ 0: { json: {} }, 1: { json: { skillId: 'not-a-uuid' } } }),
      })
    ).json()) as [any, any];
    expect(ok.result.data.json).toEqual({ items: [], nextCursor: null });
    expect(bad.error.json.data.code).toBe('BAD_REQUEST');
  });

  it('answers HEAD with 204 and an unsupported method with 405, without running anything', async () => {
    const head = await fetch(`${server.trpcUrl}/whatsNew`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } });
    expect(head.status).toBe(204);
    const before = await countViews(server.db, t.tenantId);
    const put = await fetch(`${server.trpcUrl}/recordView`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ json: { skillId: t.skills.s! } }),
    });
    expect(put.status).toBe(405);
    expect(await countViews(server.db, t.tenantId)).toBe(before);
  });

  it('gives an unknown procedure 404 NOT_FOUND', async () => {
    const res = await rawCall(server.trpcUrl, `noSuchProcedure${randomUUID().slice(0, 4)}`, { token });
    expect(res.status).toBe(404);
  });
});
