// The environment the end-to-end server runs with: embedded PGlite, any free port, a fixed secret, no logs.

export const authSecret = 'e2e-only-secret-0123456789abcdefghijklmnop';

export function serverEnv(pgliteDir: string): NodeJS.ProcessEnv {
  return {
    NODE_ENV: 'test',
    PGLITE_DIR: pgliteDir,
    PORT: '0',
    HOST: '127.0.0.1',
    AUTH_SECRET: authSecret,
    LOG_LEVEL: 'silent',
  };
}
