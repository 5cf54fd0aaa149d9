// EXPLAIN (ANALYZE, BUFFERS) of one prepared statement, as a prepared statement settles on it (used by explain.ts and
// read-state.ts; imports nothing of the app, so the read-state scenario also runs on older checkouts).
import type postgres from 'postgres';

/**
 * EXPLAIN (ANALYZE, BUFFERS) of one statement in transaction `tx` (already scoped): prepared and run five times
 * first, so the plan shown is the one a prepared statement settles on (a generic plan from the 6th execution on,
 * when Postgres finds it no worse). Returns the plan and the rows of the last plain execution.
 */
export async function explainPrepared(
  tx: postgres.TransactionSql,
  name: string,
  text: string,
  params: unknown[],
): Promise<{ plan: string; rows: postgres.Row[] }> {
  // EXECUTE takes no bind parameters: the call's values (ids, numbers) go in as quoted literals.
  const values = params.map((v) => `'${(v instanceof Date ? v.toISOString() : String(v)).replaceAll("'", "''")}'`);
  // Simple protocol: the $n belong to the prepared statement, not to this one.
  await tx.unsafe(`prepare ${name} as ${text}`).simple();
  const [prepared] = await tx.unsafe<{ types: string[] }[]>(
    `select parameter_types::text[] as types from pg_prepared_statements where name = $1`,
    [name],
  );
  const types = prepared?.types ?? [];
  const args = types.length ? `(${types.map((type, i) => `${values[i]}::${type}`).join(', ')})` : '';
  let rows: postgres.Row[] = [];
  // A savepoint around each run, so a statement that writes (markAllSeen) finds the same rows every time.
  for (let i = 0; i < 5; i++) {
    await tx.unsafe(`savepoint bench_explain_run`);
    rows = [...(await tx.unsafe(`execute ${name}${args}`))];
    await tx.unsafe(`rollback to savepoint bench_explain_run`);
  }
  const plan = await tx.unsafe<{ 'QUERY PLAN': string }[]>(`explain (analyze, buffers) execute ${name}${args}`);
  // Prepared statements outlive the transaction; the name is free again for the next call on this connection.
  await tx.unsafe(`deallocate ${name}`);
  return { plan: plan.map((r) => r['QUERY PLAN']).join('\n'), rows };
}
