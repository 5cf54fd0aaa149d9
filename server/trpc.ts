// All tRPC set-up: one initTRPC, the error formatter, and the only procedure builders routers may use.
import { initTRPC, TRPCError } from '@trpc/server';
import { ZodError } from 'zod';
import { transformer } from '../client/transformer.ts';
import { withTenantTransaction as inTenantTransaction } from '../db/queries/tenant-transaction.ts';
import type { Context } from './context.ts';
import { isValidSession } from './session.ts';

/**
 * 1. Initialisation. The error formatter adds zod issues to BAD_REQUEST input errors and, unless the
 * context allows it (development), hides internal messages and stacks: database errors carry SQL.
 */
const t = initTRPC.context<Context>().create({
  transformer,
  errorFormatter({ shape, error, ctx }) {
    const expose = ctx?.exposeErrors ?? false;
    const zodIssues = error.code === 'BAD_REQUEST' && error.cause instanceof ZodError ? error.cause.issues : null;
    const internal = error.code === 'INTERNAL_SERVER_ERROR';
    const { stack: _stack, ...data } = shape.data;
    return {
      ...shape,
      message: internal && !expose ? 'Internal server error' : shape.message,
      data: { ...data, ...(expose ? { stack: _stack } : {}), zodIssues },
    };
  },
});

/** 2. Middleware. */

/** Rejects callers without a valid session before anything touches the database. */
const requireSession = t.middleware(({ ctx, next }) => {
  if (!ctx.session || !isValidSession(ctx.session)) {
    throw new TRPCError({ code: 'UNAUTHORIZED', message: 'Sign in to continue' });
  }
  return next({ ctx: { session: ctx.session } });
});

/**
 * Runs the rest of the request in one transaction scoped to the caller: one parameterised set_config
 * statement (role, tenant, user; all transaction-local; on Postgres pipelined with the procedure's first
 * query), then the procedure with the transaction as ctx.db. tRPC's next() reports failure as a value,
 * so a failed result is thrown to roll back.
 */
const withTenantTransaction = requireSession.unstable_pipe(async ({ ctx, next }) => {
  const { tenantId, userId } = ctx.session;
  return inTenantTransaction(ctx.db, { role: ctx.appRole, tenantId, userId }, async (tx) => {
    const result = await next({ ctx: { db: tx, viewer: { tenantId, userId } } });
    if (!result.ok) throw result.error;
    return result;
  });
});

/** 3. The building blocks routers may use; nothing else is exported, so nothing bypasses the middleware. */
export const router = t.router;
export const publicProcedure = t.procedure;
export const tenantProcedure = t.procedure.use(withTenantTransaction);
export const createCallerFactory = t.createCallerFactory;
