// Request context in two layers: createContextInner is pure (tests, server-side callers); createContext reads HTTP.
import type { IncomingHttpHeaders } from 'node:http';
import { TRPCError } from '@trpc/server';
import { requestTimeoutOf, type Database } from '../db/client.ts';
import { DEFAULT_APP_ROLE } from '../db/migrate.ts';
import type { Authenticator } from './auth.ts';
import { toClientError } from './errors.ts';
import type { LiveHub, StreamTransport } from './live.ts';
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
  /** The server's live-update hub (onChange); unset: onChange answers NOT_IMPLEMENTED. */
  live?: LiveHub | null;
  /** For a live stream over HTTP: cuts the connection of a client that stopped reading. */
  liveTransport?: StreamTransport;
}

/** tRPC `responseMeta` for every HTTP entry point: the `RateLimit-*` headers of the request's calls, if limited. */
export function rateLimitResponseMeta({ ctx }: { ctx?: Context }): { headers?: Record<string, string> } {
  return ctx?.ops?.rateLimit ? { headers: rateLimitHeaders(ctx.ops.rateLimit) } : {};
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
    live: opts.live ?? null,
    liveTransport: opts.liveTransport,
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
  /** The live-update hub onChange streams come from (unset: none). */
  live?: LiveHub | null;
  /**
   * Input schemas of subscriptions by path: checked before a stream opens, so a bad input is refused with 400
   * BAD_REQUEST and its zod issues instead of an error event inside a 200 stream.
   */
  subscriptionInputs?: Record<string, { safeParse: (value: unknown) => { success: boolean; error?: unknown } }>;
}

export interface HttpContextRequest {
  req: { headers: IncomingHttpHeaders; ip?: string };
  /**
   * Where headers of an answer given before any procedure runs go (a per-IP refusal's Retry-After); `raw`, the
   * Node response, lets a live stream cut the connection of a client that stopped reading.
   */
  res?: { header: (name: string, value: string) => unknown; raw?: { destroy: () => unknown } };
  /** tRPC's request info: how many calls the request carries, their type, and a subscription's connectionParams. */
  info?: { calls: readonly unknown[]; type?: string; connectionParams?: Record<string, unknown> | null };
}

/**
 * The request's headers, with the token of a subscription's tRPC `connectionParams` (`{ token }`) as its
 * Authorization header when it has none: browsers' EventSource cannot send headers. The token travels in the URL
 * then, which is never logged (the request log line drops the query string).
 */
function credentialHeaders(headers: IncomingHttpHeaders, connectionParams: Record<string, unknown> | null | undefined): IncomingHttpHeaders {
  const token = connectionParams?.token;
  if (headers.authorization || typeof token !== 'string' || token.length === 0 || token.length > 4096) return headers;
  return { ...headers, authorization: `Bearer ${token}` };
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
    const headers = credentialHeaders(req.headers, info?.connectionParams);
    if (limits && !(await deps.authenticate.vouches?.(headers))) {
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
      session = await deps.authenticate({ headers }, { timeoutMs: limit });
    } catch (err) {
      // The authenticator asks the database too: a timeout or lost connection there is a 503, not a 500.
      throw toClientError(err);
    }
    if (!session && limits) await limits.authenticationFailed(ip);
    // A live stream is refused with its HTTP status before it opens (401, 429, 503): once tRPC has answered 200
    // with an event stream, a refusal could only be an event inside it.
    if (info?.type === 'subscription') {
      if (!deps.live) throw new TRPCError({ code: 'NOT_IMPLEMENTED', message: 'Live updates are not enabled on this server' });
      if (!session) throw new TRPCError({ code: 'UNAUTHORIZED', message: 'Sign in to continue' });
      const call = info.calls[0] as { path?: string; getRawInput?: () => Promise<unknown> } | undefined;
      const schema = call?.path ? deps.subscriptionInputs?.[call.path] : undefined;
      if (schema && call?.getRawInput) {
        let raw: unknown;
        try {
          raw = await call.getRawInput();
        } catch (cause) {
          throw new TRPCError({ code: 'BAD_REQUEST', message: 'The input is not valid JSON', cause });
        }
        const parsed = schema.safeParse(raw);
        if (!parsed.success) throw new TRPCError({ code: 'BAD_REQUEST', message: 'Invalid input', cause: parsed.error });
      }
      const refusal = deps.live.refusal(session);
      if (refusal) throw refusal;
    }
    return createContextInner({
      db: deps.db,
      session,
      appRole: deps.appRole,
      exposeErrors: deps.exposeErrors,
      revokeSession: deps.authenticate.revoke,
      deadline,
      ops: { metrics: deps.metrics ?? null, limits, tracing: deps.tracing ?? true, rateLimit: null },
      batchSize: info?.calls.length,
      live: deps.live ?? null,
      liveTransport: res?.raw ? { drop: () => res.raw!.destroy() } : undefined,
    });
  };
}
