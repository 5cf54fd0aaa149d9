// The README's `npm start`, as a child process on a fresh embedded database: serve, panel, demo tokens, clean SIGTERM.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createClient } from '../client/index.ts';
import { demoIds } from '../db/seed.ts';
import { cleanEnv, root, runProcess, type Proc } from './support/child-process.ts';

/** The environment of a newcomer's shell: no DATABASE_URL, AUTH_SECRET or NODE_ENV (vitest sets NODE_ENV=test). */
function newcomerEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const { NODE_ENV: _env, ...rest } = cleanEnv();
  return { ...rest, ...extra };
}

/**
 * Runs the `start` script's command, `tsx server/main.ts`, from node_modules/.bin as npm would. Not through
 * `npx`/`npm start`: those run it under `sh -c`, which does not pass a SIGTERM on, so the signal would never
 * reach the server (a supervisor should signal the server process, or the whole process group).
 */
const run = (env: NodeJS.ProcessEnv): Proc => runProcess(path.join(root, 'node_modules', '.bin', 'tsx'), ['server/main.ts'], env);
const waitFor = (r: Proc, pattern: RegExp, timeoutMs: number) => r.waitFor(pattern, timeoutMs);

// npm start runs the same code built (node dist/server/main.js): tests/package.test.ts starts the built server from the
// installed package. Building here too would race with that suite's build of dist/.
describe('npm start (the server process, run from source with tsx)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('migrates and seeds a fresh embedded database, serves /healthz, /panel and tRPC with a printed token, and exits 0 on SIGTERM', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'skill-views-npm-start-'));
    const r = run(newcomerEnv({ PORT: '0', PGLITE_DIR: path.join(dir, 'pglite'), LOG_LEVEL: 'warn' }));
    cleanups.push(async () => {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        // After a failed assertion: SIGTERM first, which tsx passes on (a SIGKILL of tsx would orphan the server).
        r.child.kill('SIGTERM');
        const stopped = await Promise.race([r.exited.then(() => true), new Promise((resolve) => setTimeout(resolve, 10_000, false))]);
        if (!stopped) r.child.kill('SIGKILL');
        await r.exited;
      }
      await rm(dir, { recursive: true, force: true });
    });

    const [, url] = await waitFor(r, /skill-views is listening on (http:\/\/[^\s]+) \(embedded PGlite/, 100_000);
    // The whole banner is one write; the curl example is its last line.
    await waitFor(r, /curl .*\/trpc\/whatsNew\?input=/, 5_000);
    const tokens = [...r.output().matchAll(/^ {4}Bearer ([A-Za-z0-9_\-.]+)$/gm)].map((m) => m[1]!);
    expect(tokens).toHaveLength(5);

    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });

    const panel = await fetch(`${url}/panel`);
    expect(panel.status).toBe(200);
    expect(panel.headers.get('content-type')).toMatch(/text\/html/);
    const html = await panel.text();
    for (const name of ['recordView', 'viewsForSkills', 'whatsNew', 'whatsNewCount', 'changeSummary', 'markAllSeen', 'exportMyViews']) {
      expect(html).toContain(name);
    }

    // The first printed token is Ada's (Acme): her seeded feed holds TypeScript Fundamentals, now at v3.
    const client = createClient({ url: `${url}/trpc`, getToken: () => tokens[0] });
    const feed = await client.whatsNew.query({});
    expect(feed.items.length).toBeGreaterThan(0);
    expect(feed.items.find((i) => i.slug === 'typescript-fundamentals')).toMatchObject({ currentVersion: 3, lastViewedVersion: 1 });
    expect(feed.items[0]?.updatedAt).toBeInstanceOf(Date);
    // The seeded history under the read state: a view is what Ada saw then, so later versions, in-place edits
    // and colleagues' feedback are new; a skill seen at its current content is not.
    const { tsFundamentals, sqlWindowFunctions, incidentResponse, reactPerformance } = demoIds;
    const views = await client.viewsForSkills.query({ skillIds: [tsFundamentals, sqlWindowFunctions, incidentResponse, reactPerformance] });
    expect(Object.fromEntries([...views].map(([id, v]) => [id, v.hasUpdate]))).toEqual({
      [tsFundamentals]: true,
      [sqlWindowFunctions]: false,
      [incidentResponse]: true,
    });
    const fullFeed = await client.whatsNew.query({ limit: 50 });
    expect(fullFeed.items.length).toBeGreaterThan(8);
    expect(await client.whatsNewCount.query({})).toEqual({ count: fullFeed.items.length, capped: false });
    expect((await client.changeSummary.query({ skillId: tsFundamentals })).changes).toEqual([
      { kind: 'version_bump', from: 1, to: 3 },
      { kind: 'details_updated', fields: ['name', 'description'] },
      { kind: 'new_feedback', count: 2 },
    ]);
    expect((await client.changeSummary.query({ skillId: incidentResponse })).changes).toEqual([
      { kind: 'details_updated', fields: ['description'] },
      { kind: 'new_feedback', count: 1 },
    ]);
    expect((await client.changeSummary.query({ skillId: sqlWindowFunctions })).changes).toEqual([]);
    const anonymous = await fetch(`${url}/trpc/whatsNew`);
    expect(anonymous.status).toBe(401);

    r.child.kill('SIGTERM');
    const exit = await r.exited;
    expect(exit, r.output()).toEqual({ code: 0, signal: null });
    expect(r.output()).toContain('SIGTERM received');
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  }, 120_000);

  it('stops with exit code 1 and a message naming the variable when the configuration is bad', async () => {
    const r = run(newcomerEnv({ PORT: 'abc', LOG_LEVEL: 'loud' }));
    cleanups.push(async () => {
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    });
    const exit = await r.exited;
    expect(exit.code, r.output()).toBe(1);
    expect(r.output()).toMatch(/Invalid configuration:/);
    expect(r.output()).toMatch(/^ {2}PORT: /m);
    expect(r.output()).toMatch(/^ {2}LOG_LEVEL: /m);
    expect(r.output()).not.toMatch(/listening/);
  }, 60_000);
});
