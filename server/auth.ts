// Authentication: a pluggable Authenticator, and the default one for bearer JWTs (HS256, verified with jose).
import { createSecretKey, type KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Database } from '../db/client.ts';
import { userExists } from '../db/queries/users.ts';
import { isValidSession, type Session } from './session.ts';

export interface AuthenticateOptions {
  /** What is left of the request's time limit, in milliseconds, for any database check the authenticator makes. */
  timeoutMs?: number;
}

/**
 * Turns a request's credentials into a session, or null for an anonymous or invalid caller. An authenticator
 * that remembers sessions may offer `revoke(session)`: the server calls it when the database shows the user is
 * gone, so the next call with the same token is checked again (and refused).
 */
export type Authenticator = ((request: { headers: IncomingHttpHeaders }, options?: AuthenticateOptions) => Promise<Session | null>) & {
  revoke?: (session: Session) => void;
  /**
   * True when the headers carry a credential the authenticator vouches for without asking the database: a token it
   * remembers, or one whose signature and expiry check out (cheap, local). Such requests skip the per-IP limit on
   * failed authentication (RATE_LIMIT_PER_IP_PER_MINUTE), which is checked before the database is asked, so bad
   * tokens from an address can never lock out the valid users behind it. Without it every request is checked.
   */
  vouches?: (headers: IncomingHttpHeaders) => Promise<boolean>;
  /** Lookups of presented tokens in the authenticator's cache so far (metrics). */
  cacheStats?: () => { hits: number; misses: number };
};

export interface JwtAuthenticatorOptions {
  /** HS256 key (AUTH_SECRET). */
  secret: string;
  db: Database;
  appRole: string;
  /** How long an accepted token is trusted without verifying it and asking the database again (never past its exp). */
  userCacheTtlMs?: number;
  /** Most tokens remembered at once (the oldest is forgotten first). */
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
 * (tenant id) and `exp`. The user must exist in that tenant; the check runs under RLS as the app role.
 *
 * An accepted token is remembered, keyed by the whole token (signature included), until its `exp` or for
 * `userCacheTtlMs`, whichever comes first, so a client's repeated calls skip the signature check and the
 * database; a deleted user loses access within `userCacheTtlMs`. Rejections are never remembered.
 */
export function createJwtAuthenticator(options: JwtAuthenticatorOptions): Authenticator {
  const key = secretKey(options.secret);
  const ttl = options.userCacheTtlMs ?? 30_000;
  const maxEntries = options.userCacheSize ?? 10_000;
  const now = options.now ?? Date.now;
  const accepted = new Map<string, { session: Session; until: number }>();

  async function verify(token: string, at: number): Promise<{ session: Session; exp: number } | null> {
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: ['HS256'],
        requiredClaims: ['sub', 'tid', 'exp'],
        currentDate: new Date(at),
      });
      const session = { tenantId: payload.tid, userId: payload.sub };
      if (!isValidSession(session)) return null;
      const exp = payload.exp! * 1000;
      return { session: Object.freeze({ ...session, expiresAt: exp }), exp };
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return null;
      throw err;
    }
  }

  let hits = 0;
  let misses = 0;

  const authenticate: Authenticator = async ({ headers }, { timeoutMs } = {}) => {
    const token = bearer.exec(headers.authorization ?? '')?.[1];
    if (!token) return null;
    const at = now();
    const known = accepted.get(token);
    if (known) {
      if (known.until > at) {
        hits++;
        return known.session;
      }
      accepted.delete(token);
    }
    misses++;
    const verified = await verify(token, at);
    if (!verified) return null;
    if (!(await userExists(options.db, options.appRole, verified.session, { timeoutMs }))) return null;
    if (accepted.size >= maxEntries) accepted.delete(accepted.keys().next().value as string);
    accepted.set(token, { session: verified.session, until: Math.min(verified.exp, at + ttl) });
    return verified.session;
  };
  authenticate.vouches = async (headers) => {
    const token = bearer.exec(headers.authorization ?? '')?.[1];
    if (!token) return false;
    const at = now();
    const known = accepted.get(token);
    if (known !== undefined && known.until > at) return true;
    return (await verify(token, at)) !== null;
  };
  authenticate.cacheStats = () => ({ hits, misses });
  authenticate.revoke = (session) => {
    for (const [token, entry] of accepted) {
      if (entry.session.tenantId === session.tenantId && entry.session.userId === session.userId) accepted.delete(token);
    }
  };
  return authenticate;
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
