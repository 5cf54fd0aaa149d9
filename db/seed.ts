// Demo data (`npm run db:seed`, and the embedded database on first start), plus the builders that write it.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eq, sql } from 'drizzle-orm';
import { pinnedSettings, type Database, type Transaction } from './client.ts';
import { skillFeedback, skills, skillVersions, tenants, users } from './schema/index.ts';

const DAY = 24 * 60 * 60 * 1000;
const daysAgo = (days: number) => new Date(Date.now() - days * DAY);

/**
 * Runs `fn` as the connecting (owner) role inside one tenant, with the session settings pinned. Tables force
 * row-level security, so even the owner writes only with the tenant set (a superuser login simply bypasses
 * it); view rows are personal, so writing them also needs `userId`, the user whose views they are.
 */
export async function asOwnerInTenant<T>(
  db: Database,
  tenantId: string,
  fn: (tx: Transaction) => Promise<T>,
  { userId }: { userId?: string } = {},
): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(
      sql`select pg_catalog.set_config('app.current_tenant_id', ${tenantId}, true), pg_catalog.set_config('app.current_user_id', ${userId ?? ''}, true), ${pinnedSettings}`,
    );
    return fn(tx);
  });
}

export interface VersionSpec {
  name: string;
  description: string;
  /** Days ago this version was created. */
  createdDaysAgo: number;
}

export interface SkillSpec {
  id?: string;
  slug: string;
  category: string;
  status?: 'draft' | 'published' | 'archived';
  /** Snapshots v1, v2, … oldest first. */
  versions: VersionSpec[];
  /** Published version number; defaults to the last one unless the skill is a draft. */
  publishedVersion?: number | null;
  /** Current name/description when they differ from the published snapshot (edited in place). */
  name?: string;
  description?: string;
  /** Days ago of the last content change; defaults to the published version's creation. */
  updatedDaysAgo?: number;
}

/** Inserts a skill with its versions; name, description and updated_at follow the published version. */
export async function insertSkill(tx: Transaction, tenantId: string, spec: SkillSpec) {
  const status = spec.status ?? 'published';
  const publishedNumber = spec.publishedVersion !== undefined ? spec.publishedVersion : status === 'draft' ? null : spec.versions.length;
  const shown = spec.versions[(publishedNumber ?? spec.versions.length) - 1];
  if (!shown) throw new Error(`skill ${spec.slug} needs at least one version`);
  const first = spec.versions[0] ?? shown;
  const updatedAt = daysAgo(spec.updatedDaysAgo ?? shown.createdDaysAgo);
  const [skill] = await tx
    .insert(skills)
    .values({
      ...(spec.id ? { id: spec.id } : {}),
      tenantId,
      name: spec.name ?? shown.name,
      slug: spec.slug,
      description: spec.description ?? shown.description,
      category: spec.category,
      status,
      createdAt: daysAgo(first.createdDaysAgo),
      updatedAt,
    })
    .returning({ id: skills.id });
  if (!skill) throw new Error('skill insert returned nothing');
  const versions = await tx
    .insert(skillVersions)
    .values(
      spec.versions.map((v, i) => ({
        tenantId,
        skillId: skill.id,
        version: i + 1,
        name: v.name,
        description: v.description,
        createdAt: daysAgo(v.createdDaysAgo),
      })),
    )
    .returning({ id: skillVersions.id, version: skillVersions.version });
  const published = versions.find((v) => v.version === publishedNumber);
  if (published) {
    // Keep the explicit updated_at: the trigger only stamps now() when updated_at is left unchanged.
    await tx
      .update(skills)
      .set({ publishedVersionId: published.id, updatedAt: new Date(updatedAt.getTime() + 1) })
      .where(eq(skills.id, skill.id));
  }
  return { id: skill.id, versionIds: versions.map((v) => v.id) };
}

/** Fixed ids, so demo tokens and links stay the same across restarts. */
export const demoIds = {
  acme: 'a1000000-0000-4000-8000-000000000001',
  globex: 'b2000000-0000-4000-8000-000000000002',
  ada: 'a1000000-0000-4000-8000-0000000000a1',
  grace: 'a1000000-0000-4000-8000-0000000000a2',
  linus: 'a1000000-0000-4000-8000-0000000000a3',
  hank: 'b2000000-0000-4000-8000-0000000000b1',
  marge: 'b2000000-0000-4000-8000-0000000000b2',
  /** Acme's skill Ada last saw at v1; now at v3 with new feedback. */
  tsFundamentals: 'a1000000-0000-4000-8000-00000000c001',
  /** Acme: Ada saw the latest version yesterday (no update). */
  sqlWindowFunctions: 'a1000000-0000-4000-8000-00000000c002',
  /** Acme: description edited in place since Ada's view, plus new feedback. */
  incidentResponse: 'a1000000-0000-4000-8000-00000000c003',
  /** Acme: published, never viewed by Ada. */
  reactPerformance: 'a1000000-0000-4000-8000-00000000c004',
  /** Globex: Hank saw v1; now at v2. */
  doomsdayDevices: 'b2000000-0000-4000-8000-00000000d001',
  /** Globex: Hank saw the current version. */
  hammockDrivenDevelopment: 'b2000000-0000-4000-8000-00000000d002',
  /** Globex: never viewed. */
  nuclearSafety: 'b2000000-0000-4000-8000-00000000d003',
} as const;

