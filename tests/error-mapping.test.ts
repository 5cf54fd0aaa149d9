// Database errors a caller can cause map to their tRPC codes, never a 500 (DESIGN.md "Deployment" → "Errors"):
// feed cursors Postgres would reject, a user deleted while their token is cached, a skill deleted mid-request;
// a bad input never reaches the database; a real 500 shows no SQL, bind values or stack unless EXPOSE_ERRORS.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDb, type DbHandle } from '../db/client.ts';
import { decodeCursor, encodeCursor } from '../db/queries/feed.ts';
import { query } from '../db/queries/rows.ts';
import { loadConfig } from '../server/config.ts';
import { engines, type TestEngine } from './support/engines.ts';
import { countViews } from './support/callers.ts';
import { createTenant, insertView, skillSpec, type TenantFixture } from './support/factory.ts';
import { errorOf, rawCall, startTestServer, tokenFor, type RawResponse, type TestServer } from './support/server.ts';

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64url');

/**
 * A private database on `engine` that records every statement it receives: on Postgres through postgres.js's
 * `debug` hook (called for each query the driver sends), on PGlite by reading the wire protocol messages the
 * instance hands its Postgres backend (`execProtocolRawSync`, the one path every query, exec and transaction
 * statement takes): a simple Query counts as one statement, so does each Execute of the extended protocol.
 */
async function openCountingDb(engine: TestEngine): Promise<{ handle: DbHandle; sent: string[]; pglite: PGlite | null }> {
  const sent: string[] = [];
  if (engine.url) {
    const handle = createDb({
      url: engine.url,
      poolSize: 3,
      driverOptions: { debug: (_connection: number, text: string) => void sent.push(text) },
    });
    return { handle, sent, pglite: null };
  }
  const pglite = await PGlite.create({ loadDataDir: new Blob([await readFile(inject('pgliteTemplate'))]) });
  const backend = pglite as unknown as { execProtocolRawSync: (message: Uint8Array) => Uint8Array };
  const original = backend.execProtocolRawSync.bind(pglite);
  let parsed = '(unnamed statement)';
  backend.execProtocolRawSync = (message: Uint8Array) => {
    const bytes = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
    for (let at = 0; at + 5 <= bytes.length; ) {
      const type = String.fromCharCode(bytes[at]!);
      const length = bytes.readInt32BE(at + 1);
      const body = bytes.subarray(at + 5, at + 1 + length);
      if (type === 'Q') sent.push(body.toString('utf8').replace(/\0$/, ''));
      if (type === 'P') parsed = body.toString('utf8').split('\0')[1] ?? parsed;
      if (type === 'E') sent.push(parsed);
      at += 1 + length;
    }
    return original(message);
  };
  const handle = createDb({ pglite });
  return { handle, sent, pglite };
}

/** The fields of a tRPC error answer every test here checks. */
function expectTrpcError(res: RawResponse, code: string, httpStatus: number) {
  expect(res.status, res.text.slice(0, 500)).toBe(httpStatus);
  const error = errorOf(res);
  expect(error.data.code).toBe(code);
  expect(error.data.httpStatus).toBe(httpStatus);
  return error;
}

