// `npm run bench -- --scenario read-state`: whatsNew, whatsNewCount and markAllSeen for one heavy user at 200, 2,000
// and 20,000 views, and for a light user in a quiet and in a busy tenant, through createCaller, with the plans.
//
// Imports nothing but the app's public entry points (createDb, migrate, createCaller) and measure.ts /
// explain-statement.ts, and adapts its seed to a schema without the read state, so the same scenario also runs on an
// older checkout (whatsNew only there) for a before/after comparison.
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { createDb, type DbHandle } from '../db/client.ts';
import { migrate } from '../db/migrate.ts';
import { createContextInner } from '../server/context.ts';
import { createCaller } from '../server/router.ts';
import { explainPrepared } from './explain-statement.ts';
import { summarize, type PhaseResult, type Summary } from './measure.ts';
import { createDatabase, databaseExists, databaseUrl, dropDatabase } from './seed.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The data: five tenants of the same size; only the subject's views and what changed inside the window differ. */
export const READ_STATE_DATA = {
  /** Skills per tenant: the usual 1,000 plus 20,000 extra. */
  skillsPerTenant: 21_000,
  usersPerTenant: 10,
  heavyViews: [200, 2_000, 20_000],
  lightViews: 50,
  /** Share of the subject's viewed published skills edited inside the window (so unseen), at least one. */
  editedFraction: 0.02,
  /** Skills of every tenant edited inside the window by others (background churn, viewed or not). */
  churn: 100,
  /** Skills of the busy tenant changed inside the window. */
  busyChanged: 5_000,
  /** Share of the subject's viewed skills that got feedback from someone else after the view. */
  feedbackFraction: 0.01,
} as const;

export const readStateProcedures = ['whatsNew', 'whatsNewCount', 'markAllSeen'] as const;
export type ReadStateProcedure = (typeof readStateProcedures)[number];

interface Case {
  /** Tenant slug and label. */
  key: string;
  label: string;
  views: number;
}

const cases: Case[] = [
  ...READ_STATE_DATA.heavyViews.map((views) => ({ key: `rs-heavy-${views}`, label: `heavy, ${views.toLocaleString('en')} views`, views })),
  { key: 'rs-light-quiet', label: `light (${READ_STATE_DATA.lightViews} views), quiet tenant`, views: READ_STATE_DATA.lightViews },
  { key: 'rs-light-busy', label: `light (${READ_STATE_DATA.lightViews} views), busy tenant`, views: READ_STATE_DATA.lightViews },
];
const heavy = (views: number) => `rs-heavy-${views}`;

export interface ReadStateOptions {
  seconds: number;
  rounds: number;
  /** markAllSeen calls per case per round (each followed by an untimed re-dirtying). */
  markIterations: number;
  keep: boolean;
  reuse: boolean;
  procedures: ReadStateProcedure[];
  /** Output file stem under bench/results (latest-<stem>.md); the database is skillviews_bench_<stem, '-' → '_'>. */
  resultName: string;
}

interface Subject extends Case {
  tenantId: string;
  userId: string;
  /** Published viewed skills edited inside the window, changed skills of the tenant in the window. */
  unseen: number;
  changedInWindow: number;
}