export interface DemoUser {
  tenantId: string;
  tenantName: string;
  userId: string;
  name: string;
  email: string;
}

export const demoUsers: DemoUser[] = [
  { tenantId: demoIds.acme, tenantName: 'Acme Corp', userId: demoIds.ada, name: 'Ada Lovelace', email: 'ada@acme.test' },
  { tenantId: demoIds.acme, tenantName: 'Acme Corp', userId: demoIds.grace, name: 'Grace Hopper', email: 'grace@acme.test' },
  { tenantId: demoIds.acme, tenantName: 'Acme Corp', userId: demoIds.linus, name: 'Linus Torvalds', email: 'linus@acme.test' },
  { tenantId: demoIds.globex, tenantName: 'Globex', userId: demoIds.hank, name: 'Hank Scorpio', email: 'hank@globex.test' },
  { tenantId: demoIds.globex, tenantName: 'Globex', userId: demoIds.marge, name: 'Marge Simpson', email: 'marge@globex.test' },
];

const v = (name: string, description: string, createdDaysAgo: number): VersionSpec => ({ name, description, createdDaysAgo });

type DemoFeedback = ['grace' | 'linus' | 'ada', number];
/**
 * A demo skill; `seen` is [days ago, version] of the tenant viewer's last view (the skill as it was then: that
 * version published, before later versions and in-place edits), `feedback` is [user, days ago].
 */
type DemoSkill = SkillSpec & { seen?: [number, number | null]; feedback?: DemoFeedback[] };

/** Acme's catalogue, viewed by Ada. */

const acmeSkills: DemoSkill[] = [
  {
    id: demoIds.tsFundamentals,
    slug: 'typescript-fundamentals',
    category: 'Engineering',
    versions: [
      v('TypeScript Basics', 'Types, interfaces and the compiler.', 40),
      v('TypeScript Fundamentals', 'Types, interfaces and the compiler.', 6),
      v('TypeScript Fundamentals', 'Types, interfaces, generics and strict mode.', 2),
    ],
    seen: [10, 1],
    feedback: [['ada', 9], ['grace', 5], ['linus', 1], ['grace', 20]],
  },
  {
    id: demoIds.sqlWindowFunctions,
    slug: 'sql-window-functions',
    category: 'Data',
    versions: [v('SQL Window Functions', 'OVER, PARTITION BY and frames.', 30), v('SQL Window Functions', 'OVER, PARTITION BY, frames and ranking.', 12)],
    seen: [1, 2],
  },
  {
    id: demoIds.incidentResponse,
    slug: 'incident-response',
    category: 'Operations',
    versions: [v('Incident Response', 'Paging, triage and the first hour.', 25)],
    description: 'Paging, triage, the first hour and the postmortem.',
    updatedDaysAgo: 3,
    seen: [5, 1],
    feedback: [['linus', 4]],
  },
  { slug: 'kubernetes-basics', category: 'Operations', status: 'draft', versions: [v('Kubernetes Basics', 'Pods, deployments, services.', 3)] },
  {
    id: demoIds.reactPerformance,
    slug: 'react-performance',
    category: 'Engineering',
    versions: [v('React Performance', 'Profiling renders.', 50), v('React Performance', 'Profiling renders and memo.', 35), v('React Performance', 'Profiling, memo and transitions.', 20), v('React Performance', 'Profiling, memo, transitions and the compiler.', 4)],
  },
  { slug: 'legacy-cobol', category: 'Engineering', status: 'archived', versions: [v('Legacy COBOL', 'Reading copybooks.', 300)], seen: [200, 1] },
  ...(
    [
      ['Accessible Forms', 'Design', 8, 14],
      ['Threat Modelling', 'Security', 7, 15],
      ['Writing Postmortems', 'Operations', 9, 16],
      ['GraphQL Schema Design', 'Engineering', 11, 18],
      ['Feature Flags', 'Engineering', 13, 19],
      ['Data Contracts', 'Data', 15, 21],
      ['Design Tokens', 'Design', 17, 22],
      ['OAuth and OIDC', 'Security', 19, 23],
    ] as const
  ).map(([name, category, changed, seen]): SkillSpec & { seen: [number, number] } => ({
    slug: name.toLowerCase().replace(/[^a-z0-9]+/g, '-'),
    category,
    versions: [v(name, `An introduction to ${name.toLowerCase()}.`, 60), v(name, `A practical guide to ${name.toLowerCase()}.`, changed)],
    seen: [seen, 1],
  })),
];

