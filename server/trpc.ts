// All tRPC set-up: one initTRPC, the error formatter, and the only procedure builders routers may use.
import { initTRPC, TRPCError } from '@trpc/server';
import { transformer } from '../client/transformer.ts';
import { DatabaseUnavailableError, requestTimeoutOf } from '../db/client.ts';
import { withTenantTransaction as inTenantTransaction } from '../db/queries/tenant-transaction.ts';
import type { Context } from './context.ts';
import { formatError, isMissingUser, toClientError } from './errors.ts';
import { isValidSession } from './session.ts';

/**
 * 1. Initialisation. The error formatter (server/errors.ts) adds zod issues to BAD_REQUEST input errors and,
 * unless the context allows it (EXPOSE_ERRORS=true), hides internal messages and stacks: database errors carry SQL.
 */
const t = initTRPC.context<Context>().create({
  transformer,
  errorFormatter: ({ shape, error, ctx }) => formatError({ shape, error, expose: ctx?.exposeErrors ?? false }),
});

/** 2. Middleware. */

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
    return await inTenantTransaction(
      ctx.db,
      { role: ctx.appRole, tenantId, userId },
      async (tx) => {
        const result = await next({ ctx: { session, db: tx, viewer: { tenantId, userId } } });
        if (!result.ok) throw result.error;
        return result;
      },
      { timeoutMs: remaining }, // undefined: the database's full limit
    );
  } catch (err) {
    if (isMissingUser(err)) ctx.revokeSession?.(session);
    throw toClientError(err);
  }
});

/** 3. The building blocks routers may use; nothing else is exported, so nothing bypasses the middleware. */
export const router = t.router;
export const publicProcedure = t.procedure;
export const createCallerFactory = t.createCallerFactory;

const authenticated = t.procedure.use(requireSession);
const inTransaction = authenticated.use(withTenantTransaction);

/**
 * The builder for every procedure that reads or writes the caller's data: `tenantProcedure.input(schema)`
 * then `.query()` / `.mutation()`. The session is checked first, then the input is validated, and only then
 * is a connection taken and the request transaction opened, so a bad input never reaches the database.
 */
export const tenantProcedure = {
  input: <TSchema extends Parameters<typeof authenticated.input>[0]>(schema: TSchema) =>
    authenticated.input(schema).use(withTenantTransaction),
  query: inTransaction.query.bind(inTransaction) as typeof inTransaction.query,
  mutation: inTransaction.mutation.bind(inTransaction) as typeof inTransaction.mutation,
};
