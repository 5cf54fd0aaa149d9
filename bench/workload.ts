// What each benchmark call does: random sessions and inputs per procedure, and the procedures' SQL for the raw floor.
import type { SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Executor } from '../db/client.ts';
import { changeSummary } from '../db/queries/change-summary.ts';
import { WHATS_NEW_COUNT_CAP, whatsNew, whatsNewCount, type FeedPlan } from '../db/queries/feed.ts';
import { scopeStatement } from '../db/queries/tenant-transaction.ts';
import { markSeen, recordView, viewsForSkills } from '../db/queries/views.ts';
import { WHATS_NEW_DEFAULTS } from '../server/routers/views.ts';
import { skillId, tenantId, userId, viewedSkill, type Scale } from './seed.ts';

export const procedures = ['recordView', 'viewsForSkills', 'whatsNew', 'whatsNewCount', 'changeSummary', 'markAllSeen'] as const;
export type Procedure = (typeof procedures)[number];
/**
 * Procedures that clear read state for everything the caller viewed: measured after all the others (their own
 * rounds at the end of the run), so the reads measured before see the seeded state, not a partly cleared one.
 */
export const clearingProcedures: readonly Procedure[] = ['markAllSeen'];

export const VIEWS_FOR_SKILLS_IDS = 100;
export const WHATS_NEW_LIMIT = 20;
/** Sessions drawn per run, shared by every mode; bounded so the HTTP server's token cache holds them all. */
export const MAX_SESSIONS = 2000;

export interface Session {
  tenantId: string;
  userId: string;
}

export type Call =
  | { procedure: 'recordView'; session: Session; input: { skillId: string } }
  | { procedure: 'viewsForSkills'; session: Session; input: { skillIds: string[] } }
  | { procedure: 'whatsNew'; session: Session; input: { limit: number } }
  | { procedure: 'whatsNewCount'; session: Session; input: Record<string, never> }
  | { procedure: 'changeSummary'; session: Session; input: { skillId: string } }
  | { procedure: 'markAllSeen'; session: Session; input: Record<string, never> };

/** mulberry32: small, fast and seedable, so runs draw the same sequence. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SessionEntry extends Session {
  t: number;
  u: number;
}

/** All ids of a scale, computed (not read) once, and a generator of random calls. */
export class Workload {
  readonly sessions: SessionEntry[];
  private readonly skillIds: string[][];

  constructor(readonly scale: Scale) {
    this.skillIds = Array.from({ length: scale.tenants }, (_, t) =>
      Array.from({ length: scale.skillsPerTenant }, (_, s) => skillId(scale, t, s)),
    );
    const perTenant = Math.min(scale.usersPerTenant, Math.ceil(MAX_SESSIONS / scale.tenants));
    const pick = rng(7);
    this.sessions = [];
    for (let t = 0; t < scale.tenants; t++) {
      const users = new Set<number>();
      while (users.size < perTenant) users.add(Math.floor(pick() * scale.usersPerTenant));
      for (const u of users) this.sessions.push({ t, u, tenantId: tenantId(t), userId: userId(scale, t, u) });
    }
  }