const globexSkills: DemoSkill[] = [
  { id: demoIds.doomsdayDevices, slug: 'doomsday-devices', category: 'Engineering', versions: [v('Doomsday Devices', 'Safety first.', 30), v('Doomsday Devices', 'Safety first, then the laser.', 2)], seen: [7, 1] },
  { id: demoIds.hammockDrivenDevelopment, slug: 'hammock-driven-development', category: 'Culture', versions: [v('Hammock-Driven Development', 'Think before you type.', 20)], seen: [1, 1] },
  { id: demoIds.nuclearSafety, slug: 'nuclear-safety', category: 'Operations', versions: [v('Nuclear Safety', 'Sector 7G procedures.', 10)] },
];

export interface DemoSeed {
  seeded: boolean;
  users: DemoUser[];
}

const feedbackAuthors = { ada: demoIds.ada, grace: demoIds.grace, linus: demoIds.linus } as const;

const iso = (date: Date) => sql`${date.toISOString()}::timestamptz`;

/** The published version number a spec ends at (as insertSkill reads it). */
function finalVersion(spec: SkillSpec): number | null {
  const status = spec.status ?? 'published';
  return spec.publishedVersion !== undefined ? spec.publishedVersion : status === 'draft' ? null : spec.versions.length;
}

/** The skill as its viewer saw it: the versions up to the one seen, that one published, no in-place edits. */
function asSeen(spec: DemoSkill, seenVersion: number | null): SkillSpec {
  const { name: _name, description: _description, updatedDaysAgo: _updated, ...rest } = spec;
  return { ...rest, versions: spec.versions.slice(0, Math.max(seenVersion ?? 1, 1)), publishedVersion: seenVersion };
}

/**
 * Brings a skill inserted as seen (asSeen) to its final state as the host app would: the later versions, then one
 * update of name, description and published version with the spec's backdated updated_at (kept by the trigger
 * because it is explicit; the content revision moves by trigger as for any edit).
 */
async function advanceSkill(tx: Transaction, tenantId: string, skillId: string, spec: DemoSkill, seenVersion: number | null) {
  const already = Math.max(seenVersion ?? 1, 1);
  const later = spec.versions.slice(already);
  if (later.length > 0) {
    await tx.insert(skillVersions).values(
      later.map((v, i) => ({
        tenantId,
        skillId,
        version: already + i + 1,
        name: v.name,
        description: v.description,
        createdAt: daysAgo(v.createdDaysAgo),
      })),
    );
  }
  const published = finalVersion(spec);
  const shown = spec.versions[(published ?? spec.versions.length) - 1];
  if (!shown) throw new Error(`skill ${spec.slug} needs at least one version`);
  const [row] = await tx
    .select({ id: skillVersions.id })
    .from(skillVersions)
    .where(sql`${skillVersions.skillId} = ${skillId} and ${skillVersions.version} = ${published ?? -1}`);
  await tx
    .update(skills)
    .set({
      name: spec.name ?? shown.name,
      description: spec.description ?? shown.description,
      publishedVersionId: row?.id ?? null,
      updatedAt: daysAgo(spec.updatedDaysAgo ?? shown.createdDaysAgo),
    })
    .where(eq(skills.id, skillId));
}

async function insertDemoFeedback(tx: Transaction, tenantId: string, skillId: string, feedback: [DemoFeedback, number][]) {
  if (feedback.length === 0) return;
  await tx.insert(skillFeedback).values(
    feedback.map(([[who, days], i]) => ({
      tenantId,
      skillId,
      userId: feedbackAuthors[who],
      feedbackType: i % 2 === 0 ? 'comment' : 'rating',
      comment: `Feedback from ${who}`,
      createdAt: daysAgo(days),
    })),
  );
}

/**
 * One demo tenant: the tenant, its demo users, its skills, the viewer's past views and colleagues' feedback.
 *
 * A view means "saw the skill as it was" (its content revision and the statement's snapshot), not a time, so the
 * history is written in the order it happened, in three transactions: (1) the catalogue as the viewer saw it,
 * with the feedback given before their view; (2) the views, recording what that statement saw, as recordView
 * does (backdated times are only for display); (3) the later versions, in-place edits and feedback, which the
 * viewer has therefore not seen: Updated badges, the what's-new feed and new feedback in change summaries.
 * Feedback must commit in a transaction of its own before or after the view: a view's snapshot does not see
 * feedback written by a transaction still in progress, its own included.
 */
