// Typed tRPC client for skill-views: superjson, batched HTTP for calls, server-sent events for the onChange
// subscription, bearer token from getToken.
import { createTRPCClient, httpBatchLink, httpSubscriptionLink, splitLink, TRPCClientError, type TRPCLink } from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import { observable } from '@trpc/server/observable';
// Types only: the browser bundle must never pull server, database or Node code.
import type { LiveEvent } from '../server/live.ts';
import type { AppRouter } from '../server/router.ts';
import { createClientTransformer } from './transformer.ts';

export type { AppRouter };
export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;

/**
 * What `onChange` delivers: `{ id, data }`, where `id` is the position to resume from (the link sends it back
 * as `lastEventId` when it reconnects) and `data` is a LiveEvent: `{ kind: 'ready' }` (first event of a fresh
 * stream), `{ kind: 'changed', skillId, reasons: ('content' | 'feedback')[] }` (a skill the caller viewed has
 * unseen content or new feedback by someone else) or `{ kind: 'resync' }` (the server cannot prove nothing was
 * missed: refetch everything about views).
 */
export type { LiveEvent };

/** The EventSource members tRPC's subscription link uses: the browser's, or e.g. the `eventsource` package's on Node. */
export type EventSourceConstructor = new (
  url: string,
  init?: any,
) => {
  readonly CLOSED: number;
  readonly CONNECTING: number;
  readonly OPEN: number;
  readyState: number;
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
};

export interface ClientOptions {
  /** The server's tRPC endpoint, e.g. http://localhost:3000/trpc */
  url: string;
  /** Returns the bearer token to send (sync or async); omit or return null to call anonymously. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** A fetch implementation (tests, server-side rendering, custom agents). */
  fetch?: typeof globalThis.fetch;
  /** Most procedure calls sent in one HTTP request; the server accepts up to 50. */
  maxBatchItems?: number;
  /**
   * The EventSource class subscriptions (`onChange`) use; default `globalThis.EventSource` when the client is made
   * (every browser). Node 20 has none: pass the `eventsource` package's (`import { EventSource } from 'eventsource'`);
   * without one, subscribing fails with a TRPCClientError saying so.
   */
  EventSource?: EventSourceConstructor;
}

/** Stands in for the subscription link when there is no EventSource: a subscription fails saying what to pass. */
function noEventSourceLink(): TRPCLink<AppRouter> {
  return () => () =>
    observable((observer) => {
      observer.error(new TRPCClientError('No EventSource to subscribe with: pass ClientOptions.EventSource (on Node, the eventsource package)'));
      return () => {};
    });
}

/**
 * The links, shared by the vanilla client and the React integration: subscriptions go over server-sent events
 * (`GET <url>/onChange`, tRPC's httpSubscriptionLink), everything else in batched POSTs.
 *
 * Auth on the stream: an EventSource cannot send headers, so the token rides in tRPC's `connectionParams`
 * (`{ token }`, serialised into the URL, which the server keeps out of its logs). getToken is asked again on
 * every (re)connection, so a refreshed token is used from the next one on. A missing or refused token is an
 * HTTP 401 before any stream opens; a token that expires mid-stream ends it with UNAUTHORIZED.
 */
export function createLinks(options: ClientOptions) {
  const transformer = createClientTransformer();
  const EventSource = options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
  return [
    splitLink<AppRouter>({
      condition: (op) => op.type === 'subscription',
      true: EventSource
        ? httpSubscriptionLink<AppRouter, EventSourceConstructor>({
            url: options.url,
            transformer,
            EventSource,
            async connectionParams() {
              const token = await options.getToken?.();
              return token ? { token } : null;
            },
          })
        : noEventSourceLink(),
      false: httpBatchLink<AppRouter>({
        url: options.url,
        transformer,
        maxItems: options.maxBatchItems ?? 50,
        // Queries go as POST: 500 skill ids would not fit in a URL (Node refuses request heads over 16 KiB).
        methodOverride: 'POST',
        ...(options.fetch ? { fetch: options.fetch } : {}),
        async headers() {
          const token = await options.getToken?.();
          return token ? { authorization: `Bearer ${token}` } : {};
        },
      }),
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