  /**
   * A random call. `lane` (the concurrent caller's index and the number of callers): markAllSeen draws only from
   * that caller's share of the sessions, so no two concurrent callers mark the same user's rows at once. Two such
   * statements for one user crash the Postgres 15 backend (SIGSEGV in the UPDATE's EvalPlanQual recheck of its
   * subplans, which restarts the whole server; BENCHMARKS.md, "Read state"), so the benchmark does not do it.
   */
  next(procedure: Procedure, random: () => number, lane?: { index: number; count: number }): Call {
    const { sessions, scale } = this;
    const pick = () => {
      if (procedure !== 'markAllSeen' || !lane || lane.count <= 1) return sessions[Math.floor(random() * sessions.length)]!;
      const share = Math.ceil((sessions.length - lane.index) / lane.count);
      if (share <= 0) return sessions[Math.floor(random() * sessions.length)]!;
      return sessions[lane.index + lane.count * Math.floor(random() * share)]!;
    };
    const entry = pick();
    const session = { tenantId: entry.tenantId, userId: entry.userId };
    const skills = this.skillIds[entry.t]!;
    const anySkill = () => skills[Math.floor(random() * skills.length)]!;
    switch (procedure) {
      case 'recordView':
        return { procedure, session, input: { skillId: anySkill() } };
      case 'viewsForSkills': {
        // A list page: distinct random skills of the tenant (about a fifth of them viewed by the caller).
        const picked = new Set<string>();
        while (picked.size < VIEWS_FOR_SKILLS_IDS) picked.add(anySkill());
        return { procedure, session, input: { skillIds: [...picked] } };
      }
      case 'whatsNew':
        return { procedure, session, input: { limit: WHATS_NEW_LIMIT } };
      case 'whatsNewCount':
        // The nav badge: default window and cap.
        return { procedure, session, input: {} };
      case 'markAllSeen':
        return { procedure, session, input: {} };
      case 'changeSummary': {
        // Mostly a skill the caller viewed before (the interesting case), sometimes a first visit.
        const viewed = random() < 0.8;
        const s = viewed ? viewedSkill(scale, entry.u, Math.floor(random() * scale.viewsPerUser)) : -1;
        return { procedure, session, input: { skillId: viewed ? skills[s]! : anySkill() } };
      }
    }
  }
}

/** One bind parameter of a captured statement: a value of the call, the probe's window start, or a constant. */
type ParamSource = { from: 'tenant' | 'user' | 'skill' | 'skillIds' | 'role' | 'since' } | { from: 'constant'; value: unknown };

export interface StatementTemplate {
  text: string;
  params: ParamSource[];
}

/**
 * What one call sends: one statement, or (whatsNew, whatsNewCount) the probe, then the statement of the plan the
 * probe's numbers choose (db/queries/feed.ts, FeedPlan), bound with the window start the probe returned.
 */
export type ProcedureTemplate =
  | { kind: 'single'; statement: StatementTemplate }
  | { kind: 'probed'; probe: StatementTemplate; plans: Record<FeedPlan, StatementTemplate> };

export type Templates = { scope: StatementTemplate } & Record<Procedure, ProcedureTemplate>;

const sentinel = {
  role: 'bench_sentinel_role',
  tenant: '0000000a-0000-4000-8000-00000000000a',
  user: '0000000b-0000-4000-8000-00000000000b',
  skill: '0000000c-0000-4000-8000-00000000000c',
  since: '1999-09-09T09:09:09.090909Z',
};

/**
 * The plan the feed's probe row chooses: the same rule as db/queries/feed.ts (`probe`), restated here because the
 * raw floor replays the statements without the query function. Checked at capture: see captureStatements.
 */
export function planOfProbe(row: Record<string, unknown>): FeedPlan {
  return Number(row.views) < Number(row.changed) ? 'views' : 'skills';
}

/**
 * The exact SQL the query functions send, captured by running them on an executor that records instead of
 * executing, with sentinel values that mark which bind parameter is which. The raw floor replays it. For the
 * probed procedures the recorder answers the probe with numbers that choose each plan in turn, so both plans'
 * statements are captured (and the rule planOfProbe restates is checked against the query function's choice).
 */
