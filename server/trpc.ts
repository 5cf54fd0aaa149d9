// All tRPC set-up: one initTRPC, the error formatter, and the only procedure builders routers may use.
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { initTRPC, TRPCError } from '@trpc/server';
import { transformer } from '../client/transformer.ts';
import { DatabaseUnavailableError, requestTimeoutOf } from '../db/client.ts';
import { withTenantTransaction as inTenantTransaction } from '../db/queries/tenant-transaction.ts';
import type { Context, RequestOps } from './context.ts';
import { formatError, isMissingUser, toClientError } from './errors.ts';
import { liveHeartbeatMs } from './config.ts';
import { countedErrors, OK_CODE } from './metrics.ts';
import type { RateLimitDecision } from './rate-limit.ts';
import { isValidSession } from './session.ts';

/**
 * 1. Initialisation. The error formatter (server/errors.ts) adds zod issues to BAD_REQUEST input errors and,
 * unless the context allows it (EXPOSE_ERRORS=true), hides internal messages and stacks: database errors carry SQL.
 */
/**
 * SSE heartbeat of live streams (LIVE_HEARTBEAT_MS), in ms: tRPC takes it at initialisation, so it is read from the
 * environment once, when this module loads. An invalid value falls back to the default here; loadConfig reports it
 * (naming the variable) before a server starts.
 */
export const heartbeatMs: number = liveHeartbeatMs.safeParse(process.env.LIVE_HEARTBEAT_MS).data ?? liveHeartbeatMs.parse(undefined);

const t = initTRPC.context<Context>().create({
  transformer,
  errorFormatter: ({ shape, error, ctx }) => formatError({ shape, error, expose: ctx?.exposeErrors ?? false }),
  // Subscriptions over server-sent events: a `ping` event every heartbeatMs keeps proxies from closing an idle
  // stream, and the client reconnects (with Last-Event-ID) when it hears nothing for three of them.
  sse: {
    ping: { enabled: true, intervalMs: heartbeatMs },
    client: { reconnectAfterInactivityMs: heartbeatMs * 3 },
  },
});

/** 2. Middleware. */

/** Spans go to whatever tracer provider the host registered with @opentelemetry/api (none: a no-op). */
const tracer = trace.getTracer('skill-views');

/** tRPC error codes that are the server's fault (JSON-RPC -32603 and the 5xx family): the span's status is ERROR. */
const serverFaults = new Set<string>(['INTERNAL_SERVER_ERROR', 'NOT_IMPLEMENTED', 'BAD_GATEWAY', 'SERVICE_UNAVAILABLE', 'GATEWAY_TIMEOUT']);

/**
 * Outermost on every procedure: one span `trpc.<path>` (attributes: procedure, type, outcome code, batch size),
 * active while the call runs so the request transaction's span is its child, and the call's count and duration
 * in the server's metrics. Errors raised before any procedure runs (unknown path, refused method) are counted by
 * the HTTP route's onError instead.
 */
const observe = t.middleware(async ({ ctx, path, type, next }) => {
  const metrics = ctx.ops?.metrics;
  const started = metrics ? performance.now() : 0;
  const settle = (result: Awaited<ReturnType<typeof next>>) => {
    const code = result.ok ? OK_CODE : result.error.code;
    if (metrics) {
      metrics.recordCall(path, code, (performance.now() - started) / 1000);
      if (!result.ok) countedErrors.add(result.error);
    }
    return code;
  };
  if (ctx.ops?.tracing === false) {
    const result = await next();
    settle(result);
    return result;
  }
  const attributes = { 'rpc.system': 'trpc', 'rpc.method': path, 'trpc.procedure': path, 'trpc.type': type, ...(ctx.batchSize === undefined ? {} : { 'trpc.batch_size': ctx.batchSize }) };
  return tracer.startActiveSpan(`trpc.${path}`, { kind: SpanKind.INTERNAL, attributes }, async (span) => {
    try {
      const result = await next();
      const code = settle(result);
      span.setAttribute('trpc.code', code);
      if (serverFaults.has(code)) span.setStatus({ code: SpanStatusCode.ERROR });
      return result;
    } finally {
      span.end();
    }
  });
});

/** Keeps the most restrictive decision of a request's calls for its `RateLimit-*` headers (a refusal wins). */
function noteDecision(ops: RequestOps, d: RateLimitDecision) {
  const current = ops.rateLimit;
  if (!current || (!d.allowed && current.allowed) || (d.allowed === current.allowed && d.remaining < current.remaining)) ops.rateLimit = d;
}

/**
 * RATE_LIMIT_PER_MINUTE: takes one call from the caller's allowance (each call of a batch counts), after the
 * session is known and before the input is parsed or a connection taken, so a refused call writes nothing.
 * Only HTTP requests carry a limiter; server-side callers are not limited.
 */
