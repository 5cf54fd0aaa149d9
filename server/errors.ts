// Errors: which database failures a caller caused or may retry, and what of an error a client is shown.
import { getTRPCErrorFromUnknown, TRPCError } from '@trpc/server';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import { TRPC_ERROR_CODES_BY_KEY, type TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';
import { ZodError } from 'zod';
import { transformer } from '../client/transformer.ts';
import { CommitOutcomeUnknownError, DatabaseUnavailableError } from '../db/client.ts';
import { causeChain, isSqlState, postgresErrorOf, type PostgresErrorLike } from '../db/errors.ts';

/** Seconds a client is asked to wait (`Retry-After`) after a SERVICE_UNAVAILABLE answer. */
export const RETRY_AFTER_SECONDS = 1;

/** The message a client sees for an error whose own message is internal (SQL, JS error text). */
const genericMessages: Partial<Record<TRPC_ERROR_CODE_KEY, string>> = {
  PARSE_ERROR: 'The request body or input could not be parsed',
  BAD_REQUEST: 'Invalid request',
  INTERNAL_SERVER_ERROR: 'Internal server error',
  SERVICE_UNAVAILABLE: 'The service is temporarily unavailable; retry shortly',
  GATEWAY_TIMEOUT: 'The database did not confirm the write in time: it may or may not have been applied',
  METHOD_NOT_SUPPORTED: 'Method not supported',
  NOT_FOUND: 'Not found',
  PAYLOAD_TOO_LARGE: 'Request body too large',
  UNSUPPORTED_MEDIA_TYPE: 'Unsupported content type',
};

/**
 * True when the message a client would see was written for clients. It is not when the error is internal,
 * or when its message was taken from the JavaScript or database error it wraps (tRPC copies `cause.message`
 * when a TRPCError is made without one: superjson's "Cannot destructure…", a stack overflow, SQL text).
 * Zod's messages are the exception: they describe the caller's input.
 */
function isPublicMessage(error: TRPCError): boolean {
  if (error.code === 'INTERNAL_SERVER_ERROR') return false;
  const cause = error.cause;
  if (!cause || cause instanceof ZodError) return true;
  return error.message !== cause.message;
}

interface ShapeLike {
  message: string;
  code: number;
  data: { code: TRPC_ERROR_CODE_KEY; httpStatus: number; path?: string; stack?: string; [key: string]: unknown };
}

/**
 * tRPC `errorFormatter`: adds `data.zodIssues` (the zod issues of a BAD_REQUEST input error, else null) and,
 * unless `expose` (EXPOSE_ERRORS=true), replaces internal messages with a generic one per code and drops stacks.
 * Composable: a host app can call it from its own formatter.
 */
export function formatError<TShape extends ShapeLike>({ shape, error, expose }: { shape: TShape; error: TRPCError; expose: boolean }) {
  const zodIssues = error.code === 'BAD_REQUEST' && error.cause instanceof ZodError ? error.cause.issues : null;
  const { stack, ...data } = shape.data;
  const message = expose || isPublicMessage(error) ? shape.message : (genericMessages[error.code] ?? 'Request failed');
  return { ...shape, message, data: { ...data, ...(expose && stack ? { stack } : {}), zodIssues } };
}

/**
 * The body tRPC would send for an error raised outside a procedure (HTTP transport: body too large, bad
 * content type, header too large, unknown route), so every error response has the one shape clients parse:
 * `{ error: { json: { message, code, data: { code, httpStatus, path, zodIssues } } } }` (superjson envelope).
 */
export function transportErrorBody(code: TRPC_ERROR_CODE_KEY, message: string, httpStatus?: number): string {
  const status = httpStatus ?? getHTTPStatusCodeFromError(new TRPCError({ code }));
  const shape = { message, code: TRPC_ERROR_CODES_BY_KEY[code], data: { code, httpStatus: status, zodIssues: null } };
  return JSON.stringify({ error: transformer.serialize(shape) });
}

/**
 * The status and body of an error raised before a procedure's response began (a live stream refused before it
 * opens): the same shape and rules as formatError (zod issues for BAD_REQUEST, internal messages hidden unless
 * `expose`).
 */
export function errorResponse(error: TRPCError, path: string | undefined, expose: boolean): { status: number; body: string } {
  const status = getHTTPStatusCodeFromError(error);
  const shape = { message: error.message, code: TRPC_ERROR_CODES_BY_KEY[error.code], data: { code: error.code, httpStatus: status, path } };
  return { status, body: JSON.stringify({ error: transformer.serialize(formatError({ shape, error, expose })) }) };
}

/**
 * tRPC answers a subscription whose context could not be made (no session, a stream limit, a bad input) with 200 and
 * an event stream carrying the error. Wraps a createContext to remember its failure; `refused(response)` then cancels
 * such a stream unread (ending its generator) and returns the error, to answer with its own status instead; else null.
 * One per request.
 */
export function subscriptionRefusals<TArgs extends unknown[], TContext>(createContext: (...args: TArgs) => Promise<TContext>) {
  let failure: unknown = null;
  return {
    createContext: async (...args: TArgs): Promise<TContext> => {
      try {
        return await createContext(...args);
      } catch (err) {
        failure = err;
        throw err;
      }
    },
    refused: async (response: Response): Promise<TRPCError | null> => {
      if (failure === null || !response.headers.get('content-type')?.startsWith('text/event-stream')) return null;
      await response.body?.cancel().catch(() => {});
      return getTRPCErrorFromUnknown(failure);
    },
  };
}

// Postgres SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) a retry may cure:
// connection failures (08…), operator intervention such as a terminated backend or a restart (57P01–57P05),
// a statement or lock timeout (57014, 55P03), the idle-in-transaction timeout (25P03), too many connections
// (53300), serialization failures and deadlocks (40001, 40P01), and a pooler's "server closed" (08P01).
const transientSqlStates = new Set(['57014', '55P03', '25P03', '53300', '53400', '40001', '40P01', '57P01', '57P02', '57P03', '57P04', '57P05']);
// postgres.js's own codes for a lost or unreachable connection, and Node's socket errors.
const transientDriverCodes = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** The database or driver error behind `err` (a SQLSTATE, or one of the driver's connection codes), or null. */
export function databaseErrorOf(err: unknown): PostgresErrorLike | null {
  for (const e of causeChain(err)) {
    const code = typeof e === 'object' ? (e as { code?: unknown }).code : undefined;
    if (typeof code === 'string' && (transientDriverCodes.has(code) || isSqlState(code))) return e as PostgresErrorLike;
  }
  return null;
}

/** A failure a retry may cure (timeouts, lost connections, a pool exhausted for too long). */
export function isTransientDatabaseError(err: unknown): boolean {
  for (const e of causeChain(err)) if (e instanceof DatabaseUnavailableError) return true;
  const code = databaseErrorOf(err)?.code;
  if (!code) return false;
  return transientSqlStates.has(code) || transientDriverCodes.has(code) || code.startsWith('08');
}

/** A named prepared statement the server connection does not have: a transaction pooler with DB_PREPARE on. */
export function isMissingPreparedStatement(err: unknown): boolean {
  return postgresErrorOf(err)?.code === '26000';
}

/**
 * The table a failed foreign key points at ('users', 'skills', …), or null when `err` is not a foreign-key
 * violation. From the constraint's name first: this module's foreign keys are named `<table>_<target>_fk`
 * (`user_skill_views_user_fk`, `user_skill_views_skill_fk`) or, as drizzle names them,
 * `<table>_<column>_<target table>_<column>_fk`; a name is matched by its end, never by a substring, since the
 * table `user_skill_views` names both users and skills. Else from the error's detail
 * (`… is not present in table "users".`, English servers only).
 */
export function missingReferenceOf(err: unknown): string | null {
  const db = postgresErrorOf(err);
  if (db?.code !== '23503') return null;
  const constraint = String(db.constraint_name ?? db.constraint ?? '');
  const named = /_(user|skill|tenant)_fk$/.exec(constraint) ?? /_(users|skills|tenants)_id_fk$/.exec(constraint);
  if (named?.[1]) return named[1].endsWith('s') ? named[1] : `${named[1]}s`;
  const detail = /is not present in table "([^"]+)"/.exec(String(db.detail ?? ''));
  return detail?.[1] ?? null;
}

