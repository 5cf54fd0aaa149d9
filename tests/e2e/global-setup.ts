// End-to-end run set-up: check for Debian's Chromium, build the example app once, and seed one PGlite
// data directory that each suite copies (a fresh migrate-and-seed costs seconds; a copy, almost nothing).
import { access, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from 'vite';
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../../server/config.ts';
import { start } from '../../server/main.ts';
import { chromiumPath, exampleConfig } from './support/paths.ts';
import { serverEnv } from './support/server-env.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The example app, built once per run (index.html and assets). */
    exampleDist: string;
    /** A PGlite data directory, migrated and seeded with the demo by the real server's start(). */
    seededPgliteDir: string;
  }
}

export default async function setup(project: TestProject) {
  try {
    await access(chromiumPath);
  } catch {
    throw new Error(`${chromiumPath} is missing: install Debian's chromium (apt-get install -y chromium); no browser is downloaded.`);
  }
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'skill-views-e2e-app-'));
  const outDir = path.join(tmp, 'dist');
  // vitest runs with NODE_ENV=test, which would make Vite bundle React's development build.
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({ configFile: exampleConfig, mode: 'production', logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  } finally {
    process.env.NODE_ENV = nodeEnv;
  }
  project.provide('exampleDist', outDir);

  const seeded = path.join(tmp, 'pglite');
  const server = await start(loadConfig(serverEnv(seeded)), { logger: false });
  await server.close();
  project.provide('seededPgliteDir', seeded);
  return () => rm(tmp, { recursive: true, force: true });
}
