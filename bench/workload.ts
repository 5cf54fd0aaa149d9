// What each benchmark call does: random sessions and inputs per procedure, and the procedures' SQL for the raw floor.
import type { SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Executor } from '../db/client.ts';
import { changeSummary } from '../db/queries/change-summary.ts';
import { whatsNew } from '../db/queries/feed.ts';
import { scopeStatement } from '../db/queries/tenant-transaction.ts';
import { recordView, viewsForSkills } from '../db/queries/views.ts';
import { WHATS_NEW_DEFAULTS } from '../server/routers/views.ts';
import { skillId, tenantId, userId, viewedSkill, type Scale } from './seed.ts';

export const procedures = ['recordView', 'viewsForSkills', 'whatsNew', 'changeSummary'] as const;
export type Procedure = (typeof procedures)[number];

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
  | { procedure: 'changeSummary'; session: Session; input: { skillId: string } };

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

  next(procedure: Procedure, random: () => number): Call {
    const { sessions, scale } = this;
    const entry = sessions[Math.floor(random() * sessions.length)]!;
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
      case 'changeSummary': {
        // Mostly a skill the caller viewed before (the interesting case), sometimes a first visit.
        const viewed = random() < 0.8;
        const s = viewed ? viewedSkill(scale, entry.u, Math.floor(random() * scale.viewsPerUser)) : -1;
        return { procedure, session, input: { skillId: viewed ? skills[s]! : anySkill() } };
      }
    }
  }
}

/** One bind parameter of a captured statement: a value of the call, or a constant. */
type ParamSource = { from: 'tenant' | 'user' | 'skill' | 'skillIds' | 'role' } | { from: 'constant'; value: unknown };

export interface StatementTemplate {
  text: string;
  params: ParamSource[];
}

const sentinel = {
  role: 'bench_sentinel_role',
  tenant: '0000000a-0000-4000-8000-00000000000a',
  user: '0000000b-0000-4000-8000-00000000000b',
  skill: '0000000c-0000-4000-8000-00000000000c',
};

/**
 * The exact SQL the query functions send, captured by running them on an executor that records instead of
 * executing, with sentinel values that mark which bind parameter is which. The raw floor replays it.
 */
export function captureStatements(appRole: string): { scope: StatementTemplate } & Record<Procedure, StatementTemplate> {
  const dialect = new PgDialect({ casing: 'snake_case' });
  let captured: { sql: string; params: unknown[] } | null = null;
  const recorder = {
    execute: async (statement: SQL) => {
      captured = dialect.sqlToQuery(statement);
      return [];
    },
  } as unknown as Executor;
  const template = (run: () => unknown): StatementTemplate => {
    captured = null;
    void run();
    const query = captured as { sql: string; params: unknown[] } | null;
    if (!query) throw new Error('query function sent nothing');
    return {
      text: query.sql,
      params: query.params.map((value): ParamSource => {
        if (value === sentinel.role) return { from: 'role' };
        if (value === sentinel.tenant) return { from: 'tenant' };
        if (value === sentinel.user) return { from: 'user' };
        if (value === sentinel.skill) return { from: 'skill' };
        if (value === `{${sentinel.skill}}`) return { from: 'skillIds' };
        return { from: 'constant', value };
      }),
    };
  };
  const viewer = { tenantId: sentinel.tenant, userId: sentinel.user };
  const scope = template(() => {
    captured = dialect.sqlToQuery(scopeStatement({ role: sentinel.role, ...viewer }));
  });
  return {
    scope: { ...scope, params: scope.params.map((p) => (p.from === 'role' ? { from: 'constant', value: appRole } : p)) },
    recordView: template(() => recordView(recorder, viewer, sentinel.skill)),
    viewsForSkills: template(() => viewsForSkills(recorder, viewer, [sentinel.skill])),
    // The window the router applies when the caller gives none, as the calls here do.
    whatsNew: template(() => whatsNew(recorder, viewer, { limit: WHATS_NEW_LIMIT, windowDays: WHATS_NEW_DEFAULTS.windowDays, cursor: null })),
    changeSummary: template(() => changeSummary(recorder, viewer, sentinel.skill)),
  };
}

/** Bind parameters of `template` for one call. */
export function bindParams(template: StatementTemplate, call: Call): unknown[] {
  return template.params.map((p) => {
    switch (p.from) {
      case 'constant':
        return p.value;
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
