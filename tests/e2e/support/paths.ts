// Fixed locations the end-to-end tests rely on.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const exampleConfig = path.join(repoRoot, 'client/example/vite.config.ts');
export const screenshotDir = path.join(repoRoot, 'test-results/e2e');
/** Debian's chromium package; the tests never download a browser. */
export const chromiumPath = '/usr/bin/chromium';
