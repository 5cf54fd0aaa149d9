// Query function for users: whether a session's user exists, asked as a request would ask it.
import { sql } from 'drizzle-orm';
import type { Database } from '../client.ts';
import { query } from './rows.ts';
import { withTenantTransaction } from './tenant-transaction.ts';

/**
 * True when `userId` is a user of `tenantId`. Asked in a request transaction as `appRole`, under row-level
 * security, so it sees what the procedures would see; bounded by `timeoutMs` (default: the request time limit).
 */
export async function userExists(
  db: Database,
  appRole: string,
  session: { tenantId: string; userId: string },
  options: { timeoutMs?: number } = {},
): Promise<boolean> {
  const rows = await withTenantTransaction(
    db,
    { role: appRole, ...session },
    (tx) => query(tx, sql`select 1 from users where tenant_id = ${session.tenantId}::uuid and id = ${session.userId}::uuid`),
    options,
  );
  return rows.length > 0;
}
