// recordView's upsert: first view inserts, repeats increment and return the previous row, concurrency is exact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.ts';
import { recordView, withTenantTransaction } from '../db/queries/index.ts';
import { engines } from './support/engines.ts';
import { tracked } from './support/callers.ts';
import { APP_ROLE, createTenant, skillSpec } from './support/factory.ts';

describe.each(engines)('recordView on $name', (engine) => {
  let h: DbHandle;
  beforeAll(async () => {
    h = await engine.open({ poolSize: 20 });
  });
  afterAll(() => h.close());

  it('inserts a first view with count 1 and the published version, then increments', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('s', { versionCount: 3 })] });
    const scope = { role: APP_ROLE, tenantId: t.tenantId, userId: t.userIds[0]! };
    const skillId = t.skills.s!;
    const first = tracked((await withTenantTransaction(h.db, scope, (tx) => recordView(tx, scope, skillId)))!);
    expect(first.previous).toBeNull();
    expect(first.view).toMatchObject({ skillId, viewCount: 1, lastViewedVersion: 3 });
    const second = tracked((await withTenantTransaction(h.db, scope, (tx) => recordView(tx, scope, skillId)))!);
    expect(second.view.viewCount).toBe(2);
    expect(second.previous).toEqual(first.view);
    expect(second.view.lastViewedAt.getTime()).toBeGreaterThanOrEqual(first.view.lastViewedAt.getTime());
  });

  it('N concurrent upserts of the same row add exactly N', async () => {
    const t = await createTenant(h.db, { skills: [skillSpec('s')] });
    const scope = { role: APP_ROLE, tenantId: t.tenantId, userId: t.userIds[0]! };
    const n = engine.name === 'postgres' ? 200 : 50;
    const results = await Promise.all(
      Array.from({ length: n }, () => withTenantTransaction(h.db, scope, (tx) => recordView(tx, scope, t.skills.s!))),
    );
    const views = results.map((r) => tracked(r!));
    const counts = views.map((r) => r.view.viewCount).sort((a, b) => a - b);
    expect(counts).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    for (const r of views) expect(r.previous?.viewCount ?? 0).toBe(r.view.viewCount - 1);
  });
});