/** A foreign key to the caller's user failed: the user was deleted while their token was still trusted. */
export function isMissingUser(err: unknown): boolean {
  return missingReferenceOf(err) === 'users';
}

/** A foreign key to a skill failed: the skill was deleted while the request ran. */
export function isMissingSkill(err: unknown): boolean {
  return missingReferenceOf(err) === 'skills';
}

/**
 * Maps a failure of the request transaction to the TRPCError a client should get: the caller's own error
 * (a TRPCError of another code) unchanged; a deleted user → UNAUTHORIZED; a deleted skill → NOT_FOUND;
 * timeouts and lost connections → SERVICE_UNAVAILABLE (503 with Retry-After); anything else stays internal.
 */
export function toClientError(err: unknown): TRPCError {
  if (err instanceof TRPCError && err.code !== 'INTERNAL_SERVER_ERROR') return err;
  if (isMissingUser(err)) return new TRPCError({ code: 'UNAUTHORIZED', message: 'Sign in to continue', cause: asError(err) });
  if (isMissingSkill(err)) return new TRPCError({ code: 'NOT_FOUND', message: 'Skill not found', cause: asError(err) });
  for (const e of causeChain(err)) {
    if (e instanceof CommitOutcomeUnknownError) {
      return new TRPCError({ code: 'GATEWAY_TIMEOUT', message: genericMessages.GATEWAY_TIMEOUT!, cause: asError(err) });
    }
  }
  if (isTransientDatabaseError(err)) {
    return new TRPCError({ code: 'SERVICE_UNAVAILABLE', message: genericMessages.SERVICE_UNAVAILABLE!, cause: asError(err) });
  }
  if (err instanceof TRPCError) return err;
  return new TRPCError({ code: 'INTERNAL_SERVER_ERROR', cause: asError(err) });
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
