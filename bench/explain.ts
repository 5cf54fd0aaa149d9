// Query plans for the output: each procedure's statements as the app role inside a scoped transaction, rolled back.
import postgres from 'postgres';
import { explainPrepared } from './explain-statement.ts';
import { bindParams, planOfProbe, rng, type Call, type Procedure, type StatementTemplate, type Templates, type Workload } from './workload.ts';

/**
 * The plans of one call, rolled back: its statement, or for whatsNew and whatsNewCount the probe and then the
 * statement of the plan the probe chose (labelled).
 */
export async function explainCall(sql: postgres.Sql, templates: Templates, call: Call, prefix: string): Promise<string> {
  let out = '';
  try {
    await sql.begin(async (tx) => {
      await tx.unsafe(templates.scope.text, bindParams(templates.scope, call) as never[]);
      const template = templates[call.procedure];
      const name = `${prefix}_${call.procedure.toLowerCase()}`;
      if (template.kind === 'single') {
        out = (await explainPrepared(tx, name, template.statement.text, bindParams(template.statement, call))).plan;
      } else {
        const probe = await explainPrepared(tx, `${name}_probe`, template.probe.text, bindParams(template.probe, call));
        const row = probe.rows[0]!;
        const plan = planOfProbe(row);
        const main: StatementTemplate = template.plans[plan];
        const page = await explainPrepared(tx, `${name}_${plan}`, main.text, bindParams(main, call, String(row.since)));
        out = `-- probe: views ${row.views}, changed ${row.changed} → plan '${plan}'\n${probe.plan}\n\n-- ${call.procedure}, plan '${plan}'\n${page.plan}`;
      }
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  return out;
}

/** Captured query plans: each procedure's statements for one random call, as the app role in a scoped transaction, rolled back. */
export async function explain(
  url: string,
  templates: Templates,
  workload: Workload,
  which: readonly Procedure[],
  seed: number,
): Promise<Partial<Record<Procedure, string>>> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const random = rng(seed);
  const plans: Partial<Record<Procedure, string>> = {};
  try {
    for (const procedure of which) plans[procedure] = await explainCall(sql, templates, workload.next(procedure, random), 'bench_explain');
  } finally {
    await sql.end({ timeout: 5 });
  }
  return plans;
}

class Rollback extends Error {}
