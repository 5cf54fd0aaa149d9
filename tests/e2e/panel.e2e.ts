// The tRPC panel the server serves at /panel: it loads, and whatsNew succeeds once an Authorization header is set.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { screenshot, startStack, type Stack } from './support/stack.ts';

describe('tRPC panel', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.close());

  it('lists the procedures and calls whatsNew with a pasted bearer token', async () => {
    const { context, page } = await stack.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${stack.server.url}/panel`);
    // A procedure's button is named "<KIND> <name> Chevron Icon" (so 'QUERY whatsNew' alone would also match whatsNewCount).
    const procedure = (name: string) => page.getByRole('button', { name: new RegExp(`^${name} Chevron`) });
    for (const name of [
      'MUTATION recordView',
      'QUERY viewsForSkills',
      'QUERY whatsNew',
      'QUERY whatsNewCount',
      'QUERY changeSummary',
      'MUTATION markSeen',
      'MUTATION markAllSeen',
      'QUERY trackingPreference',
      'MUTATION setTracking',
      'QUERY exportMyViews',
      'MUTATION forgetMyViews',
      // Listed (README: the panel cannot stream it; trpc-ui has no subscription link).
      'SUBSCRIPTION onChange',
    ]) {
      await procedure(name).waitFor();
    }

    await procedure('QUERY whatsNew').click();
    const execute = /Execute whatsNew(?!Count)/;
    const isWhatsNew = (url: string) => new URL(url).pathname === '/trpc/whatsNew';
    const form = page.locator('form', { has: page.getByRole('button', { name: execute }) });
    // The panel's client-side check rejects whatsNew's optional input (its schema has a default and a
    // transform), so send it unchecked and let the server validate it.
    await form.getByRole('checkbox', { name: 'Validate Input on Client' }).uncheck();

    // Without a token: the server refuses.
    const anonymous = page.waitForResponse((r) => isWhatsNew(r.url()));
    await form.getByRole('button', { name: execute }).click();
    expect((await anonymous).status()).toBe(401);

    // The Headers dialog: Add a row, fill Key and Value, Confirm.
    await page.getByRole('button', { name: 'Headers' }).click();
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.getByPlaceholder('Enter value for Key').fill('Authorization');
    await page.getByPlaceholder('Enter value for Value').fill(`Bearer ${stack.tokens.ada}`);
    await page.getByRole('button', { name: 'Confirm' }).click();

    const authorised = page.waitForResponse((r) => isWhatsNew(r.url()));
    await form.getByRole('button', { name: execute }).click();
    const response = await authorised;
    expect(response.status()).toBe(200);
    expect(response.request().headers().authorization).toBe(`Bearer ${stack.tokens.ada}`);
    await page.getByText(/^Response \(/).waitFor();
    await page.getByText('"TypeScript Fundamentals"').first().waitFor();
    expect(errors).toEqual([]);
    await screenshot(page, 'panel-whats-new');
    await context.close();
  });
});
