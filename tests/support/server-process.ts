// The real server (server/main.ts) as a child process, for tests that need a process to survive or to kill.
import { cleanEnv, runProcess, type Proc } from './child-process.ts';

export interface ServerProcess extends Proc {
  /** http://127.0.0.1:<port> once listening. */
  url: string;
}

/**
 * Starts `npm start`'s command (`node --import tsx server/main.ts`, directly, so signals reach the server) with
 * `env` over a clean copy of this process's environment (no DATABASE_URL or AUTH_SECRET unless given; vitest's
 * NODE_ENV=test kept), on a free port, and resolves once it prints its URL.
 */
export async function startServerProcess(env: Record<string, string>, { timeoutMs = 60_000 } = {}): Promise<ServerProcess> {
  const proc = runProcess(process.execPath, ['--import', 'tsx', 'server/main.ts'], cleanEnv({ PORT: '0', HOST: '127.0.0.1', ...env }));
  try {
    const [, url] = await proc.waitFor(/skill-views is listening on (http:\/\/\S+)/, timeoutMs);
    return Object.assign(proc, { url: url! });
  } catch (err) {
    proc.child.kill('SIGKILL');
    throw err;
  }
}