/** Seeds the scenario as the owner (a superuser). Returns whether the schema has the read state (seen_revision). */
async function seedReadState(url: string, appRole: string): Promise<{ ms: number; readState: boolean }> {
  const t0 = performance.now();
  const handle = createDb({ url, poolSize: 1 });
  try {
    await migrate(handle, { appRole });
  } finally {
    await handle.close();
  }
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const d = READ_STATE_DATA;
  try {
    const [col] = await sql`select exists (select 1 from information_schema.columns
      where table_name = 'user_skill_views' and column_name = 'seen_revision') as read_state`;
    const readState = col?.read_state === true;
    const tenantsSql = cases.map((c, i) => `(${i}, '${c.key}', '${c.label}')`).join(', ');
    // Catalogue: bulk loaded without triggers (replica), every skill at revision 1 with its history row; nothing
    // changed inside the 30-day window (updated between 31 and 730 days ago).
    await sql.begin(async (tx) => {
      await tx.unsafe(`set local session_replication_role = replica`);
      await tx.unsafe(`select setseed(0.24)`);
      await tx.unsafe(`
        create temp table rs_tenant on commit drop as
          select t, slug, label, gen_random_uuid() as id from (values ${tenantsSql}) x(t, slug, label);
        insert into tenants (id, name, slug, created_at) select id, label, slug, now() - interval '800 days' from rs_tenant;
        insert into users (id, tenant_id, email, name, created_at)
          select gen_random_uuid(), t.id, case when u = 0 then 'subject' else 'user' || u end || '@' || t.slug || '.test',
                 'User ' || u, now() - interval '800 days'
          from rs_tenant t, generate_series(0, ${d.usersPerTenant - 1}) u;
        create temp table rs_skill on commit drop as
          select t.id as tenant_id, gen_random_uuid() as id, gen_random_uuid() as vid, s,
                 (case when r < 0.9 then 'published' when r < 0.95 then 'draft' else 'archived' end)::skill_status as status,
                 now() - interval '31 days' - random() * interval '699 days' as updated_at
          from rs_tenant t, lateral (select s, random() as r from generate_series(0, ${d.skillsPerTenant - 1}) s) x;
        insert into skill_versions (id, tenant_id, skill_id, version, name, description, created_at)
          select vid, tenant_id, id, 1, 'Skill ' || s, 'What skill ' || s || ' covers', updated_at - interval '1 minute' from rs_skill;
        insert into skills (id, tenant_id, name, slug, description, category, status, published_version_id, created_at, updated_at)
          select id, tenant_id, 'Skill ' || s, 'skill-' || s, 'What skill ' || s || ' covers',
                 (array['Engineering', 'Data', 'Design', 'Operations', 'Security'])[1 + s % 5], status,
                 case when status <> 'draft' then vid end, updated_at - interval '1 minute', updated_at
          from rs_skill`);
      if (readState) {
        await tx.unsafe(`
          insert into skill_revisions (tenant_id, skill_id, revision, name, description, published_version, created_at)
          select s.tenant_id, s.id, 1, s.name, s.description, pv.version, s.updated_at
          from skills s left join skill_versions pv on pv.id = s.published_version_id`);
      }
    });
    // Old feedback (a fifth of the skills, by others), stamped by its trigger; seen by every view below.
    await sql.unsafe(`
      insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment, created_at)
      select s.tenant_id, s.id, u.id, 'comment', 'Old feedback', s.updated_at
      from skills s join users u on u.tenant_id = s.tenant_id and u.email like 'user1@%'
      where ('x' || substr(md5(s.id::text), 1, 4))::bit(16)::int % 5 = 0`);
    // The subjects' views, written as recordView would have: what the statement saw (revision and snapshot), at a
    // time between the skill's last change and the window's start.
    for (const c of cases) {
      await sql.unsafe(`
        insert into user_skill_views (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version,
                                      view_count${readState ? ', seen_revision, seen_feedback' : ''})
        select s.tenant_id, u.id, s.id, x.at - random() * interval '60 days', x.at, pv.version, 1 + floor(random() * 10)::int
               ${readState ? ', s.content_revision, s.feedback_seq' : ''}
        from tenants t
        join users u on u.tenant_id = t.id and u.email like 'subject@%'
        join lateral (select * from skills s where s.tenant_id = t.id order by md5(s.id::text) limit ${c.views}) s on true
        left join skill_versions pv on pv.id = s.published_version_id
        cross join lateral (select s.updated_at + random() * (now() - interval '30 days' - s.updated_at) as at) x
        where t.slug = '${c.key}'`);
    }
    // Inside the window, after the views, as the owner (the triggers move the revisions and record history):
    // a share of each subject's viewed published skills, the background churn of every tenant, and the busy
    // tenant's thousands. Updates carry an explicit updated_at spread over the window (the trigger keeps it).
    const edit = (where: string) =>
      sql.unsafe(`
        update skills s set description = s.description || ' (edited)', updated_at = now() - random() * interval '29 days'
        where s.id in (${where})`);
    for (const c of cases) {
      await edit(`
        select v.skill_id from user_skill_views v
        join tenants t on t.id = v.tenant_id and t.slug = '${c.key}'
        join skills k on k.tenant_id = v.tenant_id and k.id = v.skill_id and k.status = 'published'
        order by md5(v.skill_id::text || 'e') limit ${Math.max(1, Math.round(c.views * d.editedFraction))}`);
      const changed = c.key === 'rs-light-busy' ? d.busyChanged : d.churn;
      await edit(`
        select k.id from skills k join tenants t on t.id = k.tenant_id and t.slug = '${c.key}'
        where k.status = 'published' order by md5(k.id::text || 'c') limit ${changed}`);
    }
    // New feedback by someone else on a few viewed skills (unseen for markAllSeen; the feed counts content only).
    await sql.unsafe(`
      insert into skill_feedback (tenant_id, skill_id, user_id, feedback_type, comment, created_at)
      select v.tenant_id, v.skill_id, u.id, 'comment', 'New feedback', now() - random() * interval '29 days'
      from user_skill_views v join users u on u.tenant_id = v.tenant_id and u.email like 'user2@%'
      where random() < ${d.feedbackFraction}`);
    if (readState) {
      // What markAllSeen changes, kept to re-dirty the rows between its timed calls.
      await sql.unsafe(`
        create schema bench_read_state;
        create table bench_read_state.saved as
          select tenant_id, user_id, skill_id, seen_revision, seen_feedback from user_skill_views;
        alter table bench_read_state.saved add primary key (tenant_id, user_id, skill_id)`);
    }
    await sql.unsafe(`vacuum (analyze)`);
    return { ms: performance.now() - t0, readState };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function subjects(sql: postgres.Sql): Promise<Subject[]> {
  const out: Subject[] = [];
  for (const c of cases) {
    const [row] = await sql<{ tenant_id: string; user_id: string; unseen: string; changed: string }[]>`
      select t.id as tenant_id, u.id as user_id,
        (select count(*) from user_skill_views v join skills s on s.tenant_id = v.tenant_id and s.id = v.skill_id
          where v.tenant_id = t.id and v.user_id = u.id and s.status = 'published' and s.updated_at > v.last_viewed_at
            and s.updated_at >= now() - interval '30 days') as unseen,
        (select count(*) from skills s where s.tenant_id = t.id and s.status = 'published'
            and s.updated_at >= now() - interval '30 days') as changed
      from tenants t join users u on u.tenant_id = t.id and u.email like 'subject@%'
      where t.slug = ${c.key}`;
    if (!row) throw new Error(`no subject for ${c.key}: not a read-state database`);
    out.push({ ...c, tenantId: row.tenant_id, userId: row.user_id, unseen: Number(row.unseen), changedInWindow: Number(row.changed) });
  }
  return out;
}

type Caller = ReturnType<typeof createCaller>;

function call(caller: Caller, procedure: ReadStateProcedure): Promise<unknown> {
  switch (procedure) {
    case 'whatsNew':
      return caller.whatsNew({ limit: 20 });
    case 'whatsNewCount':
      return (caller as unknown as { whatsNewCount: (input: object) => Promise<unknown> }).whatsNewCount({});
    case 'markAllSeen':
      return (caller as unknown as { markAllSeen: (input: object) => Promise<unknown> }).markAllSeen({});
  }
}

/** One caller, one call at a time, for `ms` (the latency of one user's requests, not of a loaded server). */
async function timed(invoke: () => Promise<unknown>, ms: number): Promise<PhaseResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  const start = performance.now();
  while (performance.now() - start < ms) {
    const t = performance.now();
    try {
      await invoke();
      latencies.push(performance.now() - t);
    } catch (err) {
      errors++;
      firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    }
  }
  return { ops: latencies.length, errors, firstError, elapsedMs: performance.now() - start, latencies };
}

/** Restores the subject's seen state saved at seeding (only the rows markAllSeen changed). Untimed. */
async function redirty(sql: postgres.Sql, s: Subject): Promise<number> {
  const rows = await sql`
    update user_skill_views v set seen_revision = b.seen_revision, seen_feedback = b.seen_feedback
    from bench_read_state.saved b
    where v.tenant_id = ${s.tenantId} and v.user_id = ${s.userId}
      and b.tenant_id = v.tenant_id and b.user_id = v.user_id and b.skill_id = v.skill_id
      and (v.seen_revision <> b.seen_revision or v.seen_feedback <> b.seen_feedback)`;
  return rows.count;
}

/** The statements one call sends (without BEGIN, the scope statement and COMMIT), captured from the driver. */
async function captureCall(url: string, appRole: string, s: Subject, procedure: ReadStateProcedure) {
  const sent: { text: string; params: unknown[] }[] = [];
  const handle = createDb({ url, poolSize: 1, driverOptions: { debug: (_c, text, params) => sent.push({ text, params: [...params] }) } });
  try {
    await call(createCaller(createContextInner({ db: handle.db, session: { tenantId: s.tenantId, userId: s.userId }, appRole })), procedure);
  } finally {
    await handle.close();
  }
  const scope = sent.find((q) => q.text.includes(`set_config('role'`));
  // Not the app's: BEGIN/COMMIT, and postgres.js's one-off lookup of array types on a new connection.
  const statements = sent.filter((q) => q !== scope && !/^\s*(begin|commit|rollback)\b/i.test(q.text) && !q.text.includes('pg_catalog.pg_type'));
  if (!scope) throw new Error('no scope statement captured');
  return { scope, statements };
}

/** EXPLAIN (ANALYZE, BUFFERS) of each statement of one call, in order, as the app role in a scoped transaction, rolled back. */
async function plansOf(sql: postgres.Sql, url: string, appRole: string, s: Subject, procedure: ReadStateProcedure): Promise<string> {
  const { scope, statements } = await captureCall(url, appRole, s, procedure);
  if (procedure === 'markAllSeen') await redirty(sql, s);
  const parts: string[] = [];
  try {
    await sql.begin(async (tx) => {
      await tx.unsafe(scope.text, scope.params as never[]);
      for (const [i, st] of statements.entries()) {
        const { plan, rows } = await explainPrepared(tx, `rs_${procedure.toLowerCase()}_${i}`, st.text, st.params);
        const probe = rows[0] && 'views' in rows[0] && 'changed' in rows[0] ? ` (views ${rows[0].views}, changed ${rows[0].changed})` : '';
        const kind = statements.length > 1 ? (i === 0 ? `probe${probe}` : `statement ${i + 1}, after the probe`) : 'statement';
        parts.push(`-- ${procedure}, ${kind}\n${plan}`);
      }
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
  return parts.join('\n\n');
}

class Rollback extends Error {}

const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '–');
const load = () => os.loadavg()[0]!;

export async function runReadState(adminUrl: string, options: ReadStateOptions, appRole: string): Promise<number> {
  const name = `skillviews_bench_${options.resultName.replaceAll('-', '_')}`;
  const started = new Date();
  const loads: number[] = [load()];
  let created = false;
  let handle: DbHandle | null = null;
  const owner = { sql: null as postgres.Sql | null };
  const cleanup = async () => {
    await handle?.close().catch(() => {});
    await owner.sql?.end({ timeout: 5 }).catch(() => {});
    if (created && !options.keep) await dropDatabase(adminUrl, name).catch(() => {});
    else if (created) console.log(`kept database: ${name}`);
  };
  const onSignal = () => {
    console.error('\nbench: interrupted, cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let url: string;
    let seedMs: number | null = null;
    let readState: boolean;
    if (options.reuse && (await databaseExists(adminUrl, name))) {
      url = databaseUrl(adminUrl, name);
      created = true;
      console.log(`reusing database ${name} (earlier runs' markAllSeen calls were re-dirtied)`);
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      readState = (await sql`select to_regclass('bench_read_state.saved') is not null as r`)[0]?.r === true;
      await sql.end();
    } else {
      const d = READ_STATE_DATA;
      process.stdout.write(
        `seeding read-state: ${cases.length} tenants × ${d.skillsPerTenant.toLocaleString('en')} skills; subjects with ` +
          `${cases.map((c) => c.views).join(', ')} views … `,
      );
      url = await createDatabase(adminUrl, name);
      created = true;
      const s = await seedReadState(url, appRole);
      seedMs = s.ms;
      readState = s.readState;
      console.log(`${(s.ms / 1000).toFixed(1)} s`);
    }
    owner.sql = postgres(url, { max: 1, onnotice: () => {} });
    const subs = await subjects(owner.sql);
    const procs = options.procedures.filter((p) => readState || p === 'whatsNew');
    if (procs.length < options.procedures.length) console.log(`no read state in this schema: measuring ${procs.join(', ')} only`);
    handle = createDb({ url, poolSize: 2 });
    const callers = new Map(
      subs.map((s) => [s.key, createCaller(createContextInner({ db: handle!.db, session: { tenantId: s.tenantId, userId: s.userId }, appRole }))]),
    );
    const reads = procs.filter((p) => p !== 'markAllSeen');
    const phaseMs = (options.seconds * 1000) / options.rounds;
    console.log(
      `measuring ${reads.join(', ')} for ${subs.length} users through createCaller, one call at a time, ${options.rounds} interleaved rounds × ${(phaseMs / 1000).toFixed(1)} s per user`,
    );
    const measured = new Map<string, PhaseResult[]>();
    const slot = (key: string) => measured.get(key) ?? measured.set(key, []).get(key)!;
    for (const p of reads) for (const s of subs) await timed(() => call(callers.get(s.key)!, p), 500);
    for (let round = 0; round < options.rounds; round++) {
      for (const p of reads) {
        for (let i = 0; i < subs.length; i++) {
          const s = subs[(i + round) % subs.length]!;
          slot(`${p}/${s.key}`).push(await timed(() => call(callers.get(s.key)!, p), phaseMs));
          loads.push(load());
        }
      }
      console.log(`  round ${round + 1}/${options.rounds} done`);
    }
    // The reads' plans now, before markAllSeen and its re-dirtying update the subjects' view rows.
    console.log('capturing plans');
    const plans: Record<string, Record<string, string>> = {};
    for (const s of subs) {
      plans[s.key] = {};
      for (const p of reads) plans[s.key]![p] = await plansOf(owner.sql, url, appRole, s, p);
    }
    const marked = new Map<string, number[]>();
    if (procs.includes('markAllSeen')) {
      console.log(`measuring markAllSeen: ${options.markIterations} calls per user per round, each followed by an untimed re-dirtying`);
      for (let round = 0; round < options.rounds; round++) {
        for (let i = 0; i < subs.length; i++) {
          const s = subs[(i + round) % subs.length]!;
          const latencies: number[] = [];
          const t0 = performance.now();
          for (let k = 0; k < options.markIterations; k++) {
            const t = performance.now();
            const result = (await call(callers.get(s.key)!, 'markAllSeen')) as { marked: number };
            latencies.push(performance.now() - t);
            (marked.get(s.key) ?? marked.set(s.key, []).get(s.key)!).push(result.marked);
            await redirty(owner.sql, s);
          }
          slot(`markAllSeen/${s.key}`).push({ ops: latencies.length, errors: 0, firstError: null, elapsedMs: performance.now() - t0, latencies });
          loads.push(load());
        }
      }
    }
    const stats = new Map<string, Summary>([...measured].map(([k, v]) => [k, summarize(v)]));
    const stat = (p: string, key: string) => stats.get(`${p}/${key}`);
    if (procs.includes('markAllSeen')) for (const s of subs) plans[s.key]!.markAllSeen = await plansOf(owner.sql, url, appRole, s, 'markAllSeen');
    loads.push(load());

    const targets: { name: string; ratio: number; met: boolean }[] = [];
    for (const p of reads) {
      const pairs: [string, string, string][] = [
        [`${p} p95: 20,000 views / 200 views ≤ 3`, heavy(20_000), heavy(200)],
        [`${p} p95: light user, busy / quiet tenant ≤ 3`, 'rs-light-busy', 'rs-light-quiet'],
      ];
      for (const [label, a, b] of pairs) {
        const ratio = stat(p, a)!.p95 / stat(p, b)!.p95;
        targets.push({ name: label, ratio, met: ratio <= 3 });
      }
    }
    const loadRange = `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`;
    const rows = subs.flatMap((s) =>
      procs.map((p) => {
        const x = stat(p, s.key)!;
        const m = marked.get(s.key);
        return `| ${s.label} | ${s.changedInWindow.toLocaleString('en')} | ${s.unseen} | ${p} | ${x.ops} | ${ms(x.p50)} | ${ms(x.p95)} | ${ms(x.p99)} | ${p === 'markAllSeen' && m ? `marked ${Math.min(...m)}–${Math.max(...m)}` : x.errors ? `${x.errors} errors` : ''} |`;
      }),
    );
    const report = [
      `## Read-state scenario (${started.toISOString()})`,
      '',
      `Load average (1 min) sampled after each phase: ${loadRange} (start ${loads[0]!.toFixed(2)}, end ${loads.at(-1)!.toFixed(2)}); ${os.cpus().length} CPUs.`,
      `Data: ${cases.length} tenants × ${READ_STATE_DATA.skillsPerTenant.toLocaleString('en')} skills (90% published), nothing changed inside the ` +
        `30-day window but: ${READ_STATE_DATA.editedFraction * 100}% of each subject's viewed published skills, ${READ_STATE_DATA.churn} other skills per ` +
        `tenant, and ${READ_STATE_DATA.busyChanged.toLocaleString('en')} skills of the busy tenant.` +
        (seedMs === null ? ' Reused database.' : ` Seeded in ${(seedMs / 1000).toFixed(1)} s.`),
      `Calls: createCaller, one at a time (one user's latency), whatsNew limit 20, whatsNewCount default window and cap; ` +
        `${options.rounds} interleaved rounds, ${options.seconds} s per procedure per user; markAllSeen ${options.markIterations} × ${options.rounds} calls per user, ` +
        `the rows it marked restored (untimed) after every call.`,
      '',
      '| user | skills changed in window (tenant) | unseen in window | procedure | calls | p50 ms | p95 ms | p99 ms | |',
      '|---|--:|--:|---|--:|--:|--:|--:|---|',
      ...rows,
      '',
      '### Targets',
      '',
      ...targets.map((t) => `- ${t.met ? '✅' : '❌'} ${t.name}: ${t.ratio.toFixed(2)} (load ${loadRange})`),
      '',
      '### Query plans (as the app role in a scoped transaction, 6th execution of each prepared statement)',
      '',
      ...subs.flatMap((s) => procs.flatMap((p) => [`#### ${s.label}: ${p}`, '', '```', plans[s.key]![p]!, '```', ''])),
    ].join('\n');
    console.log(`\n${report}`);
    const resultsDir = path.join(here, 'results');
    await mkdir(resultsDir, { recursive: true });
    const stamp = started.toISOString().replace(/[:.]/g, '-');
    const json = { startedAt: started.toISOString(), loads, data: READ_STATE_DATA, options, subjects: subs, stats: Object.fromEntries(stats), targets, plans };
    await writeFile(path.join(resultsDir, `${stamp}-${options.resultName}.json`), JSON.stringify(json, null, 2));
    await writeFile(path.join(resultsDir, `latest-${options.resultName}.md`), report + '\n');
    console.log(`results: bench/results/${stamp}-${options.resultName}.json, bench/results/latest-${options.resultName}.md`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}
