// Database clients: one drizzle database over postgres.js (a connection URL) or PGlite (embedded), and one close().
import { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from 'drizzle-orm/pg-core';
import type { ExtractTablesWithRelations } from 'drizzle-orm';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
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
    });
    const db = drizzlePostgres({ client, schema, casing: 'snake_case' }) as unknown as Database;
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
  const pglite = options.pglite ?? new PGlite(options.pgliteDir ?? 'memory://');
  const ownsClient = !options.pglite;
  const db = drizzlePglite({ client: pglite, schema, casing: 'snake_case' }) as unknown as Database;
  return {
    db,
    engine: 'pglite',
    close: async () => {
      if (ownsClient && !pglite.closed) await pglite.close();
    },
  };
}

/** Rows of a raw `execute()` result, whichever driver produced it. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  const rows = (result as { rows?: unknown }).rows;
  if (Array.isArray(rows)) return rows as T[];
  throw new Error('unexpected query result shape');
}