async function seedDemoTenant(
  db: Database,
  tenant: { id: string; name: string; slug: string; createdDaysAgo: number },
  viewerId: string,
  catalogue: DemoSkill[],
  history: { visits: number; firstDaysBefore: number },
) {
  const ids = new Map<DemoSkill, string>();
  const indexed = (spec: DemoSkill) => (spec.feedback ?? []).map((f, i): [DemoFeedback, number] => [f, i]);
  const seenBefore = (spec: DemoSkill, [[, days]]: [DemoFeedback, number]) => !spec.seen || days > spec.seen[0];

  await asOwnerInTenant(db, tenant.id, async (tx) => {
    await tx.insert(tenants).values({ id: tenant.id, name: tenant.name, slug: tenant.slug, createdAt: daysAgo(tenant.createdDaysAgo) });
    await tx.insert(users).values(
      demoUsers.filter((u) => u.tenantId === tenant.id).map((u) => ({ id: u.userId, tenantId: u.tenantId, email: u.email, name: u.name })),
    );
    for (const spec of catalogue) {
      const skill = await insertSkill(tx, tenant.id, spec.seen ? asSeen(spec, spec.seen[1]) : spec);
      ids.set(spec, skill.id);
      await insertDemoFeedback(tx, tenant.id, skill.id, indexed(spec).filter((f) => seenBefore(spec, f)));
    }
  });

  await asOwnerInTenant(
    db,
    tenant.id,
    async (tx) => {
      for (const spec of catalogue) {
        if (!spec.seen) continue;
        const [days] = spec.seen;
        // What recordView stores: the published version, content revision and snapshot this statement sees.
        await tx.execute(sql`
          insert into user_skill_views
            (tenant_id, user_id, skill_id, first_viewed_at, last_viewed_at, last_viewed_version, view_count,
             seen_revision, seen_feedback)
          select s.tenant_id, ${viewerId}::uuid, s.id, ${iso(daysAgo(days + history.firstDaysBefore))}, ${iso(daysAgo(days))},
                 pv.version, ${history.visits}::int, s.content_revision, s.feedback_seq
          from skills s left join skill_versions pv on pv.id = s.published_version_id
          where s.tenant_id = ${tenant.id}::uuid and s.id = ${ids.get(spec)!}::uuid`);
      }
    },
    { userId: viewerId },
  );

  await asOwnerInTenant(db, tenant.id, async (tx) => {
    for (const spec of catalogue) {
      if (!spec.seen) continue;
      const skillId = ids.get(spec)!;
      await advanceSkill(tx, tenant.id, skillId, spec, spec.seen[1]);
      await insertDemoFeedback(tx, tenant.id, skillId, indexed(spec).filter((f) => !seenBefore(spec, f)));
    }
  });
}

/** Seeds the demo tenants once; returns seeded: false when they already exist. */
export async function seedDemo(db: Database): Promise<DemoSeed> {
  const existing = await asOwnerInTenant(db, demoIds.acme, (tx) =>
    tx.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, demoIds.acme)),
  );
  if (existing.length > 0) return { seeded: false, users: demoUsers };

  await seedDemoTenant(db, { id: demoIds.acme, name: 'Acme Corp', slug: 'acme', createdDaysAgo: 400 }, demoIds.ada, acmeSkills, { visits: 3, firstDaysBefore: 30 });
  await seedDemoTenant(db, { id: demoIds.globex, name: 'Globex', slug: 'globex', createdDaysAgo: 300 }, demoIds.hank, globexSkills, { visits: 1, firstDaysBefore: 5 });
  return { seeded: true, users: demoUsers };
}

// `npm run db:seed`: migrate and seed DATABASE_URL, or the embedded database in PGLITE_DIR.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { loadConfig } = await import('../server/config.ts');
  const { createDb } = await import('./client.ts');
  const { migrate, MigrationError } = await import('./migrate.ts');
  const config = loadConfig();
  const { DataDirLockedError } = await import('./pglite-lock.ts');
  let handle: ReturnType<typeof createDb>;
  try {
    handle = config.DATABASE_URL
      ? createDb({ url: config.DATABASE_URL, poolSize: 1, prepare: config.DB_PREPARE })
      : createDb({ pgliteDir: config.PGLITE_DIR });
  } catch (err) {
    if (!(err instanceof DataDirLockedError)) throw err;
    console.error(err.message);
    process.exit(1);
  }
  try {
    await migrate(handle, { appRole: config.DB_APP_ROLE, url: config.DATABASE_DIRECT_URL });
    const result = await seedDemo(handle.db);
    console.log(result.seeded ? 'seeded the demo tenants' : 'demo tenants already present; nothing to do');
  } catch (err) {
    if (!(err instanceof MigrationError)) throw err;
    console.error(err.message);
    process.exitCode = 1;
  } finally {
    await handle.close();
  }
}
