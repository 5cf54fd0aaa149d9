// Rate limits: calls per tenant and user (each call of a batch counts), 429 with Retry-After and RateLimit-* headers,
// nothing written by a refused call, failed authentications per IP, and a Redis store shared by two servers.
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callerFor, countViews } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import { connectRedis as connectServerRedis } from '../server/main.ts';
import { rawCall, startTestServer, tokenFor, type TestServer } from './support/server.ts';

/** One POST batch of `size` whatsNew calls; the response and each call's outcome code ('OK' or the error code). */
async function whatsNewBatch(trpcUrl: string, token: string, size: number) {
  const body = Object.fromEntries(Array.from({ length: size }, (_, i) => [i, { json: {} }]));
  const res = await fetch(`${trpcUrl}/${Array(size).fill('whatsNew').join(',')}?batch=1`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-trpc-method-override': 'POST' },
    body: JSON.stringify(body),
  });
  const results = (await res.json()) as { result?: unknown; error?: { json: { data: { code: string } } } }[];
  return { res, codes: results.map((r) => (r.error ? r.error.json.data.code : 'OK')) };
}

const count = (codes: string[], code: string) => codes.filter((c) => c === code).length;

describe.each(engines)('rate limits on $name', (engine) => {
  let server: TestServer;
  let t: TenantFixture;
  beforeAll(async () => {
    server = await startTestServer(engine, { rateLimit: { perMinute: 60, perIpPerMinute: 0 } });
    t = await createTenant(server.db, { skills: [skillSpec('s')] });
  });
  afterAll(() => server.close());

  it('refuses one user past the limit with 429, Retry-After and RateLimit-* headers; another user of the tenant is unaffected; a refused recordView writes nothing', async () => {
    const [first, second] = await Promise.all([
      tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! }),
      tokenFor({ tenantId: t.tenantId, userId: t.userIds[1]! }),
    ]);
    // 1,300 calls within the minute: 26 batches of 50.
    const codes: string[] = [];
    for (let i = 0; i < 26; i++) {
      const { res, codes: batch } = await whatsNewBatch(server.trpcUrl, first, 50);
      codes.push(...batch);
      expect(res.headers.get('ratelimit-limit')).toBe('60');
      if (batch.includes('TOO_MANY_REQUESTS')) {
        const retryAfter = Number(res.headers.get('retry-after'));
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(60);
        expect(res.headers.get('ratelimit-remaining')).toBe('0');
        expect(Number(res.headers.get('ratelimit-reset'))).toBe(retryAfter);
        expect(res.status).toBe(i === 1 ? 207 : 429); // the second batch straddles the limit
      } else {
        expect(res.headers.get('retry-after')).toBeNull();
        expect(res.headers.get('ratelimit-remaining')).toBe(String(60 - 50 * (i + 1)));
      }
    }
    expect(codes).toHaveLength(1300);
    expect(count(codes, 'OK')).toBe(60);
    expect(count(codes, 'TOO_MANY_REQUESTS')).toBe(1240);
    // The first 60 calls passed, every later one was refused.
    expect(codes.indexOf('TOO_MANY_REQUESTS')).toBe(60);

    // A refused call gets a message a client can act on, and writes nothing.
    const before = await countViews(server.db, t.tenantId);
    const refused = await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token: first, input: { skillId: t.skills.s! } });
    expect(refused.status).toBe(429);
    expect(refused.body.error.json.data.code).toBe('TOO_MANY_REQUESTS');
    expect(refused.body.error.json.message).toMatch(/^Rate limit exceeded \(60 calls per minute\): retry in \d+ s$/);
    expect(await countViews(server.db, t.tenantId)).toBe(before);

    // The tenant's other user has a full allowance.
    const other = await fetch(`${server.trpcUrl}/recordView`, {
      method: 'POST',
      headers: { authorization: `Bearer ${second}`, 'content-type': 'application/json' },
      body: JSON.stringify({ json: { skillId: t.skills.s! } }),
    });
    expect(other.status).toBe(200);
    expect(other.headers.get('ratelimit-remaining')).toBe('59');
    expect(await countViews(server.db, t.tenantId)).toBe(before + 1);

    // Server-side callers (createCaller) are not limited: the exhausted user's calls go through there.
    const caller = callerFor(server.db, t, 0);
    for (let i = 0; i < 70; i++) await caller.whatsNew({});
  });

  it('does not limit requests when no limit is configured', async () => {
    const unlimited = await startTestServer(engine, { handle: { db: server.db, engine: engine.name, close: async () => {} } });
    try {
      const token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      const { res, codes } = await whatsNewBatch(unlimited.trpcUrl, token, 50);
      expect(res.status).toBe(200);
      expect(count(codes, 'OK')).toBe(50);
      expect(res.headers.get('ratelimit-limit')).toBeNull();
    } finally {
      await unlimited.close();
    }
  });
});

