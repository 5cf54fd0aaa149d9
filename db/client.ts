// Database clients: one drizzle database over postgres.js (a connection URL) or PGlite (embedded), and one close().
import { createRequire } from 'node:module';
import type { PGlite } from '@electric-sql/pglite';
import { PgDialect, type PgDatabase, type PgQueryResultHKT, type PgTransaction } from 'drizzle-orm/pg-core';
import { createTableRelationsHelpers, extractTablesRelationalConfig, sql, type ExtractTablesWithRelations, type SQL } from 'drizzle-orm';
import { drizzle as drizzlePostgres, PostgresJsSession, PostgresJsTransaction } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { lockDataDir } from './pglite-lock.ts';
import * as schema from './schema/index.ts';

export type Schema = typeof schema;
/** A drizzle database on either engine; query functions accept this or a transaction of it. */
export type Database = PgDatabase<PgQueryResultHKT, Schema>;
export type Transaction = PgTransaction<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
/** Anything that can run a statement: the database or a transaction on it. */
export type Executor = Database | Transaction;

export type Engine = 'postgres' | 'pglite';

export type CreateDbOptions =
  | {
      /** postgres:// connection URL. */
      url: string;
      /** Pool size (postgres.js `max`). */
      poolSize?: number;
      /**
       * Run statements as named prepared statements, parsed and planned once per connection (default true).
       * `false` makes every statement unnamed, the driver's own BEGIN, COMMIT and ROLLBACK included: required
       * behind a transaction-mode pooler (PgBouncer), where each transaction may run on another server connection.
       */
      prepare?: boolean;
      /** Extra postgres.js options, merged over the defaults (instrumentation such as `debug`, tuning). */
      driverOptions?: postgres.Options<Record<string, postgres.PostgresType>>;
    }
  | {
      /**
       * PGlite data directory; omit or use 'memory://' for an in-memory database. A directory has one writer:
       * opening one that another live process holds throws DataDirLockedError naming that process.
       */
      pgliteDir?: string;
      /** An already open PGlite instance to wrap (tests share one). */
      pglite?: PGlite;
    };

/** Options every engine takes. */
export interface CommonDbOptions {
  /**
   * Longest time, in milliseconds, a request transaction may wait for a pooled connection and then run
   * (default 10000). Enforced in JavaScript and, on Postgres, by the transaction-local `statement_timeout`
   * and `idle_in_transaction_session_timeout` the scope statement sets. Past it: DatabaseUnavailableError.
   */
  requestTimeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * A request transaction could not get a connection, or did not finish, within its time limit. Nothing it did
 * is committed. `code`: 'POOL_TIMEOUT' (no pooled connection became free in time) or 'REQUEST_TIMEOUT'.
 */
export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
  constructor(
    readonly code: 'POOL_TIMEOUT' | 'REQUEST_TIMEOUT',
    readonly timeoutMs: number,
  ) {
    super(code === 'POOL_TIMEOUT' ? `no database connection became free within ${timeoutMs} ms` : `the database did not answer within ${timeoutMs} ms`);
  }
}

/**
 * COMMIT was sent but not confirmed within a second time limit (the database or the path to it stalled): the
 * transaction may or may not have been committed. Unlike DatabaseUnavailableError, a blind retry may apply
 * the write twice.
 */
export class CommitOutcomeUnknownError extends Error {
  override name = 'CommitOutcomeUnknownError';
  constructor(readonly timeoutMs: number) {
    super(`COMMIT was not confirmed within ${timeoutMs} ms more; the write may or may not have been applied`);
  }
}

export interface DbHandle {
  db: Database;
  engine: Engine;
  /** The connection URL, for postgres handles (migrations open their own single connection). */
  url?: string;
  /** The embedded database, for pglite handles (its LISTEN/NOTIFY: live updates). */
  pglite?: PGlite;
  /** Closes the pool or the embedded database. Idempotent. */
  close: () => Promise<void>;
}

