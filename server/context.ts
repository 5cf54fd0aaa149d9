// Request context in two layers: createContextInner is pure (tests, server-side callers); createContext reads HTTP.
import type { IncomingHttpHeaders } from 'node:http';
import { TRPCError } from '@trpc/server';
import { requestTimeoutOf, type Database } from '../db/client.ts';
import { DEFAULT_APP_ROLE } from '../db/migrate.ts';
import type { Authenticator } from './auth.ts';
import { toClientError } from './errors.ts';
import type { Metrics } from './metrics.ts';
import { rateLimitHeaders, type RateLimitDecision, type RateLimits } from './rate-limit.ts';
import type { Session } from './session.ts';

/**
 * A server's operations hooks, per request: metrics, rate limits, tracing. Server-side callers have none (traced
 * through @opentelemetry/api, which is a no-op without an SDK; neither counted nor limited).
 */
export interface RequestOps {
  metrics: Metrics | null;
  limits: RateLimits | null;
  /** One span per procedure and one around the request transaction (false only to measure their cost). */
  tracing: boolean;
  /** The most restrictive rate-limit decision of the request's calls so far, sent as `RateLimit-*` headers. */
  rateLimit: RateLimitDecision | null;
}

export type { Session } from './session.ts';

export interface ContextInnerOptions {
  db: Database;
  session: Session | null;
  /** Role request transactions switch to; defaults to skillviews_app. */
  appRole?: string;
  /** Show internal error messages and stacks to clients (EXPOSE_ERRORS=true; local debugging only). */
  exposeErrors?: boolean;
  /** Called when the database shows the session's user no longer exists (the authenticator forgets it). */
  revokeSession?: (session: Session) => void;
  /**
   * When the request's time limit runs out (epoch ms): the request transaction gets only what is left of it.
   * HTTP requests set it when they arrive; unset (server-side callers), each transaction gets the full limit.
   */
  deadline?: number;
  /** Operations hooks (HTTP requests of a server); unset for server-side callers. */
  ops?: RequestOps;
  /** Calls in the HTTP request (1 unless batched), for traces. */
  batchSize?: number;
}

export function createContextInner(opts: ContextInnerOptions) {
  return {
    db: opts.db,
    session: opts.session,
    appRole: opts.appRole ?? DEFAULT_APP_ROLE,
    exposeErrors: opts.exposeErrors ?? false,
    revokeSession: opts.revokeSession,
    deadline: opts.deadline,
    ops: opts.ops,
    batchSize: opts.batchSize,
  };
}

export type Context = ReturnType<typeof createContextInner>;

export interface HttpContextDeps {
  db: Database;
  authenticate: Authenticator;
  appRole: string;
  exposeErrors: boolean;
  metrics?: Metrics | null;
  limits?: RateLimits | null;
  /** Default true. */
  tracing?: boolean;
}

export interface HttpContextRequest {
  req: { headers: IncomingHttpHeaders; ip?: string };
  /** Where headers of an answer given before any procedure runs go (a per-IP refusal's Retry-After). */
  res?: { header: (name: string, value: string) => unknown };
  /** tRPC's request info: how many calls the request carries. */
  info?: { calls: readonly unknown[] };
}

/**
 * The HTTP context factory: turns the request's credentials into a session. Requests the authenticator does not
 * vouch for (no token, a bad signature, expired) are refused with TOO_MANY_REQUESTS once their IP has failed
 * authentication RATE_LIMIT_PER_IP_PER_MINUTE times in the window, before the database is asked; a failed
 * authentication counts against it. A validly signed token is never refused for its address.
 */
export function createContextFactory(deps: HttpContextDeps) {
  const limits = deps.limits ?? null;
  return async function createContext({ req, res, info }: HttpContextRequest): Promise<Context> {
    // One time limit for the whole request: authentication's database check and the request transaction.
    const limit = requestTimeoutOf(deps.db);
    const deadline = Date.now() + limit;
    const ip = req.ip ?? 'unknown';
    if (limits && !(await deps.authenticate.vouches?.(req.headers))) {
      const refusal = await limits.ipRefusal(ip);
      if (refusal) {
        for (const [name, value] of Object.entries(rateLimitHeaders(refusal))) res?.header(name, value);
        throw new TRPCError({
          code: 'TOO_MANY_REQUESTS',
          message: `Too many unauthenticated requests from this address: retry in ${refusal.resetSeconds} s`,
        });
      }
    }
    let session: Session | null;
    try {
      session = await deps.authenticate({ headers: req.headers }, { timeoutMs: limit });
    } catch (err) {
      // The authenticator asks the database too: a timeout or lost connection there is a 503, not a 500.
      throw toClientError(err);
    }
    if (!session && limits) await limits.authenticationFailed(ip);
    return createContextInner({
      db: deps.db,
      session,
      appRole: deps.appRole,
      exposeErrors: deps.exposeErrors,
      revokeSession: deps.authenticate.revoke,
      deadline,
      ops: { metrics: deps.metrics ?? null, limits, tracing: deps.tracing ?? true, rateLimit: null },
      batchSize: info?.calls.length,
    });
  };
}
