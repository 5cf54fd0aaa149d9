// Live badges in a real browser: with the example app open, an owner's catalogue edit turns the skill's "Updated" badge
// on and bumps the nav count without a reload, over one onChange stream shared by the shell and the live indicator.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoIds } from '../../db/seed.ts';
import { editSkill } from '../support/factory.ts';
import { liveStreams, screenshot, shortLivedToken, startStack, trpcRequests, type Stack } from './support/stack.ts';

describe('live updates (Ada, Acme)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it("an owner's edit turns the Updated badge on and bumps the nav count, with no reload", async () => {
    const skillId = demoIds.sqlWindowFunctions;
    const ada = stack.api('ada');
    // Ada has seen this skill as it is now: no badge to start with.
    await ada.recordView.mutate({ skillId });
    const before = await ada.whatsNewCount.query({});
    expect(before.capped).toBe(false);

    const { context, page } = await stack.newPage();
    const streams = liveStreams(page);
    await page.goto(`${stack.appUrl}/?token=${stack.tokens.ada}`);
    const row = page.locator(`li[data-skill-id="${skillId}"]`);
    const count = page.getByTestId('whats-new-count');
    const live = page.getByTestId('live-status');
    await expect.poll(() => row.innerText()).toContain('Last opened just now');
    expect(await row.innerText()).not.toContain('Updated');
    await expect.poll(() => count.innerText()).toBe(String(before.count));
    await expect.poll(() => live.innerText()).toBe('Live');
    expect(await live.getAttribute('data-status')).toBe('live');

    // Anything that reloads the document or changes its address would show here.
    await page.evaluate(() => {
      (window as unknown as { liveMarker: string }).liveMarker = 'still here';
    });
    let navigations = 0;
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });
    const url = page.url();

    // The host app edits the skill's description in place, as the database owner.
    await editSkill(stack.server.db, { tenantId: demoIds.acme }, skillId, { description: `Edited live at ${new Date().toISOString()}` });

    await expect.poll(() => row.innerText(), { timeout: 5_000 }).toContain('Updated');
    await expect.poll(() => count.innerText(), { timeout: 5_000 }).toBe(String(before.count + 1));
    // The server agrees: one more item, and this skill has an update.
    expect(await ada.whatsNewCount.query({})).toEqual({ count: before.count + 1, capped: false });
    expect((await ada.viewsForSkills.query({ skillIds: [skillId] })).get(skillId)?.hasUpdate).toBe(true);
    // Other rows are as they were: the React Performance skill Ada never opened still says so.
    expect(await page.locator(`li[data-skill-id="${demoIds.reactPerformance}"]`).innerText()).toContain('Not viewed yet');

    // No reload, no navigation: the same document, same address.
    expect(await page.evaluate(() => (window as unknown as { liveMarker?: string }).liveMarker)).toBe('still here');
    expect(navigations).toBe(0);
    expect(page.url()).toBe(url);
    // One stream for the whole app, though the shell and the indicator both use it; still live.
    expect(streams).toEqual(['/trpc/onChange']);
    expect(await live.innerText()).toBe('Live');
    await screenshot(page, 'live-badge');
    await context.close();
  });

  it('the stream follows client-side navigation without reopening, and what\'s new lists the edited skill live', async () => {
    const skillId = demoIds.reactPerformance;
    const ada = stack.api('ada');
    await ada.recordView.mutate({ skillId });
    const { context, page } = await stack.newPage();
    const streams = liveStreams(page);
    await page.goto(`${stack.appUrl}/whats-new?token=${stack.tokens.ada}`);
    const live = page.getByTestId('live-status');
    await expect.poll(() => live.innerText()).toBe('Live');
    const feed = page.getByRole('list', { name: "What's new" });
    await feed.waitFor();
    expect(await feed.innerText()).not.toContain('React Performance');

    await editSkill(stack.server.db, { tenantId: demoIds.acme }, skillId, { name: 'React Performance, revised' });
    await expect.poll(() => feed.innerText(), { timeout: 5_000 }).toContain('React Performance, revised');

    // In-app navigation keeps the one stream.
    await page.getByRole('link', { name: 'All skills' }).click();
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    await expect.poll(() => page.locator(`li[data-skill-id="${skillId}"]`).innerText()).toContain('Updated');
    expect(streams).toEqual(['/trpc/onChange']);
    expect(await live.innerText()).toBe('Live');
    await context.close();
  });

  it('a token that expires while the page is open ends the stream and the app asks to sign in again, without a reload', async () => {
    const token = await shortLivedToken({ tenantId: demoIds.acme, userId: demoIds.ada }, 4);
    const { context, page } = await stack.newPage();
    const requests = trpcRequests(page);
    await page.goto(`${stack.appUrl}/?token=${token}`);
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    await expect.poll(() => page.getByTestId('live-status').innerText()).toBe('Live');
    await page.evaluate(() => {
      (window as unknown as { liveMarker: string }).liveMarker = 'still here';
    });
    // A fresh stream's `ready` is followed by the last 10 s of news (the earlier tests' edits of this tenant), which
    // may refetch once; after that nothing asks the server.
    await page.waitForTimeout(1_000);
    const before = requests.length;

    // Nothing else asks the server meanwhile (queries stay fresh for 30 s): only the stream can tell the app.
    await page.getByTestId('sign-in-reason').waitFor({ timeout: 10_000 });
    expect(await page.getByTestId('sign-in-reason').innerText()).toMatch(/session expired|did not accept your token/);
    expect(await page.evaluate(() => (window as unknown as { liveMarker?: string }).liveMarker)).toBe('still here');
    // The stream's UNAUTHORIZED said so itself: no call was made after the stream was live.
    expect(requests).toHaveLength(before);
    await context.close();
  });
});
