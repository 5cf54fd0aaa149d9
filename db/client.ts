// Database clients: one drizzle database over postgres.js (a connection URL) or PGlite (embedded), and one close().
import { createRequire } from 'node:module';
import type { PGlite } from '@electric-sql/pglite';
import { PgDialect, type PgDatabase, type PgQueryResultHKT, type PgTransaction } from 'drizzle-orm/pg-core';
import { createTableRelationsHelpers, extractTablesRelationalConfig, type ExtractTablesWithRelations, type SQL } from 'drizzle-orm';
import { drizzle as drizzlePostgres, PostgresJsSession, PostgresJsTransaction } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
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
       * Turn off behind a pooler that cannot keep prepared statements across transactions.
       */
      prepare?: boolean;
      /** Extra postgres.js options, merged over the defaults (instrumentation such as `debug`, tuning). */
      driverOptions?: postgres.Options<Record<string, postgres.PostgresType>>;
    }
  | {
      /** PGlite data directory; omit or use 'memory://' for an in-memory database. */
      pgliteDir?: string;
      /** An already open PGlite instance to wrap (tests share one). */
      pglite?: PGlite;
    };

export interface DbHandle {
  db: Database;
  engine: Engine;
  /** The connection URL, for postgres handles (migrations open their own single connection). */
  url?: string;
  /** Closes the pool or the embedded database. Idempotent. */
  close: () => Promise<void>;
}

export function createDb(options: CreateDbOptions): DbHandle {
  if ('url' in options) {
    const client = postgres(options.url, {
      max: options.poolSize ?? 10,
      onnotice: () => {},
      connection: { application_name: 'skill-views' },
      ...options.driverOptions,
    });
    const prepare = options.prepare ?? true;
    const db = drizzlePostgres({ client: prepare ? preparing(client) : client, schema, casing: 'snake_case' }) as unknown as Database;
    setupPipelines.set(db, pipelinedTransaction(client, prepare));
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
  const embedded = loadPglite();
  const pglite = options.pglite ?? new embedded.PGlite(options.pgliteDir ?? 'memory://');
  const ownsClient = !options.pglite;
  const db = embedded.drizzle({ client: pglite, schema, casing: 'snake_case' }) as unknown as Database;
  return {
    db,
    engine: 'pglite',
    close: async () => {
      if (ownsClient && !pglite.closed) await pglite.close();
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

type TransactionWithSetup = <T>(setup: SQL, fn: (tx: Transaction) => Promise<T>) => Promise<T>;

const setupPipelines = new WeakMap<Database, TransactionWithSetup>();

/**
 * Runs `fn` in one transaction whose first statement is `setup`, a statement of its own. On postgres.js the
 * set-up is handed to the connection before anything `fn` sends and is not waited for, so it travels with fn's
 * first query in one round trip. Both run inside the already open transaction (BEGIN has completed); if the
 * set-up fails, the transaction is aborted, so every later statement fails too, and the set-up's error is thrown.
 * If `fn` throws, the transaction rolls back. Other databases run the set-up, wait for it, then run `fn`.
 */
export function transactionWithSetup<T>(db: Database, setup: SQL, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  const pipelined = setupPipelines.get(db);
  if (pipelined) return pipelined(setup, fn);
  return db.transaction(async (tx) => {
    await tx.execute(setup);
    return fn(tx);
  });
}

function pipelinedTransaction(client: postgres.Sql, prepare: boolean): TransactionWithSetup {
  // The same dialect and relational schema drizzle() builds for the database, for transactions made here.
  const dialect = new PgDialect({ casing: 'snake_case' });
  const tables = extractTablesRelationalConfig(schema, createTableRelationsHelpers);
  const relational = { fullSchema: schema, schema: tables.tables, tableNamesMap: tables.tableNamesMap };
  return async <T>(setup: SQL, fn: (tx: Transaction) => Promise<T>): Promise<T> => {
    const { sql: text, params } = dialect.sqlToQuery(setup);
    const result = await client.begin(async (sql) => {
      // Queries reach the connection in the order they are executed: this one goes first, before fn runs.
      const started = sql.unsafe(text, params as never[], { prepare }).execute();
      // drizzle's own transactions hand a TransactionSql to its session the same way.
      const session = new PostgresJsSession((prepare ? preparing(sql) : sql) as unknown as postgres.Sql, dialect, relational, {});
      const tx = new PostgresJsTransaction(dialect, session as never, relational) as unknown as Transaction;
      try {
        return await fn(tx);
      } finally {
        // A failed set-up is the cause of whatever fn saw; its rejection here replaces fn's error.
        await started;
      }
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

/** Rows of a raw `execute()` result, whichever driver produced it. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  const rows = (result as { rows?: unknown }).rows;
  if (Array.isArray(rows)) return rows as T[];
  throw new Error('unexpected query result shape');
}
