// The example's built-in catalogue matches the seed and the running server, checked through the typed client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCode } from '../../client/index.ts';
import { demoCatalogue } from '../../client/example/src/catalogue.ts';
import { demoIds, demoUsers } from '../../db/seed.ts';
import { startStack, type DemoUserKey, type Stack } from './support/stack.ts';

const firstUser: Record<string, DemoUserKey> = { [demoIds.acme]: 'ada', [demoIds.globex]: 'hank' };

describe('example catalogue', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it('names the seeded tenants and users, and only skill ids the seed fixes', () => {
    const seededIds = new Set<string>(Object.values(demoIds));
    expect(Object.keys(demoCatalogue).sort()).toEqual([demoIds.acme, demoIds.globex].sort());
    for (const [tenantId, tenant] of Object.entries(demoCatalogue)) {
      const users = demoUsers.filter((u) => u.tenantId === tenantId);
      expect(tenant.name).toBe(users[0]?.tenantName);
      expect(tenant.users).toEqual(Object.fromEntries(users.map((u) => [u.userId, u.name])));
      for (const skill of tenant.skills) expect(seededIds.has(skill.id), skill.name).toBe(true);
    }
    expect(demoCatalogue[demoIds.acme]?.skills.map((s) => s.id)).toContain(demoIds.tsFundamentals);
  });

  it("finds every catalogue skill in its own tenant and none in the other's", async () => {
    for (const [tenantId, tenant] of Object.entries(demoCatalogue)) {
      const own = stack.api(firstUser[tenantId]!);
      const other = stack.api(tenantId === demoIds.acme ? 'hank' : 'ada');
      for (const skill of tenant.skills) {
        const summary = await own.changeSummary.query({ skillId: skill.id });
        expect(summary.skillId).toBe(skill.id);
        const refused = await other.changeSummary.query({ skillId: skill.id }).then(
          () => null,
          (err: unknown) => errorCode(err),
        );
        expect(refused).toBe('NOT_FOUND');
      }
    }
  });

  it('agrees with the server on the names it can see, through the typed client (superjson Map and Dates)', async () => {
    for (const user of ['ada', 'hank'] as const) {
      const client = stack.api(user);
      const feed = await client.whatsNew.query({ limit: 50 });
      const catalogue = Object.values(demoCatalogue).flatMap((t) => t.skills);
      for (const item of feed.items) {
        const listed = catalogue.find((s) => s.id === item.skillId);
        if (listed) expect({ name: listed.name, slug: listed.slug, category: listed.category }).toEqual({ name: item.name, slug: item.slug, category: item.category });
      }
      const views = await client.viewsForSkills.query({ skillIds: feed.items.map((i) => i.skillId) });
      expect(views).toBeInstanceOf(Map);
      for (const view of views.values()) expect(view.lastViewedAt).toBeInstanceOf(Date);
    }
    const adaFeed = await stack.api('ada').whatsNew.query({ limit: 50 });
    expect(adaFeed.items.map((i) => i.skillId)).toEqual(expect.arrayContaining([demoIds.tsFundamentals, demoIds.incidentResponse]));
  });
});
