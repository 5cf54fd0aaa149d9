// The browser client bundles without server, database or Node-only code: it imports the server as types only.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** What only server-side code brings into a bundle. */
const forbidden: [name: string, pattern: RegExp][] = [
  ['drizzle', /drizzle/i],
  ['postgres', /postgres/i],
  ['pglite', /pglite/i],
  ['fastify', /fastify/i],
  ['jose', /\bjose\b/i],
  ['pino', /\bpino\b/i],
  ['zod', /\bzod\b/i],
  // As an import: tRPC's client mentions `node:vm` in a comment.
  ['node: import', /(?:\bfrom|\bimport|\brequire)\s*\(?\s*["']node:/],
  // Vite's stand-in for a Node built-in imported by browser code.
  ['node built-in stub', /__vite-browser-external/],
  // React reads process.env.NODE_ENV (library mode leaves it for the app's bundler); nothing else may.
  ['process.env', /process\.env\.(?!NODE_ENV\b)/],
  ['server code', /createCallerFactory|tenantProcedure/],
];

/** Bundles the entries for the browser in library mode, with every dependency inlined; returns all JS output. */
async function bundle(outDir: string, entry: Record<string, string>): Promise<string> {
  await build({
    configFile: false,
    root,
    logLevel: 'silent',
    publicDir: false,
    build: {
      outDir,
      emptyOutDir: true,
      minify: false,
      lib: { entry, formats: ['es'] },
    },
  });
  const files = (await readdir(outDir, { recursive: true })).filter((f) => f.endsWith('.js'));
  const texts = await Promise.all(files.map((f) => readFile(path.join(outDir, f), 'utf8')));
  return texts.join('\n');
}

function found(code: string): string[] {
  return forbidden.filter(([, pattern]) => pattern.test(code)).map(([name]) => name);
}

describe('client bundle', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'skill-views-bundle-'));
  });
  afterAll(() => rm(tmp, { recursive: true, force: true }));

  it('client/index.ts and client/react.ts bundle for the browser with no server, database or Node code', async () => {
    const code = await bundle(path.join(tmp, 'client'), {
      index: path.join(root, 'client/index.ts'),
      react: path.join(root, 'client/react.ts'),
    });
    // It is the real client: tRPC's batching link, superjson, the React Query integration.
    expect(code).toContain('httpBatchLink');
    expect(code).toContain('superjson');
    expect(code).toContain('useRecordView');
    expect(code).toContain('useMarkAllSeen');
    expect(code).toContain('useWhatsNewCount');
    expect(code).toContain('QueryClient');
    expect(found(code)).toEqual([]);
  });

  it('the example app, built as for production, is just as clean', async () => {
    const outDir = path.join(tmp, 'example');
    const nodeEnv = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production'; // vitest's NODE_ENV=test would select React's development build
    try {
      await build({
        configFile: path.join(root, 'client/example/vite.config.ts'),
        mode: 'production',
        logLevel: 'silent',
        build: { outDir, emptyOutDir: true },
      });
    } finally {
      process.env.NODE_ENV = nodeEnv;
    }
    const files = (await readdir(outDir, { recursive: true })).filter((f) => f.endsWith('.js'));
    const code = (await Promise.all(files.map((f) => readFile(path.join(outDir, f), 'utf8')))).join('\n');
    expect(code).toContain('/trpc');
    expect(found(code)).toEqual([]);
    expect(code).not.toContain('process.env');
  });

  it('would catch a value import of the server (the check is not vacuous)', async () => {
    // A client that imports the router as a value instead of a type.
    const leaky = path.join(tmp, 'leaky-client.ts');
    await writeFile(leaky, `export { appRouter } from ${JSON.stringify(path.join(root, 'server/router.ts'))};\n`);
    const code = await bundle(path.join(tmp, 'leaky'), { leaky });
    expect(found(code)).toEqual(expect.arrayContaining(['drizzle', 'server code']));
  });
});
