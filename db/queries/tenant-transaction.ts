// The request transaction: one transaction per request, switched to the app role and scoped to a tenant and user.
import { sql } from 'drizzle-orm';
import { DEFAULT_REQUEST_TIMEOUT_MS, pinnedSettings, requestTimeoutOf, transactionWithSetup, type Database, type Transaction } from '../client.ts';

export interface TenantScope {
  /** Role the statements run as (never a superuser or BYPASSRLS role). */
  role: string;
  tenantId: string;
  userId: string;
}

/**
 * The one parameterised set-up statement. Its values are bind parameters, never SQL text, and the
 * settings are transaction-local (`true`), so nothing outlives the transaction. It must stay a statement
 * of its own: a statement is planned under the role current when it starts, so a query folded into
 * it would run as the login role, without RLS.
 *
 * Besides role, tenant and user it bounds the transaction in Postgres (`statement_timeout` and
 * `idle_in_transaction_session_timeout`, in milliseconds) and pins the settings the queries depend on
 * (search_path, DateStyle, IntervalStyle, TimeZone), whatever the database or role defaults are.
 */
export function scopeStatement(scope: TenantScope, timeoutMs: number = DEFAULT_REQUEST_TIMEOUT_MS) {
  const timeout = String(Math.max(1, Math.round(timeoutMs)));
  return sql`select pg_catalog.set_config('role', ${scope.role}, true), pg_catalog.set_config('app.current_tenant_id', ${scope.tenantId}, true), pg_catalog.set_config('app.current_user_id', ${scope.userId}, true), pg_catalog.set_config('statement_timeout', ${timeout}, true), pg_catalog.set_config('idle_in_transaction_session_timeout', ${timeout}, true), ${pinnedSettings}`;
}

/**
 * Runs `fn` in one transaction scoped to `scope`. If `fn` throws, the transaction rolls back and the
 * error propagates; the next transaction on the same pooled connection starts unscoped. Waiting for a
 * connection and running take at most `timeoutMs` (default: the database's request time limit), else
 * DatabaseUnavailableError and nothing is committed.
 *
 * On Postgres the scope statement is pipelined with fn's first query: sent ahead of it on the same
 * connection, inside the open transaction, in one round trip. It stays a statement of its own, so the
 * query is planned under the app role; and if it fails, the transaction is aborted before the query runs.
 */
export async function withTenantTransaction<T>(
  db: Database,
  scope: TenantScope,
  fn: (tx: Transaction) => Promise<T>,
  { timeoutMs = requestTimeoutOf(db) }: { timeoutMs?: number } = {},
): Promise<T> {
  return transactionWithSetup(db, scopeStatement(scope, timeoutMs), fn, { timeoutMs });
}
