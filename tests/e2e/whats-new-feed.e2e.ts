// The what's-new feed in a real browser: keyset pages through "Load more" (useInfiniteQuery), empty state, tenant scope.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoIds } from '../../db/seed.ts';
import { screenshot, startStack, trpcRequests, type Stack } from './support/stack.ts';

/** The example's page size (client/example/src/pages/WhatsNewPage.tsx). */
const pageSize = 4;

describe("what's new", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it('pages through the whole feed with Load more, in the server order, each skill once', async () => {
    const expected = (await stack.api('ada').whatsNew.query({ limit: 50 })).items.map((i) => i.name);
    expect(expected.length).toBeGreaterThan(2 * pageSize); // the seed gives Ada more than two pages

    const { context, page } = await stack.newPage();
    const requests = trpcRequests(page);
    await page.goto(`${stack.appUrl}/whats-new?token=${stack.tokens.ada}`);
    const feed = page.getByRole('list', { name: "What's new" });
    const names = () => feed.locator('.skill-name').allInnerTexts();
    await feed.waitFor();
    expect(await names()).toEqual(expected.slice(0, pageSize));
    const first = await feed.locator('li').first().innerText();
    expect(first).toContain('TypeScript Fundamentals');
    expect(first).toContain('v1 → v3');
    expect(first).toContain('you last looked 10 days ago');

    const loadMore = page.getByRole('button', { name: 'Load more' });
    let pages = 1;
    while (pages * pageSize < expected.length) {
      await loadMore.click();
      pages += 1;
      await expect.poll(names).toEqual(expected.slice(0, pages * pageSize));
    }
    await screenshot(page, 'whats-new');
    // The server returned a cursor with the last full page, so the last click may find nothing more.
    if (await loadMore.isVisible()) {
      await loadMore.click();
      await expect.poll(() => loadMore.isVisible()).toBe(false);
    }
    expect(await names()).toEqual(expected);
    expect(await page.getByText("That's everything that changed in the last 30 days.").isVisible()).toBe(true);
    // One request per page: the first (with the nav count), then one per Load more.
    expect(new Set(requests.slice(1)), requests.join(' ')).toEqual(new Set(['/trpc/whatsNew']));
    expect(requests[0]?.replace('/trpc/', '').split(',').sort()).toEqual(['whatsNew', 'whatsNewCount']);
    expect(requests.length).toBeGreaterThanOrEqual(Math.ceil(expected.length / pageSize));
    expect(requests.length).toBeLessThanOrEqual(Math.ceil(expected.length / pageSize) + 1);
    await context.close();
  });

  it("shows only the caller's tenant, and an empty state for someone with nothing new", async () => {
    const { context, page } = await stack.newPage();
    await page.goto(`${stack.appUrl}/whats-new?token=${stack.tokens.hank}`);
    const feed = page.getByRole('list', { name: "What's new" });
    await feed.waitFor();
    expect(await feed.locator('.skill-name').allInnerTexts()).toEqual(['Doomsday Devices']);
    expect(await feed.locator(`li[data-skill-id="${demoIds.doomsdayDevices}"]`).innerText()).toContain('v1 → v2');
    expect(await page.getByRole('button', { name: 'Load more' }).count()).toBe(0);
    await context.close();

    const marge = await stack.newPage();
    await marge.page.goto(`${stack.appUrl}/whats-new?token=${stack.tokens.marge}`);
    await expect.poll(() => marge.page.getByRole('heading', { name: "You're all caught up" }).isVisible()).toBe(true);
    await screenshot(marge.page, 'whats-new-empty');
    await marge.context.close();
  });
});
