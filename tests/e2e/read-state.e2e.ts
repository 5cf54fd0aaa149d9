// The read state in a real browser: the nav count (and "999+" at the cap), and "Mark all as seen" clearing every
// badge, the feed and the count at once without a reload (optimistic), rolled back when the server refuses.
import type { Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoIds } from '../../db/seed.ts';
import { screenshot, startStack, trpcRequests, type Stack } from './support/stack.ts';

/** Holds every tRPC request that calls one of `procedures` until released; then lets it through (or aborts it). */
function holdRequests(page: Page, ...procedures: string[]) {
  const held: Route[] = [];
  let release: (how: 'continue' | 'abort') => void = () => {};
  const released = new Promise<'continue' | 'abort'>((resolve) => (release = resolve));
  const calls = (url: URL) => (url.pathname.startsWith('/trpc/') ? url.pathname.replace('/trpc/', '').split(',') : []);
  const routed = page.route((url) => calls(url).some((c) => procedures.includes(c)), async (route) => {
    held.push(route);
    const how = await released;
    await (how === 'continue' ? route.continue() : route.abort('failed'));
  });
  return { held, release, routed };
}

/** What the page shows about unseen changes: rows with an Updated badge, and the nav count (null: none). */
async function readState(page: Page) {
  const list = page.getByRole('list', { name: 'Skills' });
  const rows = list.locator('li');
  const updated: string[] = [];
  for (const row of await rows.all()) {
    if ((await row.locator('.badge', { hasText: 'Updated' }).count()) > 0) updated.push((await row.getAttribute('data-skill-id')) ?? '?');
  }
  const count = page.getByTestId('whats-new-count');
  return { updated: updated.sort(), navCount: (await count.count()) > 0 ? await count.innerText() : null };
}

