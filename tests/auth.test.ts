// Auth over HTTP: every bad credential is UNAUTHORIZED (401) and writes nothing; errors leak no stacks or SQL.
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { router, tenantProcedure } from '../server/trpc.ts';
import { countViews } from './support/callers.ts';
import { engines } from './support/engines.ts';
import { createTenant, skillSpec, type TenantFixture } from './support/factory.ts';
import {
  craftToken,
  errorOf,
  rawCall,
  startRouterServer,
  startTestServer,
  tokenFor,
  unsignedToken,
  type TestServer,
} from './support/server.ts';

const nowSeconds = () => Math.floor(Date.now() / 1000);
const SECRET_SQL_MARKER = 'sv_secret_table_for_leak_test';

/** A procedure that fails inside the database with SQL text (and a literal) in the driver's message. */
const leakRouter = router({
  boom: tenantProcedure.query(({ ctx }) => ctx.db.execute(sql.raw(`select * from ${SECRET_SQL_MARKER} where password = 'hunter2'`))),
});

describe.each(engines)('auth over HTTP on $name', (engine) => {
  let server: TestServer;
  let a: TenantFixture;
  let b: TenantFixture;
  let validToken: string;
  beforeAll(async () => {
    server = await startTestServer(engine);
    a = await createTenant(server.db, { skills: [skillSpec('s')] });
    b = await createTenant(server.db);
    validToken = await tokenFor({ tenantId: a.tenantId, userId: a.userIds[0]! });
  });
  afterAll(() => server.close());

  /** Authorization header values that must not get in, built lazily (they need the fixtures). */
  const badCredentials = async (): Promise<[string, string | undefined][]> => {
    const sub = a.userIds[0]!;
    const tid = a.tenantId;
    const exp = nowSeconds() + 3600;
    const [header, , signature] = validToken.split('.');
    const otherPayload = Buffer.from(JSON.stringify({ tid: b.tenantId, sub: b.userIds[0], exp })).toString('base64url');
    return [
      ['no header', undefined],
      ['empty header', ''],
      ['Bearer without a token', 'Bearer'],
      ['Bearer and a space', 'Bearer '],
      ['Basic credentials', `Basic ${Buffer.from('ada:secret').toString('base64')}`],
      ['a token without the scheme', validToken],
      ['a token followed by junk', `Bearer ${validToken} extra`],
      ['not a JWT', 'Bearer not-a-jwt'],
      ['three junk segments', 'Bearer a.b.c'],
      ['signed with another secret', `Bearer ${await tokenFor({ tenantId: tid, userId: sub }, { secret: 'another-secret-another-secret-another' })}`],
      ['payload swapped after signing', `Bearer ${header}.${otherPayload}.${signature}`],
      ['expired', `Bearer ${await tokenFor({ tenantId: tid, userId: sub }, { expiresIn: nowSeconds() - 60 })}`],
      ['no exp claim', `Bearer ${await craftToken({ sub, tid })}`],
      ['not valid yet (nbf)', `Bearer ${await craftToken({ sub, tid, exp, nbf: nowSeconds() + 3600 })}`],
      ['alg none', `Bearer ${unsignedToken({ sub, tid, exp })}`],
      ['HS512 with the right secret', `Bearer ${await craftToken({ sub, tid, exp }, { alg: 'HS512' })}`],
      ['HS384 with the right secret', `Bearer ${await craftToken({ sub, tid, exp }, { alg: 'HS384' })}`],
      ['no sub', `Bearer ${await craftToken({ tid, exp })}`],
      ['no tid', `Bearer ${await craftToken({ sub, exp })}`],
      ['user of tenant B with tenant A', `Bearer ${await craftToken({ sub: b.userIds[0], tid, exp })}`],
      ['unknown user in a real tenant', `Bearer ${await craftToken({ sub: randomUUID(), tid, exp })}`],
      ['real user in an unknown tenant', `Bearer ${await craftToken({ sub, tid: randomUUID(), exp })}`],
      ['non-uuid sub', `Bearer ${await craftToken({ sub: 'admin', tid, exp })}`],
      ['non-uuid tid', `Bearer ${await craftToken({ sub, tid: 'acme', exp })}`],
      ['numeric tid', `Bearer ${await craftToken({ sub, tid: 42, exp })}`],
      ['SQL in tid', `Bearer ${await craftToken({ sub, tid: `${tid}' or '1'='1`, exp })}`],
    ];
  };

  it('rejects every bad credential with 401 UNAUTHORIZED, the same body each time, and no write', async () => {
    const before = await countViews(server.db, a.tenantId, b.tenantId);
    const reference = await rawCall(server.trpcUrl, 'whatsNew');
    expect(reference.status).toBe(401);
    expect(errorOf(reference)).toMatchObject({ message: 'Sign in to continue', data: { code: 'UNAUTHORIZED', httpStatus: 401 } });
    for (const [name, authorization] of await badCredentials()) {
      const options = authorization === undefined ? {} : { authorization };
      const query = await rawCall(server.trpcUrl, 'whatsNew', options);
      expect(query.status, name).toBe(401);
      // One answer for every failure: nothing tells a caller which check failed.
      expect(query.text, name).toBe(reference.text);
      const mutation = await rawCall(server.trpcUrl, 'recordView', { ...options, method: 'POST', input: { skillId: a.skills.s! } });
      expect(mutation.status, name).toBe(401);
      expect(errorOf(mutation).data.code, name).toBe('UNAUTHORIZED');
    }
    expect(await countViews(server.db, a.tenantId, b.tenantId)).toBe(before);
  });

  it('accepts a valid token (any case of "Bearer"), and the call runs as that user', async () => {
    const ok = await rawCall(server.trpcUrl, 'whatsNew', { token: validToken, input: {} });
    expect(ok.status).toBe(200);
    expect(ok.body.result.data.json).toEqual({ items: [], nextCursor: null });
    const lower = await rawCall(server.trpcUrl, 'whatsNew', { authorization: `bearer ${validToken}`, input: {} });
    expect(lower.status).toBe(200);
    const recorded = await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token: validToken, input: { skillId: a.skills.s! } });
    expect(recorded.status).toBe(200);
    expect(recorded.body.result.data.json.view.viewCount).toBe(1);
    expect(await countViews(server.db, a.tenantId)).toBe(1);
    // B's valid token does not reach A's skill.
    const bToken = await tokenFor({ tenantId: b.tenantId, userId: b.userIds[0]! });
    const foreign = await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token: bToken, input: { skillId: a.skills.s! } });
    expect(foreign.status).toBe(404);
  });

  it('error responses carry no stack when errors are not exposed, and do in development', async () => {
    const badInput = await rawCall(server.trpcUrl, 'changeSummary', { token: validToken, input: { skillId: 'nope' } });
    const unauthorized = await rawCall(server.trpcUrl, 'whatsNew');
    for (const res of [badInput, unauthorized]) {
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(errorOf(res).data).not.toHaveProperty('stack');
      expect(res.text).not.toMatch(/"stack"|node_modules|\.ts:\d+/);
    }
    const dev = await startTestServer(engine, { exposeErrors: true });
    try {
      const res = await rawCall(dev.trpcUrl, 'whatsNew');
      expect(res.status).toBe(401);
      expect(errorOf(res).data.stack).toEqual(expect.stringContaining('TRPCError'));
    } finally {
      await dev.close();
    }
  });

  it('hides an internal error\'s message (which holds SQL) unless errors are exposed', async () => {
    const session = { tenantId: a.tenantId, userId: a.userIds[0]! };
    const hidden = await startRouterServer(leakRouter, { db: server.db, session, exposeErrors: false });
    const shown = await startRouterServer(leakRouter, { db: server.db, session, exposeErrors: true });
    try {
      const res = await rawCall(hidden.url, 'boom');
      expect(res.status).toBe(500);
      expect(errorOf(res)).toMatchObject({ message: 'Internal server error', data: { code: 'INTERNAL_SERVER_ERROR' } });
      expect(res.text).not.toContain(SECRET_SQL_MARKER);
      expect(res.text).not.toContain('hunter2');
      expect(res.text).not.toMatch(/select|"stack"/i);
      // The control: in development the same failure shows the database's message.
      const dev = await rawCall(shown.url, 'boom');
      expect(dev.status).toBe(500);
      expect(errorOf(dev).message).toContain(SECRET_SQL_MARKER);
    } finally {
      await hidden.close();
      await shown.close();
    }
  });

  it('the real app hides database errors too (a request transaction that cannot switch role)', async () => {
    const session = { tenantId: a.tenantId, userId: a.userIds[0]! };
    const broken = await startTestServer(engine, {
      handle: { db: server.db, engine: engine.name, close: async () => {} },
      appRole: 'sv_role_that_does_not_exist',
      authenticate: async () => session,
    });
    try {
      const res = await rawCall(broken.trpcUrl, 'whatsNew', { input: {} });
      expect(res.status).toBe(500);
      expect(errorOf(res).message).toBe('Internal server error');
      expect(res.text).not.toContain('sv_role_that_does_not_exist');
      expect(res.text).not.toContain('"stack"');
    } finally {
      await broken.close();
    }
  });

  it('an authenticator that throws is a hidden 500, not a way in', async () => {
    const broken = await startTestServer(engine, {
      handle: { db: server.db, engine: engine.name, close: async () => {} },
      authenticate: async () => {
        throw new Error('identity provider password=swordfish unreachable');
      },
    });
    try {
      const res = await rawCall(broken.trpcUrl, 'recordView', { method: 'POST', token: validToken, input: { skillId: a.skills.s! } });
      expect(res.status).toBe(500);
      expect(res.text).not.toContain('swordfish');
      expect(errorOf(res).message).toBe('Internal server error');
    } finally {
      await broken.close();
    }
  });
});