describe.each(engines)('error mapping on $name', (engine) => {
  let db: Awaited<ReturnType<typeof openCountingDb>>;
  /** Production-like: configured from an environment with neither EXPOSE_ERRORS nor NODE_ENV set. */
  let server: TestServer;
  /** The same app with EXPOSE_ERRORS=true. */
  let exposing: TestServer;

  beforeAll(async () => {
    db = await openCountingDb(engine);
    const config = loadConfig({});
    server = await startTestServer(engine, { handle: db.handle, exposeErrors: config.EXPOSE_ERRORS });
    exposing = await startTestServer(engine, { handle: db.handle, exposeErrors: loadConfig({ EXPOSE_ERRORS: 'true' }).EXPOSE_ERRORS });
  });
  afterAll(async () => {
    await server?.close();
    await exposing?.close();
    await db?.handle.close();
  });

  const asOwner = (text: ReturnType<typeof sql>) => query(db.handle.db, text);

  describe('feed cursors', () => {
    const canonicalFormat = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"';

    /**
     * Asks the database, for each (timestamp, id) pair, whether `ts::timestamptz` and `id::uuid` are accepted
     * (the casts the feed query applies to a cursor's fields) and whether both are in the canonical spelling the
     * server writes into cursors (to_char of the timestamp in UTC, the uuid's text form). One statement for all.
     */
    async function askDatabase(candidates: { ts: string; id: string }[]) {
      return db.handle.db.transaction(async (tx) => {
        await tx.execute(
          sql.raw(`
          create or replace function pg_temp.cursor_check(ts text, id text, out accepted boolean, out canonical boolean)
          language plpgsql as $fn$
          declare t timestamptz; u uuid;
          begin
            begin
              t := ts::timestamptz;
              u := id::uuid;
            exception when others then
              accepted := false; canonical := false; return;
            end;
            accepted := true;
            canonical := to_char(t at time zone 'UTC', '${canonicalFormat}') = ts and u::text = lower(id);
          end $fn$`),
        );
        const rows = await query<{ n: unknown; accepted: boolean; canonical: boolean }>(
          tx,
          sql`select c.n, (pg_temp.cursor_check(c.v->>'ts', c.v->>'id')).*
              from jsonb_array_elements(${JSON.stringify(candidates)}::jsonb) with ordinality as c(v, n)
              order by c.n`,
        );
        return rows.map((r) => ({ accepted: r.accepted, canonical: r.canonical }));
      });
    }

    /** Deterministic pseudo-random numbers (mulberry32), so a failure can be reproduced. */
    function random(seed: number) {
      return () => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    }
    const pad = (n: number, width: number) => String(n).padStart(width, '0');
    const stamp = (y: number, mo: number, d: number, h: number, mi: number, s: number, micro: string) =>
      `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:${pad(s, 2)}.${micro}Z`;

    function candidates(): { ts: string; id: string }[] {
      const next = random(20260230);
      const int = (max: number) => Math.floor(next() * (max + 1));
      const micro = () => pad(int(999_999), 6);
      const id = randomUUID();
      const out: { ts: string; id: string }[] = [];
      // Calendar edges: year 0 (Postgres has none), leap rules (4, 100, 400), month and day bounds.
      const years = [0, 1, 2, 3, 4, 99, 100, 400, 1582, 1600, 1700, 1800, 1900, 1970, 1999, 2000, 2001, 2023, 2024, 2025, 2026, 2100, 2400, 9996, 9999];
      for (const y of years) {
        for (const mo of [0, 1, 2, 3, 4, 6, 9, 11, 12, 13, 19, 99]) {
          for (const d of [0, 1, 28, 29, 30, 31, 32, 99]) out.push({ ts: stamp(y, mo, d, 12, 34, 56, '123456'), id });
        }
      }
      // Clock edges, including what Postgres takes but never writes (24:00:00, a leap second :60).
      for (const [y, mo, d] of [[2024, 2, 29], [1, 1, 1], [9999, 12, 31], [2026, 12, 31]] as const) {
        for (const h of [0, 1, 12, 23, 24, 25, 99]) {
          for (const mi of [0, 59, 60, 99]) {
            for (const s of [0, 59, 60, 61, 99]) {
              for (const us of ['000000', '000001', '999999']) out.push({ ts: stamp(y, mo, d, h, mi, s, us), id });
            }
          }
        }
      }
      // Random field values, most of them out of range somewhere.
      for (let i = 0; i < 2000; i++) {
        out.push({ ts: stamp(int(9999), int(19), int(39), int(29), int(69), int(69), micro()), id });
      }
      // Random real instants over the whole range a cursor can hold (years 1–9999), as the server writes them.
      for (let i = 0; i < 1000; i++) {
        const ms = Date.UTC(1, 0, 1) + next() * (Date.UTC(9999, 11, 31, 23, 59, 59, 999) - Date.UTC(1, 0, 1));
        const date = new Date(Math.floor(ms));
        const iso = stamp(date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds(), micro());
        out.push({ ts: iso, id: i % 10 === 0 ? randomUUID().toUpperCase() : randomUUID() });
      }
      // Ids: only the canonical 8-4-4-4-12 form (any case) is ours, though Postgres reads others too.
      const raw = randomUUID();
      for (const variant of [raw, raw.toUpperCase(), raw.replaceAll('-', ''), `{${raw}}`, `${raw.slice(0, -1)}g`, raw.slice(0, -1), `${raw}0`, '00000000-0000-0000-0000-000000000000']) {
        out.push({ ts: '2026-01-02T03:04:05.123456Z', id: variant });
      }
      return out;
    }

    it('a cursor decodes exactly when Postgres accepts its timestamp and id as the server writes them', async () => {
      const all = candidates();
      const verdicts = await askDatabase(all);
      expect(verdicts).toHaveLength(all.length);
      const wrong: string[] = [];
      let decoded = 0;
      let acceptedButNotOurs = 0;
      all.forEach(({ ts, id }, i) => {
        const verdict = verdicts[i]!;
        const cursor = decodeCursor(encodeCursor({ updatedAt: ts, id }));
        if (cursor) {
          decoded++;
          // The safety property: nothing that decodes makes Postgres fail the feed query (a 500).
          if (!verdict.accepted) wrong.push(`decodes but Postgres rejects it: ${ts} | ${id}`);
          else if (!verdict.canonical) wrong.push(`decodes but is not how the server writes it: ${ts} | ${id}`);
          else expect(cursor).toEqual({ updatedAt: ts, id: id.toLowerCase() });
        } else if (verdict.canonical) {
          wrong.push(`a cursor the server could write does not decode: ${ts} | ${id}`);
        } else if (verdict.accepted) {
          acceptedButNotOurs++;
        }
      });
      expect(wrong.slice(0, 20)).toEqual([]);
      // Not vacuous: thousands on each side, and Postgres's extra spellings (24:00:00, :60) were among them.
      expect(decoded).toBeGreaterThan(1000);
      expect(all.length - decoded).toBeGreaterThan(1000);
      expect(acceptedButNotOurs).toBeGreaterThan(0);
    });

    describe('over HTTP', () => {
      let t: TenantFixture;
      let token: string;
      beforeAll(async () => {
        t = await createTenant(db.handle.db, { userCount: 1 });
        token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      });

      it.each([
        ['30 February', '2026-02-30T00:00:00.000000Z'],
        ['29 February of a common year', '2025-02-29T10:00:00.000000Z'],
        ['29 February 1900 (divisible by 100)', '1900-02-29T10:00:00.000000Z'],
        ['31 April', '2026-04-31T00:00:00.000000Z'],
        ['year 0', '0000-01-01T00:00:00.000000Z'],
        ['hour 24', '2026-01-01T24:00:00.000000Z'],
        ['hour 25', '2026-01-01T25:00:00.000000Z'],
        ['minute 60', '2026-01-01T12:60:00.000000Z'],
        ['second 60', '2026-01-01T12:00:60.000000Z'],
      ])('a cursor with %s is BAD_REQUEST with zod issues, not a 500', async (_, ts) => {
        const res = await rawCall(server.trpcUrl, 'whatsNew', { token, input: { cursor: b64(`${ts}|${randomUUID()}`) } });
        const error = expectTrpcError(res, 'BAD_REQUEST', 400);
        expect(error.data.zodIssues).toEqual([expect.objectContaining({ path: ['cursor'] })]);
      });

      it.each([
        ['29 February 2024', '2024-02-29T23:59:59.999999Z'],
        ['29 February 2000 (divisible by 400)', '2000-02-29T00:00:00.000000Z'],
        ['the first instant of year 1', '0001-01-01T00:00:00.000000Z'],
        ['the last microsecond of year 9999', '9999-12-31T23:59:59.999999Z'],
      ])('a valid cursor at %s is answered', async (_, ts) => {
        const res = await rawCall(server.trpcUrl, 'whatsNew', { token, input: { cursor: b64(`${ts}|${randomUUID()}`) } });
        expect(res.status, res.text.slice(0, 300)).toBe(200);
        expect(res.body.result.data.json).toEqual({ items: [], nextCursor: null });
      });
    });
  });

  describe('a user deleted while their token is cached', () => {
    let t: TenantFixture;
    const tokens: string[] = [];
    beforeAll(async () => {
      t = await createTenant(db.handle.db, { userCount: 3, skills: [skillSpec('first'), skillSpec('second')] });
      for (const userId of t.userIds) tokens.push(await tokenFor({ tenantId: t.tenantId, userId }));
    });

    it('recordView is UNAUTHORIZED, and the token is forgotten: the next call is UNAUTHORIZED too', async () => {
      const [deleted, control, bystander] = tokens as [string, string, string];
      // Every token is now accepted and cached by the JWT authenticator (30 s).
      for (const token of tokens) {
        expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: t.skills.first } })).status).toBe(200);
      }
      await asOwner(sql`delete from users where tenant_id = ${t.tenantId}::uuid and id in (${t.userIds[0]}::uuid, ${t.userIds[1]}::uuid)`);

      // The premise: a read by a deleted user whose token is still cached goes through (an empty feed),
      // because the cache trusts the token for 30 s without asking the database.
      const cached = await rawCall(server.trpcUrl, 'whatsNew', { token: control, input: {} });
      expect(cached.status, cached.text).toBe(200);

      // A write by a deleted user fails the foreign key to users: UNAUTHORIZED, not a 500.
      const write = await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token: deleted, input: { skillId: t.skills.second } });
      const error = expectTrpcError(write, 'UNAUTHORIZED', 401);
      expect(error.message).toBe('Sign in to continue');
      expect(write.text).not.toMatch(/foreign key|user_skill_views|violates|23503/i);

      // The same token again, on the read that the cache let through above: refused now, so the cache entry
      // was dropped and the authenticator asked the database, which no longer has the user.
      expectTrpcError(await rawCall(server.trpcUrl, 'whatsNew', { token: deleted, input: {} }), 'UNAUTHORIZED', 401);
      expectTrpcError(await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token: deleted, input: { skillId: t.skills.first } }), 'UNAUTHORIZED', 401);

      // Only that user's entry went: the other deleted user's token is still cached (until it fails a write)…
      expect((await rawCall(server.trpcUrl, 'whatsNew', { token: control, input: {} })).status).toBe(200);
      // …and a user who still exists is unaffected.
      expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token: bystander, input: { skillId: t.skills.second } })).status).toBe(200);
      expect(await countViews(db.handle.db, t.tenantId)).toBe(2);
    });
  });

  describe('a skill deleted while recordView runs', () => {
    let t: TenantFixture;
    let token: string;
    beforeAll(async () => {
      t = await createTenant(db.handle.db, { userCount: 1, skills: [skillSpec('doomed'), skillSpec('kept')] });
      token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: t.skills.kept } })).status).toBe(200);
    });

    it.runIf(engine.url)('is NOT_FOUND when the deletion commits between the lookup and the write (a real race)', async () => {
      const owner = postgres(engine.url!, { max: 1, onnotice: () => {} });
      try {
        let res: RawResponse | undefined;
        await owner.begin(async (tx) => {
          const pid = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
          await tx`delete from skills where id = ${t.skills.doomed!}::uuid`;
          // recordView reads the skill (the delete is not committed, so it is still there), then its insert's
          // foreign-key check waits on the deleted row's lock.
          void rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: t.skills.doomed } }).then((r) => (res = r));
          const deadline = Date.now() + 10_000;
          for (;;) {
            const waiting = await query<{ n: unknown }>(
              db.handle.db,
              sql`select count(*)::int as n from pg_stat_activity where ${pid}::int = any(pg_blocking_pids(pid))`,
            );
            if (Number(waiting[0]?.n) > 0) break;
            if (res) throw new Error(`recordView finished before the deletion committed: ${res.status} ${res.text}`);
            if (Date.now() > deadline) throw new Error('recordView never waited on the deleted skill');
            await new Promise((r) => setTimeout(r, 20));
          }
        });
        // The deletion is committed: the waiting foreign-key check finds no skill.
        for (let i = 0; i < 500 && !res; i++) await new Promise((r) => setTimeout(r, 20));
        const error = expectTrpcError(res!, 'NOT_FOUND', 404);
        expect(error.message).toBe('Skill not found');
        // The caller's token is untouched: a user who exists is never signed out by a missing skill.
        expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: t.skills.kept } })).status).toBe(200);
      } finally {
        await owner.end();
      }
    });

    it.runIf(!engine.url)(
      'is NOT_FOUND when the skill disappears between the lookup and the write (simulated: one PGlite connection cannot race)',
      async () => {
        // A trigger, as the owner, deletes the skill just before the view row is inserted: the same foreign-key
        // failure as a concurrent deletion committed between recordView's lookup and its write.
        await db.pglite!.exec(`
          create function vanish_skill() returns trigger language plpgsql security definer as $$
          begin delete from skills where id = new.skill_id; return new; end $$;
          create trigger vanish_skill before insert on user_skill_views
            for each row when (new.skill_id = '${t.skills.doomed}') execute function vanish_skill();`);
        try {
          const res = await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: t.skills.doomed } });
          const error = expectTrpcError(res, 'NOT_FOUND', 404);
          expect(error.message).toBe('Skill not found');
        } finally {
          await db.pglite!.exec('drop trigger vanish_skill on user_skill_views; drop function vanish_skill();');
        }
        // Not mistaken for a missing user (user_skill_views_skill_fk contains "user"): the token still works.
        expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: t.skills.kept } })).status).toBe(200);
      },
    );
  });

  describe('a bad input never reaches the database', () => {
    let t: TenantFixture;
    let token: string;
    beforeAll(async () => {
      t = await createTenant(db.handle.db, { userCount: 1, skills: [skillSpec('one')] });
      token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
    });

    it('no statement for a bad input; statements for a good one', async () => {
      // Caches the token, so the authenticator does not ask the database either.
      expect((await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId: t.skills.one } })).status).toBe(200);
      const bad: [string, Parameters<typeof rawCall>[2]][] = [
        ['recordView', { method: 'POST', token, input: { skillId: 'not-a-uuid' } }],
        ['recordView', { method: 'POST', token, input: { skillId: t.skills.one, tenantId: t.tenantId } }],
        ['viewsForSkills', { method: 'POST', token, input: { skillIds: Array.from({ length: 501 }, () => randomUUID()) } }],
        ['whatsNew', { token, input: { cursor: b64(`2026-02-30T00:00:00.000000Z|${randomUUID()}`) } }],
        ['whatsNew', { token, input: { limit: 0 } }],
        ['changeSummary', { token, input: { skillId: 42 } }],
      ];
      for (const [path, options] of bad) {
        db.sent.length = 0;
        const res = await rawCall(server.trpcUrl, path, options);
        expectTrpcError(res, 'BAD_REQUEST', 400);
        expect(db.sent, `${path} ${JSON.stringify(options?.input).slice(0, 80)}`).toEqual([]);
      }
      // The counter does see a good input's statements: the scope statement, then the procedure's query.
      db.sent.length = 0;
      const good = await rawCall(server.trpcUrl, 'whatsNew', { token, input: { limit: 5 } });
      expect(good.status, good.text).toBe(200);
      expect(db.sent.some((text) => text.includes('set_config'))).toBe(true);
      expect(db.sent.some((text) => text.includes('user_skill_views'))).toBe(true);
    });
  });

  describe('an internal error caused by SQL', () => {
    let t: TenantFixture;
    let token: string;
    let skillId: string;
    beforeAll(async () => {
      t = await createTenant(db.handle.db, { userCount: 1, skills: [skillSpec('maxed')] });
      skillId = t.skills.maxed!;
      token = await tokenFor({ tenantId: t.tenantId, userId: t.userIds[0]! });
      // One more view overflows the integer counter: Postgres fails the upsert ("integer out of range").
      await insertView(db.handle.db, t, { userId: t.userIds[0]!, skillId, lastViewedAt: new Date(), lastViewedVersion: 1, viewCount: 2147483647 });
    });

    it('EXPOSE_ERRORS is off unless set, whatever NODE_ENV says', () => {
      expect(loadConfig({}).EXPOSE_ERRORS).toBe(false);
      expect(loadConfig({ NODE_ENV: 'development' }).EXPOSE_ERRORS).toBe(false);
      expect(loadConfig({ EXPOSE_ERRORS: 'true' }).EXPOSE_ERRORS).toBe(true);
    });

    it('with EXPOSE_ERRORS off, a 500 carries no SQL text, no bind values and no stack', async () => {
      const res = await rawCall(server.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId } });
      const error = expectTrpcError(res, 'INTERNAL_SERVER_ERROR', 500);
      expect(error.message).toBe('Internal server error');
      expect(error.data.stack).toBeUndefined();
      for (const secret of [t.tenantId, t.userIds[0]!, skillId]) expect(res.text).not.toContain(secret);
      expect(res.text).not.toMatch(/select|insert|user_skill_views|set_config|Failed query|params|out of range|22003|\bat .*:\d+:\d+/i);
    });

    it('with EXPOSE_ERRORS on, the same 500 carries the message and the stack', async () => {
      const res = await rawCall(exposing.trpcUrl, 'recordView', { method: 'POST', token, input: { skillId } });
      const error = expectTrpcError(res, 'INTERNAL_SERVER_ERROR', 500);
      expect(error.message).toMatch(/user_skill_views/);
      expect(typeof error.data.stack).toBe('string');
      // Nothing was written either way.
      const rows = await query<{ view_count: unknown }>(db.handle.db, sql`select view_count from user_skill_views where tenant_id = ${t.tenantId}::uuid`);
      expect(rows.map((r) => Number(r.view_count))).toEqual([2147483647]);
    });
  });
});