describe('read state: nav count and mark all as seen (Ada, Acme)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it("shows the what's-new count in the nav, equal to the feed, and lowers it after a visit", async () => {
    const api = stack.api('ada');
    const count = await api.whatsNewCount.query({});
    const feed = await api.whatsNew.query({ limit: 50 });
    expect(count).toEqual({ count: feed.items.length, capped: false });
    expect(count.count).toBeGreaterThan(2);

    const { context, page } = await stack.newPage();
    await page.goto(`${stack.appUrl}/?token=${stack.tokens.ada}`);
    const nav = page.getByRole('navigation', { name: 'Main' });
    await expect.poll(() => page.getByTestId('whats-new-count').innerText()).toBe(String(count.count));
    expect(await nav.getByRole('link', { name: /What's new/ }).innerText()).toContain(String(count.count));
    await screenshot(page, 'nav-count');

    // A visit of an updated skill takes it out of the count, with no reload.
    await page.locator(`li[data-skill-id="${demoIds.tsFundamentals}"]`).getByRole('link').click();
    await expect.poll(() => page.getByTestId('visit-status').innerText()).toContain('You have opened this skill 4 times');
    await expect.poll(() => page.getByTestId('whats-new-count').innerText()).toBe(String(count.count - 1));
    expect(await api.whatsNewCount.query({})).toEqual({ count: count.count - 1, capped: false });
    await context.close();
  });

  it('shows "999+" when the server stopped counting at its cap', async () => {
    const { context, page } = await stack.newPage();
    // The demo has a dozen skills: the server's answer is rewritten to what a busy user gets at the cap.
    await page.route('**/trpc/**', async (route) => {
      const calls = new URL(route.request().url()).pathname.replace('/trpc/', '').split(',');
      const at = calls.indexOf('whatsNewCount');
      if (at < 0) return route.continue();
      const response = await route.fetch();
      const body = (await response.json()) as { result: { data: { json: unknown } } }[];
      body[at]!.result.data.json = { count: 999, capped: true };
      await route.fulfill({ response, json: body });
    });
    await page.goto(`${stack.appUrl}/whats-new?token=${stack.tokens.ada}`);
    await expect.poll(() => page.getByTestId('whats-new-count').innerText()).toBe('999+');
    await context.close();
  });

  it('puts every badge and the count back when the server refuses "Mark all as seen"', async () => {
    const { context, page } = await stack.newPage();
    await page.goto(`${stack.appUrl}/?token=${stack.tokens.ada}`);
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    await expect.poll(() => page.getByTestId('whats-new-count').isVisible()).toBe(true);
    const before = await readState(page);
    expect(before.updated.length).toBeGreaterThan(1);

    const { release, routed } = holdRequests(page, 'markAllSeen');
    await routed;
    await page.getByRole('button', { name: 'Mark all as seen' }).click();
    // Cleared at once, while the call is in flight...
    await expect.poll(() => readState(page)).toEqual({ updated: [], navCount: null });
    // ...and back as they were when it fails, from the cache (the refetches that follow are held).
    const refetches = holdRequests(page, 'viewsForSkills', 'whatsNew', 'whatsNewCount');
    await refetches.routed;
    release('abort');
    await expect.poll(() => readState(page)).toEqual(before);
    expect(refetches.held.length).toBeGreaterThan(0);
    // The mutation settles (and says so) once the refetches it asked for are back.
    refetches.release('continue');
    await expect.poll(() => page.getByRole('alert').innerText()).toContain('Could not mark everything as seen.');
    await page.waitForLoadState('networkidle');
    expect(await readState(page)).toEqual(before);
    expect((await stack.api('ada').whatsNewCount.query({})).count).toBe(Number(before.navCount));
    await context.close();
  });

  it('"Mark all as seen" clears every badge, the count and the feed at once, without a reload, and the server agrees', async () => {
    const api = stack.api('ada');
    const countBefore = await api.whatsNewCount.query({});
    expect(countBefore.count).toBeGreaterThan(0);

    const { context, page } = await stack.newPage();
    await page.goto(`${stack.appUrl}/?token=${stack.tokens.ada}`);
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    await expect.poll(() => page.getByTestId('whats-new-count').innerText()).toBe(String(countBefore.count));
    const before = await readState(page);
    // Badges on skills both the catalogue and only the feed know about.
    expect(before.updated).toEqual(expect.arrayContaining([demoIds.incidentResponse]));
    expect(before.updated.length).toBeGreaterThan(3);
    // A marker in the page's memory: a reload would lose it.
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'same page'));

    const { held, release, routed } = holdRequests(page, 'markAllSeen');
    await routed;
    const requests = trpcRequests(page);
    await page.getByRole('button', { name: 'Mark all as seen' }).click();

    // Every badge and the count are gone while the server has not answered yet: the cache was updated at once.
    await expect.poll(() => readState(page)).toEqual({ updated: [], navCount: null });
    expect(await page.getByTestId('updated-count').innerText()).toContain("You're up to date");
    expect(held).toHaveLength(1);
    expect(await api.whatsNewCount.query({})).toEqual(countBefore);
    await screenshot(page, 'mark-all-seen');

    const answered = page.waitForResponse((r) => new URL(r.url()).pathname.includes('markAllSeen'));
    release('continue');
    expect((await answered).status()).toBe(200);
    // Then what it touched is fetched again (invalidated), and stays clear.
    await expect
      .poll(() => requests.filter((r) => r.includes('whatsNewCount') || r.includes('viewsForSkills')).length)
      .toBeGreaterThan(0);
    await page.waitForLoadState('networkidle');
    expect(await readState(page)).toEqual({ updated: [], navCount: null });
    expect(await api.whatsNewCount.query({})).toEqual({ count: 0, capped: false });
    // Seen is not a visit: every row still tells its visits.
    for (const skillId of before.updated) {
      expect(await page.locator(`li[data-skill-id="${skillId}"]`).innerText()).toMatch(/Last opened .+ · 3 visits/);
    }
    const views = await api.viewsForSkills.query({ skillIds: before.updated });
    expect(views.size).toBe(before.updated.length);
    expect([...views.values()].filter((v) => v.hasUpdate || v.viewCount !== 3)).toEqual([]);

    // The feed is empty too, reached through the nav: still the same page, never reloaded.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: /What's new/ }).click();
    await expect.poll(() => page.getByRole('heading', { name: "You're all caught up" }).isVisible()).toBe(true);
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe('same page');
    await context.close();
  });
});
