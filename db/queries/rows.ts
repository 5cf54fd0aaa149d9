// Helpers shared by the query functions: run raw SQL on either driver and convert Postgres values.
import type { SQL } from 'drizzle-orm';
import { rowsOf, type Executor } from '../client.ts';

/** Runs a statement and returns its rows, whichever driver is underneath. */
export async function query<T>(db: Executor, statement: SQL): Promise<T[]> {
  return rowsOf<T>(await db.execute(statement));
}

const pgTimestamp = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}(?::?\d{2})?)$/;

/** A timestamptz as the drivers return it (a Date, or Postgres text such as `2026-01-02 03:04:05.123456+00`). */
export function toDate(value: unknown): Date {
  if (value instanceof Date) return value;
  if (typeof value === 'string') {
    const m = pgTimestamp.exec(value);
    if (m) {
      const fraction = (m[3] ?? '').slice(0, 4);
      let zone = m[4] ?? 'Z';
      if (zone !== 'Z') zone = zone.length === 3 ? `${zone}:00` : zone.includes(':') ? zone : `${zone.slice(0, 3)}:${zone.slice(3)}`;
      return new Date(`${m[1]}T${m[2]}${fraction}${zone}`);
    }
  }
  throw new TypeError(`not a timestamp: ${String(value)}`);
}

export function toDateOrNull(value: unknown): Date | null {
  return value === null || value === undefined ? null : toDate(value);
}

/** Postgres int/bigint/numeric values arrive as numbers or strings depending on the driver. */
export function toInt(value: unknown): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new TypeError(`not an integer: ${String(value)}`);
  return n;
}

export function toIntOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : toInt(value);
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A uuid[] bind parameter as a Postgres array literal, so a list of any length is one parameter
 * (one statement shape to plan) on both drivers. Refuses anything that is not a uuid.
 */
export function uuidArrayParam(ids: readonly string[]): string {
  for (const id of ids) if (!uuidPattern.test(id)) throw new TypeError('not a uuid');
  return `{${ids.join(',')}}`;
}

/** Whole numbers (null allowed) as one Postgres array literal, to pass as a single `::bigint[]` parameter. */
export function bigintArrayParam(values: readonly (number | null)[]): string {
  return `{${values.map((v) => (v === null ? 'NULL' : String(Math.trunc(v)))).join(',')}}`;
}

export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}
