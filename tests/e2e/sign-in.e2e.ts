// Signing in with a pasted token, staying signed in, signing out, and what expired or refused tokens show.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoIds } from '../../db/seed.ts';
import { expiredToken, forgedToken, screenshot, startStack, trpcRequests, type Stack } from './support/stack.ts';

const ada = { tenantId: demoIds.acme, userId: demoIds.ada };

describe('sign-in', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it('signs in with a pasted "Bearer …" line, stays signed in across reloads, and signs out', async () => {
    const { context, page } = await stack.newPage();
    const requests = trpcRequests(page);
    await page.goto(stack.appUrl);
    await page.getByRole('heading', { name: 'Sign in to Skills' }).waitFor();
    expect(requests).toEqual([]); // nothing is asked of the server without a token
    await screenshot(page, 'sign-in');

    await page.getByLabel('Bearer token').fill('not a token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    expect(await page.getByText("That doesn't look like a sign-in token.").isVisible()).toBe(true);

    await page.getByLabel('Bearer token').fill(`Bearer ${stack.tokens.grace}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    expect(await page.getByTestId('signed-in-as').innerText()).toContain('Grace Hopper');

    await page.reload();
    await page.getByRole('list', { name: 'Skills' }).waitFor();
    expect(await page.getByTestId('signed-in-as').innerText()).toContain('Grace Hopper');

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Skills' }).waitFor();
    expect(await page.evaluate(() => localStorage.getItem('skill-views.token'))).toBeNull();
    await context.close();
  });

  it('shows a sign-in message, not a crash, for an expired token', async () => {
    const { context, page } = await stack.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${stack.appUrl}/?token=${await expiredToken(ada)}`);
    const reason = page.getByTestId('sign-in-reason');
    await reason.waitFor();
    expect(await reason.innerText()).toMatch(/^Your session expired on .+\. Sign in again to continue\.$/);
    expect(errors).toEqual([]);
    await screenshot(page, 'sign-in-expired');
    await context.close();
  });

  it('shows a sign-in message when the server refuses the token (expired by its clock, or forged)', async () => {
    // The browser's clock says the token is still valid; only the server knows better.
    const { context, page } = await stack.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const statuses: number[] = [];
    page.on('response', (r) => {
      // Procedure calls only: the live stream (an EventSource request) is refused with its own 401 too.
      if (new URL(r.url()).pathname.startsWith('/trpc/') && r.request().resourceType() !== 'eventsource') statuses.push(r.status());
    });
    await page.clock.setFixedTime(Date.now() - 60 * 60 * 1000);
    await page.goto(`${stack.appUrl}/?token=${await expiredToken(ada)}`);
    const reason = page.getByTestId('sign-in-reason');
    await reason.waitFor();
    expect(await reason.innerText()).toContain('The server did not accept your token');
    // UNAUTHORIZED is not retried: the one batched request, refused.
    expect(statuses).toEqual([401]);

    await page.clock.setFixedTime(Date.now());
    await page.goto(`${stack.appUrl}/whats-new?token=${await forgedToken(ada)}`);
    await page.getByTestId('sign-in-reason').waitFor();
    expect(await page.getByTestId('sign-in-reason').innerText()).toContain('The server did not accept your token');
    expect(errors).toEqual([]);
    await screenshot(page, 'sign-in-refused');

    // Signing in again from there works.
    await page.getByLabel('Bearer token').fill(stack.tokens.ada);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('list', { name: "What's new" }).waitFor();
    await context.close();
  });
});