export function createDb(options: CreateDbOptions & CommonDbOptions): DbHandle {
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if ('url' in options) {
    const prepare = options.prepare ?? true;
    const client = postgres(options.url, {
      max: options.poolSize ?? 10,
      // The driver's own statements (BEGIN, COMMIT, ROLLBACK, savepoints) follow this, not only ours.
      prepare,
      onnotice: () => {},
      connection: { application_name: 'skill-views' },
      ...options.driverOptions,
    });
    const db = drizzlePostgres({ client: prepare ? preparing(client) : client, schema, casing: 'snake_case' }) as unknown as Database;
    setupPipelines.set(db, pipelinedTransaction(client, prepare));
    timeouts.set(db, timeoutMs);
    poolActivity.set(db, { size: options.poolSize ?? 10, inUse: 0, waiting: 0 });
    let closed = false;
    return {
      db,
      engine: 'postgres',
      url: options.url,
      close: async () => {
        if (closed) return;
        closed = true;
        await client.end({ timeout: 5 });
      },
    };
  }
  const dir = options.pgliteDir && !options.pgliteDir.startsWith('memory://') ? options.pgliteDir : null;
  // Taken before PGlite is even loaded, so a second process is refused at once and never touches the directory.
  const lock = !options.pglite && dir ? lockDataDir(dir) : null;
  let pglite: PGlite;
  let embedded: ReturnType<typeof loadPglite>;
  try {
    embedded = loadPglite();
    pglite = options.pglite ?? new embedded.PGlite(options.pgliteDir ?? 'memory://');
  } catch (err) {
    lock?.release();
    throw err;
  }
  const ownsClient = !options.pglite;
  const db = embedded.drizzle({ client: pglite, schema, casing: 'snake_case' }) as unknown as Database;
  timeouts.set(db, timeoutMs);
  poolActivity.set(db, { size: 1, inUse: 0, waiting: 0 });
  return {
    db,
    engine: 'pglite',
    pglite,
    close: async () => {
      try {
        if (ownsClient && !pglite.closed) await pglite.close();
      } finally {
        lock?.release();
      }
    },
  };
}

/**
 * PGlite and drizzle's driver for it, loaded on first use: a server on Postgres never loads them (under tsx,
 * importing PGlite costs some 45 MB of memory). require() keeps createDb synchronous; it loads their CommonJS
 * builds, which work with the rest of drizzle because drizzle recognises its objects by global symbols.
 */
function loadPglite() {
  const require = createRequire(import.meta.url);
  return {
    PGlite: (require('@electric-sql/pglite') as typeof import('@electric-sql/pglite')).PGlite,
    drizzle: (require('drizzle-orm/pglite') as typeof import('drizzle-orm/pglite')).drizzle,
  };
}

type TransactionWithSetup = <T>(setup: SQL, fn: (tx: Transaction) => Promise<T>, guard: Deadline) => Promise<T>;

const setupPipelines = new WeakMap<Database, TransactionWithSetup>();
const timeouts = new WeakMap<Database, number>();

/**
 * Request transactions (transactionWithSetup) holding a connection and waiting for one, for metrics: postgres.js
 * exposes nothing about its pool, so they are counted here. `size` is the pool's (PGlite: one connection).
 * Statements run outside transactionWithSetup (migrations, the owner's own queries) are not counted.
 */
export interface PoolActivity {
  readonly size: number;
  inUse: number;
  waiting: number;
}
const poolActivity = new WeakMap<Database, PoolActivity>();

/** The live pool counters of a database made by createDb (undefined for any other). */
export function poolActivityOf(db: Database): Readonly<PoolActivity> | undefined {
  return poolActivity.get(db);
}

/**
 * Runs `fn` in one transaction as the login of `url` (the owner's work: migrations, the retention job). PGlite: on
 * the handle itself. Postgres: over a connection of its own to `url` (default: the handle's), unnamed statements
 * only so it works directly and through a transaction pooler, closed afterwards; `applicationName` names it in
 * pg_stat_activity.
 */
export async function inOwnerTransaction<T>(
  handle: DbHandle,
  url: string | undefined,
  applicationName: string,
  fn: (tx: Transaction) => Promise<T>,
): Promise<T> {
  if (handle.engine === 'pglite') return handle.db.transaction(fn);
  const target = url ?? handle.url;
  if (!target) throw new Error('a postgres handle needs its url');
  const client = postgres(target, { max: 1, prepare: false, onnotice: () => {}, connection: { application_name: applicationName } });
  try {
    const db = drizzlePostgres({ client }) as unknown as Database;
    return await db.transaction(fn);
  } finally {
    await client.end({ timeout: 5 });
  }
}

