// The skills list in a real browser: one batched request, "Updated" badges, the skill page's change summary, and
// the badge gone after the visit is recorded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoIds } from '../../db/seed.ts';
import { screenshot, startStack, trpcRequests, type Stack } from './support/stack.ts';

describe('skills list and skill page (Ada, Acme)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it("sends the list page's initial queries as one HTTP request and takes the token from ?token=", async () => {
    const { context, page } = await stack.newPage();
    const requests = trpcRequests(page);
    await page.goto(`${stack.appUrl}/?token=${stack.tokens.ada}`);
    const list = page.getByRole('list', { name: 'Skills' });
    await list.waitFor();
    await page.waitForLoadState('networkidle');

    expect(requests).toHaveLength(1);
    // The list's badges and feed, and the nav count.
    expect(requests[0]?.replace('/trpc/', '').split(',').sort()).toEqual(['viewsForSkills', 'whatsNew', 'whatsNewCount']);
    // The token left the address bar (and so the history) for localStorage.
    expect(page.url()).not.toContain('token=');
    expect(await page.evaluate(() => localStorage.getItem('skill-views.token'))).toBe(stack.tokens.ada);

    await expect.poll(() => page.getByTestId('signed-in-as').innerText()).toContain('Ada Lovelace');
    // Catalogue skills and skills found only through the feed are both listed.
    const names = await list.locator('.skill-name').allInnerTexts();
    expect(names).toEqual(expect.arrayContaining(['TypeScript Fundamentals', 'SQL Window Functions', 'React Performance', 'Feature Flags']));
    await screenshot(page, 'skills-list');
    await context.close();
  });

  it('shows Updated on TypeScript Fundamentals, opens it with "v1 → v3" and 2 new feedback, and the badge is gone on return', async () => {
    const { context, page } = await stack.newPage();
    await page.goto(`${stack.appUrl}/?token=${stack.tokens.ada}`);
    const row = (skillId: string) => page.locator(`li[data-skill-id="${skillId}"]`);
    const ts = row(demoIds.tsFundamentals);

    await expect.poll(() => ts.innerText()).toContain('Updated');
    // Controls: a skill Ada saw at its latest version, and one she never opened.
    expect(await row(demoIds.sqlWindowFunctions).innerText()).not.toContain('Updated');
    expect(await row(demoIds.reactPerformance).innerText()).toContain('Not viewed yet');
    expect(await ts.innerText()).toContain('Last opened 10 days ago · 3 visits');

    await ts.getByRole('link', { name: 'TypeScript Fundamentals' }).click();
    await page.waitForURL(`**/skills/${demoIds.tsFundamentals}`);
    await expect.poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe('TypeScript Fundamentals');
    const changes = page.getByRole('list', { name: 'Changes' });
    await changes.waitFor();
    // The visit is recorded after the summary was read; the summary on screen stays what it was at open.
    await expect.poll(() => page.getByTestId('visit-status').innerText()).toContain('You have opened this skill 4 times');
    const changeText = await changes.innerText();
    expect(changeText).toContain('v1 → v3');
    expect(changeText).toContain('Details edited: name, description');
    expect(changeText).toContain('2 new feedback');
    expect(await page.getByText('You last looked 10 days ago, at v1.').count()).toBe(1);
    await screenshot(page, 'skill-page');

    // The server agrees the visit was recorded.
    const views = await stack.api('ada').viewsForSkills.query({ skillIds: [demoIds.tsFundamentals] });
    expect(views.get(demoIds.tsFundamentals)).toMatchObject({ hasUpdate: false, viewCount: 4, lastViewedVersion: 3 });

    await page.goBack();
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    await expect.poll(() => ts.innerText()).toContain('Last opened just now · 4 visits');
    expect(await ts.innerText()).not.toContain('Updated');
    // Other badges are untouched.
    expect(await row(demoIds.incidentResponse).innerText()).toContain('Updated');
    await screenshot(page, 'skills-list-after-visit');

    // Opening it again: nothing new since the visit just made.
    await ts.getByRole('link', { name: 'TypeScript Fundamentals' }).click();
    await expect.poll(() => page.getByTestId('visit-status').innerText()).toContain('You have opened this skill 5 times');
    expect(await page.getByTestId('no-changes').innerText()).toBe('Nothing has changed since your last visit.');
    await context.close();
  });

  it('shows a not-found state for a skill of another tenant', async () => {
    const { context, page } = await stack.newPage();
    const requests = trpcRequests(page);
    await page.goto(`${stack.appUrl}/skills/${demoIds.doomsdayDevices}?token=${stack.tokens.ada}`);
    await expect.poll(() => page.getByRole('alert').innerText()).toContain('Skill not found');
    // NOT_FOUND is not retried (the error shows only after retries, so a retry would be counted here),
    // and no view is recorded, in either tenant. The nav count may share the request.
    const calls = requests.flatMap((r) => r.replace('/trpc/', '').split(','));
    expect(calls.filter((c) => c !== 'whatsNewCount')).toEqual(['changeSummary']);
    const views = await stack.api('hank').viewsForSkills.query({ skillIds: [demoIds.doomsdayDevices] });
    expect(views.get(demoIds.doomsdayDevices)?.viewCount).toBe(1);
    await context.close();
  });
});