describe('rate limits at the default (1,200 a minute)', () => {
  const engine = engines[0]!;

  it('counts each call of a batch of 50: the allowance drops by 50', async () => {
    const server = await startTestServer(engine, { rateLimit: { perMinute: 1200, perIpPerMinute: 60 } });
    try {
      const t = await createTenant(server.db, { skills: [skillSpec('s')] });
      const token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      const { res, codes } = await whatsNewBatch(server.trpcUrl, token, 50);
      expect(res.status).toBe(200);
      expect(count(codes, 'OK')).toBe(50);
      expect(res.headers.get('ratelimit-limit')).toBe('1200');
      expect(res.headers.get('ratelimit-remaining')).toBe('1150');
      const single = await rawCall(server.trpcUrl, 'whatsNew', { token, input: {} });
      expect(single.status).toBe(200);
      const again = await whatsNewBatch(server.trpcUrl, token, 1);
      expect(again.res.headers.get('ratelimit-remaining')).toBe('1148');
    } finally {
      await server.close();
    }
  });

  it('limits failed authentications per IP before asking the database: past the limit bad tokens wait, validly signed ones (new or remembered) never do', async () => {
    const server = await startTestServer(engine, { rateLimit: { perMinute: 1200, perIpPerMinute: 5 } });
    try {
      const t = await createTenant(server.db, { skills: [skillSpec('s')] });
      const known = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      expect((await rawCall(server.trpcUrl, 'whatsNew', { token: known, input: {} })).status).toBe(200); // now remembered
      for (let i = 0; i < 5; i++) {
        const res = await rawCall(server.trpcUrl, 'whatsNew', { token: i % 2 ? 'bad.token.here' : undefined, input: {} });
        expect(res.status).toBe(401);
      }
      const blocked = await fetch(`${server.trpcUrl}/whatsNew`, { headers: { authorization: 'Bearer another.bad.token' } });
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(blocked.headers.get('ratelimit-limit')).toBe('5');
      const body = (await blocked.json()) as { error: { json: { message: string; data: { code: string } } } };
      expect(body.error.json.data.code).toBe('TOO_MANY_REQUESTS');
      expect(body.error.json.message).toMatch(/unauthenticated requests from this address/);
      // A validly signed token the server has not seen yet is served: bad tokens from a shared address must not
      // lock out the users behind it (nor a known user whose cache entry has expired).
      const fresh = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[1]! });
      expect((await rawCall(server.trpcUrl, 'whatsNew', { token: fresh, input: {} })).status).toBe(200);
      // An expired token is no credential: it waits with the rest.
      const expired = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[1]! }, { expiresIn: Math.floor(Date.now() / 1000) - 60 });
      expect((await rawCall(server.trpcUrl, 'whatsNew', { token: expired, input: {} })).status).toBe(429);
      // The remembered token needs no verification: it still works.
      expect((await rawCall(server.trpcUrl, 'whatsNew', { token: known, input: {} })).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

const REDIS_URL = process.env.RATE_LIMIT_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A connected client, or null when no Redis answers (the suite is skipped, like the other optional ones). */
async function connectRedis(): Promise<Redis | null> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 1000, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch {
    client.disconnect();
    return null;
  }
}

const redisA = await connectRedis();
const redisB = redisA ? await connectRedis() : null;

describe.skipIf(!redisA || !redisB)('rate limits in Redis (RATE_LIMIT_REDIS_URL)', () => {
  const engine = engines[0]!;
  afterAll(() => {
    redisA?.disconnect();
    redisB?.disconnect();
  });

  it('a Redis that stops answering (connection open, no replies) neither hangs nor fails calls: the memory limiter takes over', async () => {
    // A TCP proxy to the real Redis that can be switched to swallow everything, as a partition or a stalled
    // server would; the machine's Redis itself is never touched.
    const { hostname, port } = new URL(REDIS_URL);
    let blackhole = false;
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(port || 6379), hostname);
      sockets.add(client).add(upstream);
      client.on('data', (chunk) => {
        if (!blackhole) upstream.write(chunk);
      });
      upstream.on('data', (chunk) => {
        if (!blackhole) client.write(chunk);
      });
      client.on('error', () => {});
      upstream.on('error', () => {});
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxied = await connectServerRedis(`redis://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`);
    const server = await startTestServer(engine, {
      rateLimit: { perMinute: 5, perIpPerMinute: 0, redis: proxied, keyPrefix: `skillviews-test-${randomUUID()}` },
    });
    try {
      const t = await createTenant(server.db, { skills: [skillSpec('s')] });
      const token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      expect((await rawCall(server.trpcUrl, 'whatsNew', { token, input: {} })).status).toBe(200);
      blackhole = true;
      const started = performance.now();
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) statuses.push((await rawCall(server.trpcUrl, 'whatsNew', { token, input: {} })).status);
      const elapsed = performance.now() - started;
      // Answered within the command timeout each (not the 10 s request limit), and still limited (5 a minute) by
      // the insurance limiter in memory.
      expect(elapsed).toBeLessThan(7 * 1000);
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
      expect(statuses).toContain(429);
    } finally {
      await server.close();
      proxied.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  }, 30_000);

  it('shares one allowance between two server instances', async () => {
    const keyPrefix = `skillviews-test-${randomUUID()}`;
    const a = await startTestServer(engine, { rateLimit: { perMinute: 10, perIpPerMinute: 0, redis: redisA!, keyPrefix } });
    const b = await startTestServer(engine, { handle: { db: a.db, engine: engine.name, close: async () => {} }, rateLimit: { perMinute: 10, perIpPerMinute: 0, redis: redisB!, keyPrefix } });
    try {
      const t = await createTenant(a.db, { skills: [skillSpec('s')] });
      const token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      const onA = await whatsNewBatch(a.trpcUrl, token, 6);
      expect(count(onA.codes, 'OK')).toBe(6);
      expect(onA.res.headers.get('ratelimit-remaining')).toBe('4');
      const onB = await whatsNewBatch(b.trpcUrl, token, 6);
      // Per-process memory would have given B its own 10.
      expect(count(onB.codes, 'OK')).toBe(4);
      expect(count(onB.codes, 'TOO_MANY_REQUESTS')).toBe(2);
      expect(onB.res.status).toBe(207);
      expect(onB.res.headers.get('retry-after')).not.toBeNull();
      const keys = await redisA!.keys(`${keyPrefix}:*`);
      expect(keys.length).toBeGreaterThan(0);
      await redisA!.del(...keys);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