/** The request time limit of a database made by createDb, in milliseconds. */
export function requestTimeoutOf(db: Database): number {
  return timeouts.get(db) ?? DEFAULT_REQUEST_TIMEOUT_MS;
}

/** Thrown inside a transaction whose caller has already been answered, so it rolls back instead of committing. */
class AbandonedTransaction extends Error {
  override name = 'AbandonedTransaction';
}

/**
 * The time limit of one transaction. `started()` is called once a connection is held; after the limit the
 * caller is answered with DatabaseUnavailableError and the transaction, whenever it runs or finishes, rolls back.
 */
interface Deadline {
  started: () => void;
  /**
   * Call right before the transaction commits: throws if the caller has been answered already (so it rolls
   * back instead); otherwise the caller waits for COMMIT's own outcome, up to one more time limit past the first
   * (then CommitOutcomeUnknownError).
   */
  check: () => void;
}

function withDeadline<T>(timeoutMs: number, run: (deadline: Deadline) => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let state: 'waiting' | 'running' | 'committing' | 'settled' = 'waiting';
    let timer = setTimeout(function expire() {
      if (state === 'settled') return;
      if (state === 'committing') {
        // COMMIT is on its way: answering "unavailable" now could report a failure for a write that did commit,
        // so the caller waits for its real outcome (Postgres bounds COMMIT by statement_timeout) for one more
        // limit. A database or path that stalls past that leaves the outcome unknown, and the caller is told so.
        timer = setTimeout(() => {
          if (state === 'settled') return;
          state = 'settled';
          reject(new CommitOutcomeUnknownError(timeoutMs));
        }, timeoutMs);
        return;
      }
      const code = state === 'waiting' ? 'POOL_TIMEOUT' : 'REQUEST_TIMEOUT';
      state = 'settled';
      reject(new DatabaseUnavailableError(code, timeoutMs));
    }, timeoutMs);
    const deadline: Deadline = {
      started: () => {
        if (state === 'settled') throw new AbandonedTransaction('the caller stopped waiting before a connection was free');
        state = 'running';
      },
      check: () => {
        if (state === 'settled') throw new AbandonedTransaction('the caller stopped waiting; rolling back');
        state = 'committing';
      },
    };
    run(deadline).then(
      (value) => {
        clearTimeout(timer);
        if (state === 'settled') return;
        state = 'settled';
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (state === 'settled') return; // already answered; the transaction rolled back
        state = 'settled';
        reject(err);
      },
    );
  });
}

/**
 * Runs `fn` in one transaction whose first statement is `setup`, a statement of its own. On postgres.js the
 * set-up is handed to the connection before anything `fn` sends and is not waited for, so it travels with fn's
 * first query in one round trip. Both run inside the already open transaction (BEGIN has completed); if the
 * set-up fails, the transaction is aborted, so every later statement fails too, and the set-up's error is thrown.
 * If `fn` throws, the transaction rolls back. Other databases run the set-up, wait for it, then run `fn`.
 *
 * Bounded by the database's request time limit (createDb's `requestTimeoutMs`): waiting for a connection and
 * running together take at most that long, else DatabaseUnavailableError and nothing is committed.
 */
export function transactionWithSetup<T>(
  db: Database,
  setup: SQL,
  fn: (tx: Transaction) => Promise<T>,
  { timeoutMs = requestTimeoutOf(db) }: { timeoutMs?: number } = {},
): Promise<T> {
  const pipelined = setupPipelines.get(db);
  const activity = poolActivity.get(db);
  return withDeadline(timeoutMs, (timed) => {
    // Counted from the call until the driver gives the connection back, which may be after the caller was answered.
    let phase: 'waiting' | 'in use' | 'done' = 'waiting';
    if (activity) activity.waiting++;
    const deadline: Deadline = !activity
      ? timed
      : {
          started: () => {
            if (phase === 'waiting') {
              activity.waiting--;
              activity.inUse++;
              phase = 'in use';
            }
            timed.started();
          },
          check: timed.check,
        };
    const release = () => {
      if (activity && phase !== 'done') activity[phase === 'waiting' ? 'waiting' : 'inUse']--;
      phase = 'done';
    };
    const run = pipelined
      ? pipelined(setup, fn, deadline)
      : db.transaction(async (tx) => {
          deadline.started();
          await tx.execute(setup);
          const result = await fn(tx);
          deadline.check();
          return result;
        });
    return run.finally(release);
  });
}

