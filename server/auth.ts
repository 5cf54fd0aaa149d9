// Authentication: a pluggable Authenticator, and the default one for bearer JWTs (HS256, verified with jose).
import { createSecretKey, type KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { sql } from 'drizzle-orm';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Database } from '../db/client.ts';
import { query } from '../db/queries/rows.ts';
import { withTenantTransaction } from '../db/queries/tenant-transaction.ts';
import { isValidSession, type Session } from './session.ts';

/** Turns a request's credentials into a session, or null for an anonymous or invalid caller. */
export type Authenticator = (request: { headers: IncomingHttpHeaders }) => Promise<Session | null>;

export interface JwtAuthenticatorOptions {
  /** HS256 key (AUTH_SECRET). */
  secret: string;
  db: Database;
  appRole: string;
  /** How long a confirmed (tenant, user) pair is trusted without asking the database again. */
  userCacheTtlMs?: number;
  userCacheSize?: number;
  now?: () => number;
}

const bearer = /^Bearer\s+([A-Za-z0-9_\-.]+)$/i;

/** The HS256 key as a KeyObject, imported once rather than on every verification. */
export function secretKey(secret: string): KeyObject {
  return createSecretKey(Buffer.from(secret, 'utf8'));
}

/**
 * Accepts `Authorization: Bearer <JWT>` signed HS256 with the secret, with `sub` (user id), `tid`
 * (tenant id) and `exp`. The user must exist in that tenant; the check runs under RLS as the app role
 * and is cached briefly, so a deleted user loses access within `userCacheTtlMs`.
 */
export function createJwtAuthenticator(options: JwtAuthenticatorOptions): Authenticator {
  const key = secretKey(options.secret);
  const ttl = options.userCacheTtlMs ?? 30_000;
  const maxEntries = options.userCacheSize ?? 10_000;
  const now = options.now ?? Date.now;
  const confirmed = new Map<string, number>();

  async function userExists(session: Session): Promise<boolean> {
    const cacheKey = `${session.tenantId}:${session.userId}`;
    const until = confirmed.get(cacheKey);
    if (until !== undefined && until > now()) return true;
    const rows = await withTenantTransaction(options.db, { role: options.appRole, ...session }, (tx) =>
      query(tx, sql`select 1 from users where tenant_id = ${session.tenantId}::uuid and id = ${session.userId}::uuid`),
    );
    if (rows.length === 0) {
      confirmed.delete(cacheKey);
      return false;
    }
    if (confirmed.size >= maxEntries) confirmed.delete(confirmed.keys().next().value as string);
    confirmed.set(cacheKey, now() + ttl);
    return true;
  }

  return async ({ headers }) => {
    const match = bearer.exec(headers.authorization ?? '');
    if (!match?.[1]) return null;
    let payload;
    try {
      ({ payload } = await jwtVerify(match[1], key, { algorithms: ['HS256'], requiredClaims: ['sub', 'tid', 'exp'] }));
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return null;
      throw err;
    }
    const session = { tenantId: payload.tid, userId: payload.sub };
    if (!isValidSession(session)) return null;
    return (await userExists(session)) ? session : null;
  };
}

/** Signs a token for a session (demo users, tests, scripts). */
export async function signToken(session: Session, secret: string, expiresIn: string | number = '24h'): Promise<string> {
  return new SignJWT({ tid: session.tenantId })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(session.userId)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(secretKey(secret));
}
