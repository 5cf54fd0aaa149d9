// `npm run token`: mints a bearer token the server accepts (HS256 with AUTH_SECRET, or the development secret), printed alone on stdout.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Config } from './config.ts';
import { isValidSession, type Session } from './session.ts';

// The rest is imported once the arguments are good, so a usage error answers at once; the server's modules
// (server/main.ts brings Fastify) and the database driver load only when needed.

export const USAGE = `Usage: npm run token -- --tenant <uuid> --user <uuid> [--expires <duration>] [--no-check]

Prints a bearer token (HS256, claims sub, tid, exp) for a user of a tenant, signed with AUTH_SECRET or,
outside production when it is unset, with the development secret npm start keeps beside PGLITE_DIR.

  --tenant <uuid>        the tenant id (claim tid)
  --user <uuid>          the user id (claim sub)
  --expires <duration>   lifetime: 90s, 30m, 24h, 7d, 2w, 1y (default 24h)
  --no-check             with DATABASE_URL set, skip checking that the user exists in the tenant

Example:  TOKEN=$(npm run -s token -- --tenant <uuid> --user <uuid>)`;

/** Durations jose's setExpirationTime understands, positive and in the future only. */
const duration = /^[1-9]\d*\s?(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?|y|yrs?|years?)$/i;

class UsageError extends Error {}

interface Args {
  session: Session;
  expires: string;
  check: boolean;
}

export function parseTokenArgs(argv: string[]): Args {
  let values: { tenant?: string; user?: string; expires?: string; 'no-check'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        tenant: { type: 'string' },
        user: { type: 'string' },
        expires: { type: 'string', default: '24h' },
        'no-check': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) throw new UsageError('');
  const problems: string[] = [];
  if (!values.tenant) problems.push('--tenant is required');
  if (!values.user) problems.push('--user is required');
  const session = { tenantId: values.tenant?.toLowerCase() ?? '', userId: values.user?.toLowerCase() ?? '' };
  if (values.tenant && values.user && !isValidSession(session)) problems.push('--tenant and --user must be uuids');
  const expires = values.expires!.trim();
  if (!duration.test(expires)) problems.push(`--expires must be a duration such as 30m, 24h or 7d (got "${values.expires}")`);
  if (problems.length > 0) throw new UsageError(problems.join('\n'));
  return { session, expires, check: !values['no-check'] };
}

/** Whether the user exists in the tenant, asked as the server does: as the app role, under row-level security. */
async function userExists(config: Config & { DATABASE_URL: string }, session: Session): Promise<boolean> {
  const [{ createDb }, users] = await Promise.all([import('../db/client.ts'), import('../db/queries/users.ts')]);
  const handle = createDb({ url: config.DATABASE_URL, poolSize: 1, prepare: config.DB_PREPARE, requestTimeoutMs: config.REQUEST_TIMEOUT_MS });
  try {
    return await users.userExists(handle.db, config.DB_APP_ROLE, session);
  } finally {
    await handle.close();
  }
}

/** Runs the command; returns its exit code: 0 (token printed), 1 (configuration or database), 2 (usage). */
export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseTokenArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (!err.message) {
      console.log(USAGE); // --help
      return 0;
    }
    console.error(`${err.message}\n\n${USAGE}`);
    return 2;
  }
  const { loadConfigOrReport } = await import('./config.ts');
  const config = loadConfigOrReport();
  if (!config) return 1;
  // Without DATABASE_URL the embedded database is not opened: the running server holds it.
  if (config.DATABASE_URL && args.check) {
    let exists: boolean;
    try {
      exists = await userExists({ ...config, DATABASE_URL: config.DATABASE_URL }, args.session);
    } catch (err) {
      console.error(`Could not check the user in DATABASE_URL: ${(err as Error).message}\n(--no-check skips the check)`);
      return 1;
    }
    if (!exists) {
      console.error(
        `No user ${args.session.userId} in tenant ${args.session.tenantId} in DATABASE_URL: the server would refuse this token.\n(--no-check mints it anyway)`,
      );
      return 1;
    }
  }
  const [{ resolveAuthSecret }, { signToken }] = await Promise.all([import('./main.ts'), import('./auth.ts')]);
  const secret = await resolveAuthSecret(config);
  process.stdout.write(`${await signToken(args.session, secret, args.expires)}\n`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