function pipelinedTransaction(client: postgres.Sql, prepare: boolean): TransactionWithSetup {
  // The same dialect and relational schema drizzle() builds for the database, for transactions made here.
  const dialect = new PgDialect({ casing: 'snake_case' });
  const tables = extractTablesRelationalConfig(schema, createTableRelationsHelpers);
  const relational = { fullSchema: schema, schema: tables.tables, tableNamesMap: tables.tableNamesMap };
  return async <T>(setup: SQL, fn: (tx: Transaction) => Promise<T>, deadline: Deadline): Promise<T> => {
    const { sql: text, params } = dialect.sqlToQuery(setup);
    const result = await client.begin(async (sql) => {
      deadline.started();
      // Queries reach the connection in the order they are executed: this one goes first, before fn runs.
      const started = sql.unsafe(text, params as never[], { prepare }).execute();
      // drizzle's own transactions hand a TransactionSql to its session the same way.
      const session = new PostgresJsSession((prepare ? preparing(sql) : sql) as unknown as postgres.Sql, dialect, relational, {});
      const tx = new PostgresJsTransaction(dialect, session as never, relational) as unknown as Transaction;
      let value: T;
      try {
        value = await fn(tx);
      } finally {
        // A failed set-up is the cause of whatever fn saw; its rejection here replaces fn's error.
        await started;
      }
      deadline.check();
      return value;
    });
    return result as T;
  };
}

/**
 * The client with every statement prepared, in transactions and savepoints too. drizzle asks postgres.js not to
 * prepare anything but `.prepare(name)` queries, so each parameterised statement would cost two round trips
 * (parse and describe, then bind and execute) and a fresh plan every time.
 */
function preparing<S extends postgres.Sql | postgres.TransactionSql>(sql: S): S {
  const withFn = (run: (...args: unknown[]) => unknown) => (...args: unknown[]) => {
    const fn = args.pop() as (tx: postgres.TransactionSql) => unknown;
    return run(...args, (tx: postgres.TransactionSql) => fn(preparing(tx)));
  };
  return new Proxy(sql, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key);
      if (key === 'unsafe') {
        return (query: string, args?: unknown, options?: postgres.UnsafeQueryOptions) =>
          Array.isArray(args) || args === undefined
            ? target.unsafe(query, args as never[], { ...options, prepare: true })
            : target.unsafe(query, [], { ...(args as postgres.UnsafeQueryOptions), prepare: true });
      }
      if ((key === 'begin' || key === 'savepoint') && typeof value === 'function') return withFn(value as (...args: unknown[]) => unknown);
      return value;
    },
  });
}

/**
 * Transaction-local settings every transaction of the module pins, so a database or role configured otherwise
 * (`datestyle = 'SQL, DMY'`, another TimeZone, a schema that shadows ours first in search_path) gives the same
 * answers: timestamps parse as ISO text in UTC and unqualified names resolve to the public schema only
 * (pg_catalog is always searched first; pg_temp is put last so a temporary table cannot shadow ours).
 * Transaction-local rather than startup parameters, which PgBouncer refuses for most of these.
 */
export const PINNED_SETTINGS = {
  search_path: 'public, pg_temp',
  DateStyle: 'ISO, MDY',
  IntervalStyle: 'postgres',
  TimeZone: 'UTC',
} as const;

/** PINNED_SETTINGS as `set_config(…, true)` calls to join a select list (constants, so literal SQL). */
export const pinnedSettings = sql.raw(
  Object.entries(PINNED_SETTINGS)
    .map(([name, value]) => `pg_catalog.set_config('${name}', '${value}', true)`)
    .join(', '),
);

/** Pins the session settings (see pinnedSettings) for the rest of transaction `tx`. */
export async function pinSettings(tx: Executor): Promise<void> {
  await tx.execute(sql`select ${pinnedSettings}`);
}

/** Rows of a raw `execute()` result, whichever driver produced it. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  const rows = (result as { rows?: unknown }).rows;
  if (Array.isArray(rows)) return rows as T[];
  throw new Error('unexpected query result shape');
}
