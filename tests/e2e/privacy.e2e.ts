// The privacy page in a real browser: pausing tracking (a visit then changes nothing), exporting every view (paged),
// forgetting them all (after a confirmation), and resuming.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoIds } from '../../db/seed.ts';
import { screenshot, startStack, trpcRequests, type Stack } from './support/stack.ts';

/** The example's export page size (client/example/src/pages/PrivacyPage.tsx). */
const exportPageSize = 5;

interface ExportedRow {
  skillId: string;
  viewCount: number;
  lastViewedVersion: number | null;
}

/** Clicks "Export my views" and returns the rows the page shows as JSON. */
async function exportOnPage(page: Page): Promise<ExportedRow[]> {
  await page.getByRole('button', { name: 'Export my views' }).click();
  const json = page.getByTestId('export-json');
  await json.waitFor();
  return JSON.parse(await json.innerText()) as ExportedRow[];
}

describe('privacy page (Ada, Acme)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it('pauses tracking: opening a skill then changes neither its view count nor its badge; resuming records again', async () => {
    const api = stack.api('ada');
    const { context, page } = await stack.newPage();
    await page.goto(`${stack.appUrl}/privacy?token=${stack.tokens.ada}`);
    const state = page.getByTestId('tracking-state');
    await expect.poll(() => state.innerText()).toContain('On');

    await page.getByRole('button', { name: 'Pause tracking' }).click();
    await expect.poll(() => state.innerText()).toContain('Paused');
    expect(await api.trackingPreference.query({})).toEqual({ enabled: false });
    await screenshot(page, 'privacy-paused');

    // Through the app, with no reload: the list, then the skill, then back.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'All skills' }).click();
    const ts = page.locator(`li[data-skill-id="${demoIds.tsFundamentals}"]`);
    await expect.poll(() => ts.innerText()).toContain('Updated');
    expect(await ts.innerText()).toContain('3 visits');
    await ts.getByRole('link', { name: 'TypeScript Fundamentals' }).click();
    await expect.poll(() => page.getByTestId('visit-status').innerText()).toContain('Tracking is paused: this visit was not recorded.');
    expect(await page.getByRole('list', { name: 'Changes' }).innerText()).toContain('v1 → v3');

    await page.goBack();
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    await page.waitForLoadState('networkidle');
    expect(await ts.innerText()).toContain('Updated');
    expect(await ts.innerText()).toContain('3 visits');
    const views = await api.viewsForSkills.query({ skillIds: [demoIds.tsFundamentals] });
    expect(views.get(demoIds.tsFundamentals)).toMatchObject({ viewCount: 3, hasUpdate: true, lastViewedVersion: 1 });
    expect((await api.changeSummary.query({ skillId: demoIds.tsFundamentals })).changes.length).toBeGreaterThan(0);

    // Resumed: the next visit is recorded.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Privacy' }).click();
    await page.getByRole('button', { name: 'Resume tracking' }).click();
    await expect.poll(() => state.innerText()).toContain('On');
    expect(await api.trackingPreference.query({})).toEqual({ enabled: true });
    await page.goto(`${stack.appUrl}/skills/${demoIds.tsFundamentals}`);
    await expect.poll(() => page.getByTestId('visit-status').innerText()).toContain('You have opened this skill 4 times');
    await context.close();
  });

  it('exports every view, page after page, then forgets them all after a confirmation: the export is empty', async () => {
    const api = stack.api('ada');
    const fromServer: ExportedRow[] = [];
    for (let cursor: string | null = null; ; ) {
      const pageOfRows: Awaited<ReturnType<typeof api.exportMyViews.query>> = await api.exportMyViews.query({ cursor, limit: 500 });
      fromServer.push(...pageOfRows.items);
      cursor = pageOfRows.nextCursor;
      if (!cursor) break;
    }
    expect(fromServer.length).toBeGreaterThan(2 * exportPageSize); // so the page needs several requests

    const { context, page } = await stack.newPage();
    const requests = trpcRequests(page);
    await page.goto(`${stack.appUrl}/privacy?token=${stack.tokens.ada}`);
    await page.getByTestId('tracking-state').waitFor();
    const rows = await exportOnPage(page);
    expect(rows.map((r) => r.skillId)).toEqual(fromServer.map((r) => r.skillId));
    expect(rows.find((r) => r.skillId === demoIds.tsFundamentals)).toMatchObject({ viewCount: 4, lastViewedVersion: 3 });
    expect(await page.getByTestId('export-result').innerText()).toContain(`${fromServer.length} views recorded.`);
    expect(await page.getByRole('link', { name: 'Download JSON' }).getAttribute('download')).toBe('my-skill-views.json');
    const exportCalls = requests.flatMap((r) => r.replace('/trpc/', '').split(',')).filter((c) => c === 'exportMyViews');
    expect(exportCalls).toHaveLength(Math.ceil(fromServer.length / exportPageSize));
    await screenshot(page, 'privacy-export');

    // Forgetting asks first; Cancel deletes nothing.
    await page.getByRole('button', { name: 'Forget my views' }).click();
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect((await api.exportMyViews.query({})).items).toHaveLength(fromServer.length);

    await page.getByRole('button', { name: 'Forget my views' }).click();
    expect(await page.getByRole('alert').innerText()).toContain('Delete all your recorded views?');
    await page.getByRole('button', { name: 'Yes, forget my views' }).click();
    await expect.poll(() => page.getByTestId('forget-status').innerText()).toBe(`Forgot ${fromServer.length} views.`);
    expect(await api.exportMyViews.query({})).toEqual({ items: [], nextCursor: null });

    // The page's own export is empty now, and nothing is left to badge or count.
    expect(await exportOnPage(page)).toEqual([]);
    expect(await page.getByTestId('export-result').innerText()).toContain('No views recorded.');
    await expect.poll(() => page.getByTestId('whats-new-count').count()).toBe(0);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'All skills' }).click();
    const ts = page.locator(`li[data-skill-id="${demoIds.tsFundamentals}"]`);
    await expect.poll(() => ts.innerText()).toContain('Not viewed yet');
    expect(await page.getByTestId('updated-count').innerText()).toContain("You're up to date");
    // Another user's views are untouched.
    expect((await stack.api('hank').exportMyViews.query({})).items.length).toBeGreaterThan(0);
    await context.close();
  });
});
