// Server-side callers for a fixture's users, and an assertion for the TRPCError a call rejects with.
import { TRPCError } from '@trpc/server';
import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import type { Database } from '../../db/client.ts';
import { createContextInner } from '../../server/context.ts';
import { createCaller } from '../../server/router.ts';
import { countAll, type TenantFixture } from './factory.ts';

/** The app router as user `userIndex` of tenant `t`. */
export function callerFor(db: Database, t: TenantFixture, userIndex = 0) {
  const userId = t.userIds[userIndex];
  if (!userId) throw new Error(`tenant fixture has no user ${userIndex}`);
  return createCaller(createContextInner({ db, session: { tenantId: t.tenantId, userId } }));
}

/** Awaits `promise`, expecting a TRPCError with `code`; returns it for further checks. */
export async function expectTrpcError(promise: Promise<unknown>, code: TRPCError['code']): Promise<TRPCError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}, but the call succeeded`).toBeInstanceOf(TRPCError);
  const error = caught as TRPCError;
  expect(error.code, `expected ${code}, got ${error.code}: ${error.message}`).toBe(code);
  return error;
}

/** View rows of the given tenants, counted as the owner (bypassing RLS). */
export function countViews(db: Database, ...tenantIds: string[]): Promise<number> {
  const ids = sql.join(
    tenantIds.map((id) => sql`${id}::uuid`),
    sql`, `,
  );
  return countAll(db, 'user_skill_views', sql`where tenant_id in (${ids})`);
}

/** recordView's result when tracking is on: asserts `tracked` and a view, and returns them non-null. */
export function tracked<V>(result: { view: V | null; previous: V | null; tracked: boolean }): { view: V; previous: V | null } {
  expect(result.tracked, 'recordView was not tracked').toBe(true);
  expect(result.view, 'recordView returned no view').not.toBeNull();
  return { view: result.view!, previous: result.previous };
}
