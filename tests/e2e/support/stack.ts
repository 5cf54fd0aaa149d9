// One end-to-end stack per suite: the real server on its own PGlite (a copy of the seeded demo), the built example app
// served by `vite preview` with /trpc proxied to that server, and headless Debian Chromium.
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { preview } from 'vite';
import { inject } from 'vitest';
import { createClient, type SkillViewsClient } from '../../../client/index.ts';
import { demoIds } from '../../../db/seed.ts';
import { signToken } from '../../../server/auth.ts';
import { loadConfig } from '../../../server/config.ts';
import { start, type RunningServer } from '../../../server/main.ts';
import { chromiumPath, exampleConfig, screenshotDir } from './paths.ts';
import { authSecret, serverEnv } from './server-env.ts';

export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export type DemoUserKey = 'ada' | 'grace' | 'linus' | 'hank' | 'marge';

export interface Stack {
  server: RunningServer;
  /** The example app, e.g. http://127.0.0.1:41234 (no trailing slash). */
  appUrl: string;
  browser: Browser;
  /** Bearer tokens of the demo users, as `npm start` prints them. */
  tokens: Record<DemoUserKey, string>;
  /** A typed client straight to the server, acting as one demo user (for checking what the page shows). */
  api: (user: DemoUserKey) => SkillViewsClient;
  /** A fresh browser context (empty localStorage) and page. */
  newPage: () => Promise<{ context: BrowserContext; page: Page }>;
  close: () => Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-e2e-'));
  const cleanups: (() => Promise<unknown>)[] = [() => rm(dir, { recursive: true, force: true })];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  };
  try {
    const pgliteDir = path.join(dir, 'pglite');
    await cp(inject('seededPgliteDir'), pgliteDir, { recursive: true });
    const server = await start(loadConfig(serverEnv(pgliteDir)), { logger: false });
    cleanups.push(() => server.close());

    const web = await preview({
      configFile: exampleConfig,
      logLevel: 'warn',
      build: { outDir: inject('exampleDist') },
      preview: { host: '127.0.0.1', port: 0, strictPort: true, proxy: { '/trpc': { target: server.url, changeOrigin: true } } },
    });
    cleanups.push(() => web.close());
    const appUrl = web.resolvedUrls?.local[0]?.replace(/\/$/, '');
    if (!appUrl) throw new Error('vite preview did not report its address');

    const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
    cleanups.push(() => browser.close());

    const ids: Record<DemoUserKey, string> = { ada: demoIds.ada, grace: demoIds.grace, linus: demoIds.linus, hank: demoIds.hank, marge: demoIds.marge };
    const tokens = Object.fromEntries(
      Object.entries(ids).map(([key, userId]) => {
        const demo = server.demoTokens.find((u) => u.userId === userId);
        if (!demo) throw new Error(`no demo token for ${key}`);
        return [key, demo.token];
      }),
    ) as Record<DemoUserKey, string>;

    return {
      server,
      appUrl,
      browser,
      tokens,
      api: (user) => createClient({ url: `${server.url}/trpc`, getToken: () => tokens[user] }),
      newPage: async () => {
        const context = await browser.newContext({ viewport: { width: 1180, height: 860 } });
        const page = await context.newPage();
        page.setDefaultTimeout(10_000);
        return { context, page };
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A token for a demo user that expired a minute ago, correctly signed. */
export function expiredToken(user: { tenantId: string; userId: string }): Promise<string> {
  return signToken(user, authSecret, Math.floor(Date.now() / 1000) - 60);
}

/** A correctly signed token for a demo user that expires `seconds` from now. */
export function shortLivedToken(user: { tenantId: string; userId: string }, seconds: number): Promise<string> {
  return signToken(user, authSecret, `${seconds}s`);
}

/** A well-formed, unexpired token signed with the wrong key: only the server can tell it is bad. */
export function forgedToken(user: { tenantId: string; userId: string }): Promise<string> {
  return signToken(user, 'not-the-server-secret-0123456789abcdefgh', '1h');
}

/**
 * Collects the paths of the tRPC HTTP requests a page makes, e.g. "/trpc/viewsForSkills,whatsNew" for
 * a batch (the method is left out: the client sends queries as POST, see client/index.ts). The live stream
 * (an EventSource on /trpc/onChange) is not a call and is left out: see liveStreams.
 */
export function trpcRequests(page: Page): string[] {
  const seen: string[] = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/trpc/') && request.resourceType() !== 'eventsource') seen.push(decodeURIComponent(url.pathname));
  });
  return seen;
}

/** Collects the paths of the server-sent-event streams (EventSource requests) a page opens under /trpc/, e.g. "/trpc/onChange". */
export function liveStreams(page: Page): string[] {
  const seen: string[] = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/trpc/') && request.resourceType() === 'eventsource') seen.push(decodeURIComponent(url.pathname));
  });
  return seen;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(screenshotDir, { recursive: true });
  await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });
}
