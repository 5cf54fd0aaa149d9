// onChange across real server processes on one Postgres database: every process delivers a commit made elsewhere,
// a lost listening connection resyncs every stream and delivery resumes, tokens never reach the logs, and SIGTERM
// ends open streams with a retryable error and a clean exit.
import { retryableRpcCodes } from '@trpc/server/unstable-core-do-not-import';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engines } from './support/engines.ts';
import { createTenant, editSkill, insertFeedback, insertView, skillSpec, type TenantFixture } from './support/factory.ts';
import { openPrivateDb, type PrivateDb } from './support/private-db.ts';
import { craftToken, rawCall, TEST_SECRET, tokenFor } from './support/server.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';
import { openStream, type OpenStream } from './support/sse.ts';

const postgresEngine = engines.find((e) => e.name === 'postgres');
const within = 2_000; // the bound, commit to delivery

describe.skipIf(!postgresEngine)('onChange across real server processes on one Postgres database', () => {
  let db: PrivateDb;
  let admin: postgres.Sql;
  /** Two replicas of the server on the same database, as behind a load balancer. */
  let a: ServerProcess;
  let b: ServerProcess;
  const processes: ServerProcess[] = [];
  const streams: OpenStream[] = [];

  const env = (extra: Record<string, string> = {}) => ({
    DATABASE_URL: db.url!,
    AUTH_SECRET: TEST_SECRET,
    DB_POOL_SIZE: '4',
    LOG_LEVEL: 'warn',
    ...extra,
  });
  const startProcess = async (extra: Record<string, string> = {}) => {
    const p = await startServerProcess(env(extra));
    processes.push(p);
    return p;
  };
  const sessionOf = (t: TenantFixture, i: number) => ({ tenantId: t.tenantId, userId: t.userIds[i]! });
  /** An open stream of user `i` of `t` on `server`, after its `ready`; the token as a header or in connectionParams. */
  const subscribe = async (server: ServerProcess, t: TenantFixture, i: number, via: 'header' | 'connectionParams' = 'header') => {
    const token = await tokenFor(sessionOf(t, i));
    const s = await openStream(`${server.url}/trpc`, via === 'header' ? { token } : { connectionParams: { token } });
    streams.push(s);
    expect(s.status).toBe(200);
    await s.waitForLive((e) => e.kind === 'ready');
    return s;
  };
  /** The listening connections of the servers on this test's database. */
  const listeners = async () =>
    (await admin`select count(*)::int as n from pg_stat_activity
                 where datname = current_database() and application_name = 'skill-views-listen'`)[0]!.n as number;

  beforeAll(async () => {
    db = await openPrivateDb(postgresEngine!);
    admin = postgres(db.url!, { max: 1, onnotice: () => {} });
    // Both start together and each migrates at start (already migrated: nothing to do, under the migration lock).
    [a, b] = await Promise.all([startProcess(), startProcess()]);
  }, 120_000);
  afterAll(async () => {
    for (const s of streams) s.close();
    await Promise.all(processes.map((p) => p.stop()));
    await admin?.end();
    await db?.drop();
  });

  it('delivers a change committed through a plain connection to subscribers on both processes within 2 s', async () => {
    const t = await createTenant(db.handle.db, { userCount: 2, skills: [skillSpec('shared'), skillSpec('commented')] });
    for (const i of [0, 1]) {
      for (const slug of ['shared', 'commented']) await insertView(db.handle.db, t, { userId: t.userIds[i]!, skillId: t.skills[slug]! });
    }
    expect(await listeners()).toBe(2);
    // User 0 on both processes, user 1 on the second: each stream must hear it.
    const onA = await subscribe(a, t, 0);
    const onB = await subscribe(b, t, 0, 'connectionParams');
    const otherOnB = await subscribe(b, t, 1);

    let started = Date.now();
    await editSkill(db.handle.db, t, t.skills.shared!, { description: 'edited by the host app' });
    for (const s of [onA, onB, otherOnB]) {
      const e = await s.waitForLive((x) => x.kind === 'changed' && x.skillId === t.skills.shared, within);
      expect(e.reasons).toEqual(['content']);
    }
    expect(Date.now() - started).toBeLessThan(within);

    // Feedback by user 1: user 0 hears it on both processes; its author does not.
    started = Date.now();
    await insertFeedback(db.handle.db, t, { skillId: t.skills.commented!, userId: t.userIds[1]! });
    for (const s of [onA, onB]) {
      const e = await s.waitForLive((x) => x.kind === 'changed' && x.skillId === t.skills.commented, within);
      expect(e.reasons).toEqual(['feedback']);
    }
    expect(Date.now() - started).toBeLessThan(within);
    expect(otherOnB.live().filter((e) => e.kind === 'changed').map((e) => e.skillId)).toEqual([t.skills.shared]);
    for (const s of [onA, onB, otherOnB]) s.close();
  });

  it('resyncs every open stream when the listening connections are terminated, and delivers changes committed afterwards', async () => {
    const t = await createTenant(db.handle.db, { userCount: 2, skills: [skillSpec('s')] });
    for (const i of [0, 1]) await insertView(db.handle.db, t, { userId: t.userIds[i]!, skillId: t.skills.s! });
    const open = [
      await subscribe(a, t, 0),
      await subscribe(a, t, 1, 'connectionParams'),
      await subscribe(b, t, 0, 'connectionParams'),
      await subscribe(b, t, 1),
    ];
    expect(await listeners()).toBe(2);

    const killedAt = Date.now();
    const [killed] = await admin`select count(*)::int as n from (
        select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and application_name = 'skill-views-listen') k`;
    expect(killed!.n).toBe(2);
    // The listener reconnects with backoff (from 250 ms), then tells every stream it cannot prove what it missed.
    for (const s of open) await s.waitForLive((e) => e.kind === 'resync', 5_000);
    const resyncedAfterMs = Date.now() - killedAt;
    console.log(`live-processes: every stream resynced ${resyncedAfterMs} ms after the listening connections were terminated`);
    expect(resyncedAfterMs).toBeLessThan(5_000);
    expect(await listeners()).toBe(2);

    const started = Date.now();
    await editSkill(db.handle.db, t, t.skills.s!, { description: 'after the reconnect' });
    for (const s of open) {
      const e = await s.waitForLive((x) => x.kind === 'changed' && x.skillId === t.skills.s, within);
      expect(e.reasons).toEqual(['content']);
    }
    expect(Date.now() - started).toBeLessThan(within);
    // The streams stayed open throughout: the loss is the server's, the client only refetches.
    for (const s of open) expect(s.events.some((e) => e.event === 'serialized-error')).toBe(false);
    for (const s of open) s.close();
  });

  it('never writes a token to its logs (debug level): not from a header, not from connectionParams in the URL, not on refusal or expiry', async () => {
    const t = await createTenant(db.handle.db, { userCount: 2, skills: [skillSpec('s')] });
    await insertView(db.handle.db, t, { userId: t.userIds[0]!, skillId: t.skills.s! });
    const server = await startProcess({ LOG_LEVEL: 'debug' });
    const trpcUrl = `${server.url}/trpc`;
    const session = sessionOf(t, 0);
    const valid = await tokenFor(session);
    const validForParams = await tokenFor(sessionOf(t, 1));
    const shortLived = await tokenFor(session, { expiresIn: '2s' });
    const expired = await craftToken({ sub: session.userId, tid: session.tenantId, exp: Math.floor(Date.now() / 1000) - 60 });
    const expiredForParams = await craftToken({ sub: t.userIds[1]!, tid: t.tenantId, exp: Math.floor(Date.now() / 1000) - 120 });
    // Claims of its own (another user, another expiry), so a leak of it is told apart from a leak of `valid`.
    const forged = await tokenFor(sessionOf(t, 1), { secret: 'another-secret-of-at-least-32-characters!', expiresIn: '30m' });
    const tokens = { valid, validForParams, shortLived, expired, expiredForParams, forged };

    // Streams: a header and connectionParams (in the URL), accepted; then a stream whose token expires mid-stream.
    const byHeader = await openStream(trpcUrl, { token: valid });
    const byParams = await openStream(trpcUrl, { connectionParams: { token: validForParams } });
    const expiring = await openStream(trpcUrl, { connectionParams: { token: shortLived } });
    streams.push(byHeader, byParams, expiring);
    for (const s of [byHeader, byParams, expiring]) {
      expect(s.status).toBe(200);
      await s.waitForLive((e) => e.kind === 'ready');
    }
    // Refusals: expired and forged tokens, as a header and in connectionParams, on a stream and on a call.
    for (const options of [{ token: expired }, { connectionParams: { token: expiredForParams } }, { token: forged }, { connectionParams: { token: forged } }]) {
      const refused = await openStream(trpcUrl, options);
      expect(refused.status).toBe(401);
      expect(refused.body.error.json.data.code).toBe('UNAUTHORIZED');
    }
    const refusedCall = await rawCall(trpcUrl, 'whatsNewCount', { input: {}, token: expired });
    expect(refusedCall.status).toBe(401);
    // A normal call.
    const call = await rawCall(trpcUrl, 'whatsNewCount', { input: {}, token: valid });
    expect(call.status).toBe(200);
    // Mid-stream expiry.
    const error = await expiring.waitFor((e) => e.event === 'serialized-error', 5_000);
    expect(error.data.json.data.code).toBe('UNAUTHORIZED');
    // A stream's line is written when the server ends it: the two still open end at shutdown (SIGTERM).
    const onChangeLines = () => (server.output().match(/"procedures":\["onChange"\]/g) ?? []).length;
    await expect.poll(onChangeLines, { timeout: 5_000 }).toBe(5);
    await server.stop();
    await byHeader.ended;
    await byParams.ended;

    const output = server.output();
    expect(onChangeLines(), output).toBe(7);
    // Not vacuous: the debug log saw these requests, the refusals among them.
    expect(output).toMatch(/"level":20/);
    expect(output).toMatch(/"procedures":\["whatsNewCount"\],"statusCode":401/);
    expect(output).toMatch(/"procedures":\["whatsNewCount"\],"statusCode":200/);
    expect(output).toMatch(/"procedures":\["onChange"\],"statusCode":401/);
    expect(output).toMatch(/"procedures":\["onChange"\],"statusCode":200/);
    for (const [name, token] of Object.entries(tokens)) {
      const [, payload, signature] = token.split('.');
      expect(output, `${name}: the whole token`).not.toContain(token);
      expect(output, `${name}: its claims`).not.toContain(payload!);
      expect(output, `${name}: its signature`).not.toContain(signature!);
      // As it travels in connectionParams: URL-encoded inside JSON.
      expect(output, `${name}: URL-encoded`).not.toContain(encodeURIComponent(JSON.stringify({ token })));
    }
  }, 60_000);

  it('on SIGTERM ends every open stream with a retryable SERVICE_UNAVAILABLE and exits 0 within 5 s', async () => {
    const t = await createTenant(db.handle.db, { userCount: 2 });
    const server = await startProcess({ REQUEST_TIMEOUT_MS: '500' });
    const trpcUrl = `${server.url}/trpc`;
    const open: OpenStream[] = [];
    for (const i of [0, 1]) {
      const token = await tokenFor(sessionOf(t, i));
      for (const options of [{ token }, { connectionParams: { token } }]) {
        const s = await openStream(trpcUrl, options);
        streams.push(s);
        expect(s.status).toBe(200);
        await s.waitForLive((e) => e.kind === 'ready');
        open.push(s);
      }
    }

    const started = Date.now();
    server.child.kill('SIGTERM');
    const exit = await server.exitWithin(5_000);
    const tookMs = Date.now() - started;
    console.log(`live-processes: SIGTERM with ${open.length} open streams: exited ${JSON.stringify(exit)} after ${tookMs} ms`);
    expect(exit, server.output()).toEqual({ code: 0, signal: null });
    expect(tookMs).toBeLessThan(5_000);
    for (const s of open) {
      await s.ended;
      const errors = s.events.filter((e) => e.event === 'serialized-error');
      expect(errors, JSON.stringify(s.events)).toHaveLength(1);
      expect(errors[0]!.data.json.data.code).toBe('SERVICE_UNAVAILABLE');
      // What tRPC's SSE client checks (the numeric code) before it reconnects instead of failing the subscription.
      expect(retryableRpcCodes).toContain(errors[0]!.data.json.code);
      // The error is the stream's last event: nothing after it.
      expect(s.events.at(-1)?.event).toBe('serialized-error');
    }
  }, 30_000);
});