export async function captureStatements(appRole: string): Promise<Templates> {
  const dialect = new PgDialect({ casing: 'snake_case' });
  const toTemplate = (query: { sql: string; params: unknown[] }): StatementTemplate => ({
    text: query.sql,
    params: query.params.map((value): ParamSource => {
      if (value === sentinel.role) return { from: 'role' };
      if (value === sentinel.tenant) return { from: 'tenant' };
      if (value === sentinel.user) return { from: 'user' };
      if (value === sentinel.skill) return { from: 'skill' };
      if (value === sentinel.since) return { from: 'since' };
      if (value === `{${sentinel.skill}}`) return { from: 'skillIds' };
      return { from: 'constant', value };
    }),
  });
  /** Runs `run` on a recorder; `answers[i]` are the rows the i-th statement gets back. */
  const record = async (run: (db: Executor) => Promise<unknown>, answers: unknown[][] = []) => {
    const captured: StatementTemplate[] = [];
    const recorder = {
      execute: async (statement: SQL) => {
        captured.push(toTemplate(dialect.sqlToQuery(statement)));
        return answers[captured.length - 1] ?? [];
      },
    } as unknown as Executor;
    await run(recorder);
    if (captured.length === 0) throw new Error('query function sent nothing');
    return captured;
  };
  const single = async (run: (db: Executor) => Promise<unknown>): Promise<ProcedureTemplate> => {
    const [statement, ...rest] = await record(run);
    if (rest.length > 0) throw new Error('expected one statement');
    return { kind: 'single', statement: statement! };
  };
  const probed = async (run: (db: Executor) => Promise<unknown>): Promise<ProcedureTemplate> => {
    const answers: Record<FeedPlan, { since: string; views: number; changed: number }> = {
      views: { since: sentinel.since, views: 5, changed: 50 },
      skills: { since: sentinel.since, views: 50, changed: 5 },
    };
    const plans = {} as Record<FeedPlan, StatementTemplate>;
    let probe: StatementTemplate | null = null;
    for (const plan of ['views', 'skills'] as const) {
      if (planOfProbe(answers[plan]) !== plan) throw new Error('planOfProbe disagrees with itself');
      const [p, main, ...rest] = await record(run, [[answers[plan]]]);
      if (!p || !main || rest.length > 0) throw new Error('expected a probe and one statement');
      probe = p;
      plans[plan] = main;
    }
    // The two captures differ (else the query function ignored the probe, or planOfProbe's rule is not its rule),
    // and at a tie (both sides at the probe's cap) the query function chooses what planOfProbe says.
    if (plans.views.text === plans.skills.text) throw new Error('the probe chose the same statement for both plans');
    const tie = { since: sentinel.since, views: 1000, changed: 1000 };
    const [, atTie] = await record(run, [[tie]]);
    if (atTie?.text !== plans[planOfProbe(tie)].text) throw new Error('planOfProbe disagrees with the query function at a tie');
    return { kind: 'probed', probe: probe!, plans };
  };
  const viewer = { tenantId: sentinel.tenant, userId: sentinel.user };
  const scopeTemplate = toTemplate(dialect.sqlToQuery(scopeStatement({ role: sentinel.role, ...viewer })));
  return {
    scope: { ...scopeTemplate, params: scopeTemplate.params.map((p) => (p.from === 'role' ? { from: 'constant', value: appRole } : p)) },
    recordView: await single((db) => recordView(db, viewer, sentinel.skill)),
    viewsForSkills: await single((db) => viewsForSkills(db, viewer, [sentinel.skill])),
    // The window (and cap) the router applies when the caller gives none, as the calls here do.
    whatsNew: await probed((db) => whatsNew(db, viewer, { limit: WHATS_NEW_LIMIT, windowDays: WHATS_NEW_DEFAULTS.windowDays, cursor: null })),
    whatsNewCount: await probed((db) =>
      whatsNewCount(db, viewer, { windowDays: WHATS_NEW_DEFAULTS.windowDays, cap: WHATS_NEW_COUNT_CAP.default }),
    ),
    changeSummary: await single((db) => changeSummary(db, viewer, sentinel.skill)),
    markAllSeen: await single((db) => markSeen(db, viewer, null)),
  };
}

/** Bind parameters of `template` for one call. */
export function bindParams(template: StatementTemplate, call: Call, since?: string): unknown[] {
  return template.params.map((p) => {
    switch (p.from) {
      case 'constant':
        return p.value;
      case 'since':
        if (since !== undefined) return since;
        throw new Error(`${call.procedure}: the window start comes from the probe`);
      case 'tenant':
        return call.session.tenantId;
      case 'user':
        return call.session.userId;
      case 'skill':
        if ('skillId' in call.input) return call.input.skillId;
        throw new Error(`${call.procedure} has no skillId`);
      case 'skillIds':
        if ('skillIds' in call.input) return `{${[...new Set(call.input.skillIds)].join(',')}}`;
        throw new Error(`${call.procedure} has no skillIds`);
      case 'role':
        throw new Error('role is bound at capture');
    }
  });
}