const limitCalls = t.middleware(async ({ ctx, next }) => {
  const ops = ctx.ops;
  if (ops?.limits && ctx.session) {
    const decision = await ops.limits.takeCall(ctx.session);
    if (decision) {
      noteDecision(ops, decision);
      if (!decision.allowed) {
        throw new TRPCError({
          code: 'TOO_MANY_REQUESTS',
          message: `Rate limit exceeded (${decision.limit} calls per minute): retry in ${decision.resetSeconds} s`,
        });
      }
    }
  }
  return next();
});

/** The caller's session, or UNAUTHORIZED (a missing session or one whose ids are not uuids). */
function sessionOf(ctx: Context) {
  if (!ctx.session || !isValidSession(ctx.session)) {
    throw new TRPCError({ code: 'UNAUTHORIZED', message: 'Sign in to continue' });
  }
  return ctx.session;
}

/** Rejects callers without a valid session before anything touches the database. */
const requireSession = t.middleware(({ ctx, next }) => next({ ctx: { session: sessionOf(ctx) } }));

/**
 * Runs the rest of the request in one transaction scoped to the caller: one parameterised set_config
 * statement (role, tenant, user, time limits, pinned settings; all transaction-local; on Postgres pipelined
 * with the procedure's first query), then the procedure with the transaction as ctx.db. tRPC's next() reports
 * failure as a value, so a failed result is thrown to roll back. Failures are mapped to what the caller can
 * act on (server/errors.ts): a deleted user is UNAUTHORIZED (and their cached token is dropped), timeouts and
 * lost connections are SERVICE_UNAVAILABLE.
 */
const withTenantTransaction = t.middleware(async ({ ctx, next }) => {
  // Checked again here (cheap): the input parser sits between the two middlewares, and tRPC types this one's
  // context from the base context.
  const session = sessionOf(ctx);
  const { tenantId, userId } = session;
  // What authentication left of the request's time limit (HTTP); server-side callers get the database's full limit.
  const remaining = ctx.deadline === undefined ? undefined : ctx.deadline - Date.now();
  try {
    if (remaining !== undefined && remaining <= 0) throw new DatabaseUnavailableError('REQUEST_TIMEOUT', requestTimeoutOf(ctx.db));
    const run = () =>
      inTenantTransaction(
        ctx.db,
        { role: ctx.appRole, tenantId, userId },
        async (tx) => {
          const result = await next({ ctx: { session, db: tx, viewer: { tenantId, userId } } });
          if (!result.ok) throw result.error;
          return result;
        },
        { timeoutMs: remaining }, // undefined: the database's full limit
      );
    if (ctx.ops?.tracing === false) return await run();
    // No instrumentation of postgres.js's own is used (README, Operations): one span around the whole transaction.
    return await tracer.startActiveSpan('db.transaction', { kind: SpanKind.CLIENT, attributes: { 'db.system': 'postgresql' } }, async (span) => {
      try {
        const result = await run();
        span.setAttribute('db.transaction.outcome', 'commit');
        return result;
      } catch (err) {
        span.setAttribute('db.transaction.outcome', 'rollback');
        // A procedure's own client error (NOT_FOUND, BAD_REQUEST…) is a normal rollback; anything else is the
        // database's failure (time limit, lost connection) and marks the span.
        if (!(err instanceof TRPCError)) {
          span.recordException(err as Error);
          span.setStatus({ code: SpanStatusCode.ERROR });
          if (err instanceof DatabaseUnavailableError) span.setAttribute('db.unavailable.reason', err.code);
        }
        throw err;
      } finally {
        span.end();
      }
    });
  } catch (err) {
    if (isMissingUser(err)) ctx.revokeSession?.(session);
    throw toClientError(err);
  }
});

/** 3. The building blocks routers may use; nothing else is exported, so nothing bypasses the middleware. */
export const router = t.router;
export const publicProcedure = t.procedure.use(observe);
export const createCallerFactory = t.createCallerFactory;

const authenticated = publicProcedure.use(requireSession).use(limitCalls);
const inTransaction = authenticated.use(withTenantTransaction);

/**
 * The builder for every procedure that reads or writes the caller's data: `tenantProcedure.input(schema)`
 * then `.query()` / `.mutation()`. The session is checked first, then the call is counted against the
 * caller's rate limit, then the input is validated, and only then is a connection taken and the request
 * transaction opened, so neither a refused call nor a bad input reaches the database.
 */
/**
 * The builder for live subscriptions (`liveProcedure.input(schema).subscription(async function* …)`): the session
 * and the rate limit as for every call, but no request transaction, since a stream stays open for as long as the
 * client listens; whatever it reads runs in request transactions of its own (server/live.ts).
 */
export const liveProcedure = authenticated;

export const tenantProcedure = {
  input: <TSchema extends Parameters<typeof authenticated.input>[0]>(schema: TSchema) =>
    authenticated.input(schema).use(withTenantTransaction),
  query: inTransaction.query.bind(inTransaction) as typeof inTransaction.query,
  mutation: inTransaction.mutation.bind(inTransaction) as typeof inTransaction.mutation,
};
