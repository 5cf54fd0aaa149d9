// The JWT authenticator's memory of accepted tokens: never past exp or the TTL, never for a token it did not accept.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { createJwtAuthenticator } from '../server/auth.ts';
import type { Session } from '../server/session.ts';
import { engines } from './support/engines.ts';
import { APP_ROLE, createTenant, type TenantFixture } from './support/factory.ts';
import { craftToken, TEST_SECRET, tokenFor } from './support/server.ts';

const TTL = 30_000;

describe.each(engines)('JWT authenticator cache on $name', (engine) => {
  let handle: DbHandle;
  let t: TenantFixture;
  beforeAll(async () => {
    handle = await engine.open();
    t = await createTenant(handle.db, { userCount: 3 });
  });
  afterAll(() => handle.close());

  /** An authenticator on a clock the test moves; `checks` counts its user-exists queries (statements as the app role). */
  function authenticator() {
    const clock = { now: Date.now() };
    const authenticate = createJwtAuthenticator({
      secret: TEST_SECRET,
      db: handle.db,
      appRole: APP_ROLE,
      userCacheTtlMs: TTL,
      now: () => clock.now,
    });
    const call = (token: string) => authenticate({ headers: { authorization: `Bearer ${token}` } });
    return { clock, call };
  }

  /** An accepted session carries its token's expiry (epoch ms), which ends a live stream. */
  const withExpiry = (session: Session) => ({ ...session, expiresAt: expect.any(Number) });

  const deleteUser = (userId: string) => handle.db.execute(sql`delete from users where id = ${userId}::uuid`);

  it('keeps accepting a remembered token within the TTL, and asks again after it (a deleted user is let go)', async () => {
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[0]! };
    const token = await tokenFor(session);
    const { clock, call } = authenticator();
    expect(await call(token)).toEqual(withExpiry(session));
    await deleteUser(session.userId);
    clock.now += TTL - 1_000;
    expect(await call(token)).toEqual(withExpiry(session));
    clock.now += 2_000;
    expect(await call(token)).toBeNull();
  });

  it('forgets a token at its exp even when the TTL has not run out', async () => {
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[1]! };
    const exp = Math.floor(Date.now() / 1000) + 10;
    const token = await craftToken({ sub: session.userId, tid: session.tenantId, exp });
    const { clock, call } = authenticator();
    // The session carries the token's exp in ms (a live stream ends then), from the cache too.
    expect(await call(token)).toEqual({ ...session, expiresAt: exp * 1000 });
    expect(await call(token)).toEqual({ ...session, expiresAt: exp * 1000 });
    clock.now = exp * 1000 + 1;
    expect(await call(token)).toBeNull();
  });

  it('a remembered token does not let in a tampered copy of itself', async () => {
    const session: Session = { tenantId: t.tenantId, userId: t.userIds[2]! };
    const token = await tokenFor(session);
    const { call } = authenticator();
    expect(await call(token)).toEqual(withExpiry(session));
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const other = Buffer.from(JSON.stringify({ tid: t.tenantId, sub: t.userIds[0], exp: 9_999_999_999 })).toString('base64url');
    const flipped = signature.slice(0, -2) + (signature.endsWith('AA') ? 'BB' : 'AA');
    for (const forged of [`${header}.${other}.${signature}`, `${header}.${payload}.${flipped}`, `${header}.${payload}.`]) {
      expect(await call(forged), forged).toBeNull();
    }
    expect(await call(token)).toEqual(withExpiry(session));
  });

  it('does not remember a rejection: a user who exists later gets in', async () => {
    const fresh = await createTenant(handle.db, { userCount: 0 });
    const userId = t.userIds[0]!.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    const session: Session = { tenantId: fresh.tenantId, userId };
    const token = await tokenFor(session);
    const { call } = authenticator();
    expect(await call(token)).toBeNull();
    await handle.db.execute(
      sql`insert into users (id, tenant_id, email, name) values (${userId}::uuid, ${fresh.tenantId}::uuid, 'late@x.test', 'Late')`,
    );
    expect(await call(token)).toEqual(withExpiry(session));
  });
});
