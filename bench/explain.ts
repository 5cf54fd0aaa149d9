// Query plans for the output: each procedure's statement as the app role inside a scoped transaction, rolled back.
import postgres from 'postgres';
import { bindParams, rng, type captureStatements, type Procedure, type Workload } from './workload.ts';

/** Captured query plans: the statement as the app role in a scoped transaction, rolled back. */
export async function explain(
  url: string,
  templates: ReturnType<typeof captureStatements>,
  workload: Workload,
  which: readonly Procedure[],
  seed: number,
): Promise<Partial<Record<Procedure, string>>> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const random = rng(seed);
  const plans: Partial<Record<Procedure, string>> = {};
  try {
    for (const procedure of which) {
      const call = workload.next(procedure, random);
      const template = templates[procedure];
      // EXECUTE takes no bind parameters: the call's values (ids, numbers) go in as quoted literals.
      const values = bindParams(template, call).map((v) => `'${String(v).replaceAll("'", "''")}'`);
      const name = `bench_explain_${procedure.toLowerCase()}`;
      try {
        await sql.begin(async (tx) => {
          await tx.unsafe(templates.scope.text, bindParams(templates.scope, call) as never[]);
          // Prepared and run five times first, so the plan shown is the one a prepared statement settles on.
          // Simple protocol: the $n belong to the prepared statement, not to this one.
          await tx.unsafe(`prepare ${name} as ${template.text}`).simple();
          const [prepared] = await tx.unsafe<{ types: string[] }[]>(
            `select parameter_types::text[] as types from pg_prepared_statements where name = $1`,
            [name],
          );
          const args = (prepared?.types ?? []).map((type, i) => `${values[i]}::${type}`).join(', ');
          for (let i = 0; i < 5; i++) await tx.unsafe(`execute ${name}(${args})`);
          const rows = await tx.unsafe<{ 'QUERY PLAN': string }[]>(`explain (analyze, buffers) execute ${name}(${args})`);
          plans[procedure] = rows.map((r) => r['QUERY PLAN']).join('\n');
          throw new Rollback();
        });
      } catch (err) {
        if (!(err instanceof Rollback)) throw err;
      }
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
  return plans;
}

class Rollback extends Error {}
