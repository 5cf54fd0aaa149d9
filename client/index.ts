// Typed tRPC client for skill-views: superjson, batched HTTP, bearer token from getToken.
import { createTRPCClient, httpBatchLink, TRPCClientError } from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
// Types only: the browser bundle must never pull server, database or Node code.
import type { AppRouter } from '../server/router.ts';
import { createClientTransformer } from './transformer.ts';

export type { AppRouter };
export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;

export interface ClientOptions {
  /** The server's tRPC endpoint, e.g. http://localhost:3000/trpc */
  url: string;
  /** Returns the bearer token to send (sync or async); omit or return null to call anonymously. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** A fetch implementation (tests, server-side rendering, custom agents). */
  fetch?: typeof globalThis.fetch;
  /** Most procedure calls sent in one HTTP request; the server accepts up to 50. */
  maxBatchItems?: number;
}

/** The links, shared by the vanilla client and the React integration. */
export function createLinks(options: ClientOptions) {
  return [
    httpBatchLink<AppRouter>({
      url: options.url,
      transformer: createClientTransformer(),
      maxItems: options.maxBatchItems ?? 50,
      // Queries go as POST: 500 skill ids would not fit in a URL (Node refuses request heads over 16 KiB).
      methodOverride: 'POST',
      ...(options.fetch ? { fetch: options.fetch } : {}),
      async headers() {
        const token = await options.getToken?.();
        return token ? { authorization: `Bearer ${token}` } : {};
      },
    }),
  ];
}

export function createClient(options: ClientOptions) {
  return createTRPCClient<AppRouter>({ links: createLinks(options) });
}

export type SkillViewsClient = ReturnType<typeof createClient>;

/** The tRPC error code of a failed call (e.g. 'UNAUTHORIZED'), or null for other errors. */
export function errorCode(error: unknown): string | null {
  if (error instanceof TRPCClientError) {
    const code = (error.data as { code?: unknown } | undefined)?.code;
    return typeof code === 'string' ? code : null;
  }
  return null;
}

export { TRPCClientError };
