// The driver's error behind the wrappers: drizzle (DrizzleQueryError) and tRPC (TRPCError) keep it in `cause`.

/** `err` and the errors it wraps through `cause`, outermost first, at most `depth` of them. */
export function* causeChain(err: unknown, depth = 5): Generator<unknown> {
  let current: unknown = err;
  for (let i = 0; i < depth && current !== null && current !== undefined; i++) {
    yield current;
    current = typeof current === 'object' ? (current as { cause?: unknown }).cause : undefined;
  }
}

/** What Postgres reports with an error (postgres.js's PostgresError and PGlite's DatabaseError alike). */
export interface PostgresErrorLike {
  /** SQLSTATE, e.g. 23503 (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
  code: string;
  message?: unknown;
  hint?: unknown;
  detail?: unknown;
  constraint_name?: unknown;
  constraint?: unknown;
}

/** True when `code` has the shape of a SQLSTATE (five digits or upper-case letters). */
export function isSqlState(code: unknown): code is string {
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

/** The first error in `err`'s cause chain whose `code` has the shape of a SQLSTATE, or null. */
export function postgresErrorOf(err: unknown): PostgresErrorLike | null {
  for (const e of causeChain(err)) {
    const code = typeof e === 'object' ? (e as { code?: unknown }).code : undefined;
    if (isSqlState(code)) return e as PostgresErrorLike;
  }
  return null;
}
