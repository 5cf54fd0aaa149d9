// Postgres errors on either driver: drizzle wraps the driver's error, so look for the SQLSTATE down the cause chain.
import { expect } from 'vitest';
import { postgresErrorOf } from '../../db/errors.ts';

export interface PgErrorInfo {
  code: string;
  message: string;
}

/** The first error in the `cause` chain that carries a SQLSTATE, or null. */
export function pgError(err: unknown): PgErrorInfo | null {
  const found = postgresErrorOf(err);
  return found ? { code: found.code, message: String(found.message ?? '') } : null;
}

/** True for `new row violates row-level security policy` (42501 is also plain "permission denied"). */
export function isRlsViolation(err: unknown): boolean {
  const info = pgError(err);
  return info?.code === '42501' && /row-level security/i.test(info.message);
}

/** Awaits `promise`, expecting it to reject with `code`; returns the error for further checks. */
export async function expectSqlState(promise: Promise<unknown>, code: string): Promise<PgErrorInfo> {
  let caught: unknown = null;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected SQLSTATE ${code}, but the statement succeeded`).not.toBeNull();
  const info = pgError(caught);
  expect(info?.code, `expected SQLSTATE ${code}, got ${String(caught)}`).toBe(code);
  return info!;
}

/** Expects a rejection by a row-level security policy (not a missing grant). */
export async function expectRlsViolation(promise: Promise<unknown>): Promise<void> {
  const info = await expectSqlState(promise, '42501');
  expect(info.message).toMatch(/row-level security/i);
}
