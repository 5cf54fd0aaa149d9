// Request context in two layers: createContextInner is pure (tests, server-side callers); createContext reads HTTP.
import type { IncomingHttpHeaders } from 'node:http';
import { requestTimeoutOf, type Database } from '../db/client.ts';
import { DEFAULT_APP_ROLE } from '../db/migrate.ts';
import type { Authenticator } from './auth.ts';
import { toClientError } from './errors.ts';
import type { Session } from './session.ts';

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
}

export function createContextInner(opts: ContextInnerOptions) {
  return {
    db: opts.db,
    session: opts.session,
    appRole: opts.appRole ?? DEFAULT_APP_ROLE,
    exposeErrors: opts.exposeErrors ?? false,
    revokeSession: opts.revokeSession,
    deadline: opts.deadline,
  };
}

export type Context = ReturnType<typeof createContextInner>;

export interface HttpContextDeps {
  db: Database;
  authenticate: Authenticator;
  appRole: string;
  exposeErrors: boolean;
}

/** The HTTP context factory: turns the request's credentials into a session. */
export function createContextFactory(deps: HttpContextDeps) {
  return async function createContext({ req }: { req: { headers: IncomingHttpHeaders } }): Promise<Context> {
    // One time limit for the whole request: authentication's database check and the request transaction.
    const limit = requestTimeoutOf(deps.db);
    const deadline = Date.now() + limit;
    let session: Session | null;
    try {
      session = await deps.authenticate({ headers: req.headers }, { timeoutMs: limit });
    } catch (err) {
      // The authenticator asks the database too: a timeout or lost connection there is a 503, not a 500.
      throw toClientError(err);
    }
    return createContextInner({
      db: deps.db,
      session,
      appRole: deps.appRole,
      exposeErrors: deps.exposeErrors,
      revokeSession: deps.authenticate.revoke,
      deadline,
    });
  };
}
