// React Query integration for skill-views: the tRPC context, a ready-made provider with sensible defaults, useRecordView.
import {
  MutationCache,
  QueryCache,
  QueryClient,
  QueryClientProvider,
  type InfiniteData,
  useInfiniteQuery,
  useMutation,
  useQueryClient,
} from '@tanstack/react-query';
import { createTRPCContext, type TRPCOptionsProxy } from '@trpc/tanstack-react-query';
import { createElement, useEffect, useRef, useState, type ReactNode } from 'react';
import { createClient, errorCode, type AppRouter, type ClientOptions, type RouterOutputs } from './index.ts';

/** `useTRPC()` returns typed query/mutation options: `useQuery(trpc.whatsNew.queryOptions({ limit: 5 }))`. */
export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

export type SkillViewsTRPC = TRPCOptionsProxy<AppRouter>;

/** Errors that asking again cannot fix: the same request fails the same way. */
const permanentCodes = new Set([
  'PARSE_ERROR',
  'BAD_REQUEST',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'NOT_FOUND',
  'METHOD_NOT_SUPPORTED',
  'PAYLOAD_TOO_LARGE',
  'UNPROCESSABLE_CONTENT',
  'NOT_IMPLEMENTED',
]);

/** Query retry policy: up to two retries for network and server errors, none for client errors. */
export function shouldRetry(failureCount: number, error: unknown): boolean {
  const code = errorCode(error);
  if (code !== null && permanentCodes.has(code)) return false;
  return failureCount < 2;
}

export interface QueryClientOptions {
  /** Called when any query or mutation fails with UNAUTHORIZED (missing, expired or revoked token). */
  onUnauthorized?: (error: unknown) => void;
}

/** A QueryClient with this API's defaults. */
export function createQueryClient(options: QueryClientOptions = {}): QueryClient {
  const onError = (error: unknown) => {
    if (errorCode(error) === 'UNAUTHORIZED') options.onUnauthorized?.(error);
  };
  return new QueryClient({
    queryCache: new QueryCache({ onError }),
    mutationCache: new MutationCache({ onError }),
    defaultOptions: {
      queries: { retry: shouldRetry, staleTime: 30_000 },
      // recordView counts every call: retrying after a lost response could count a visit twice.
      mutations: { retry: false },
    },
  });
}

export interface SkillViewsProviderProps extends ClientOptions {
  children?: ReactNode;
  /** Bring your own QueryClient (then pass onUnauthorized to createQueryClient instead). */
  queryClient?: QueryClient;
  onUnauthorized?: (error: unknown) => void;
}

/**
 * Creates the QueryClient and the tRPC client once and provides both. `url`, `fetch` and
 * `maxBatchItems` are read on first render; `getToken` and `onUnauthorized` may change at any time.
 * To switch users, give the provider a new `key` so the cache starts empty.
 */
export function SkillViewsProvider({ children, queryClient: given, onUnauthorized, ...clientOptions }: SkillViewsProviderProps) {
  const latest = useRef({ getToken: clientOptions.getToken, onUnauthorized });
  useEffect(() => {
    latest.current = { getToken: clientOptions.getToken, onUnauthorized };
  });
  const [queryClient] = useState(
    () => given ?? createQueryClient({ onUnauthorized: (error) => latest.current.onUnauthorized?.(error) }),
  );
  const [trpcClient] = useState(() => createClient({ ...clientOptions, getToken: () => latest.current.getToken?.() }));
  return createElement(
    QueryClientProvider,
    { client: queryClient },
    createElement(TRPCProvider, { queryClient, trpcClient, children }),
  );
}

/** The what's-new feed as an infinite query: `fetchNextPage()` loads the page after `nextCursor`. */
export function useWhatsNewFeed(input: { limit?: number; windowDays?: number } = {}) {
  const trpc = useTRPC();
  return useInfiniteQuery(trpc.whatsNew.infiniteQueryOptions(input, { getNextPageParam: (page) => page.nextCursor }));
}

type RecordViewResult = RouterOutputs['recordView'];
type ViewsBySkill = RouterOutputs['viewsForSkills'];
type WhatsNewPage = RouterOutputs['whatsNew'];

/**
 * Brings the cache up to date after a view of `skillId`: the skill's known view entries flip at once
 * (no "Updated" badge lingers while refetching), it leaves cached feeds, and every viewsForSkills and
 * whatsNew query plus this skill's changeSummary is invalidated. Active queries refetch now, the
 * rest when next used.
 */
export async function refreshAfterView(
  queryClient: QueryClient,
  trpc: SkillViewsTRPC,
  skillId: string,
  result: RecordViewResult,
): Promise<void> {
  const ids = new Set([skillId, result.view.skillId]);
  queryClient.setQueriesData<ViewsBySkill>(trpc.viewsForSkills.queryFilter(), (views) => {
    if (!views || !views.has(result.view.skillId)) return views;
    return new Map(views).set(result.view.skillId, { ...result.view, hasUpdate: false });
  });
  const withoutSkill = (page: WhatsNewPage): WhatsNewPage => ({
    ...page,
    items: page.items.filter((item) => !ids.has(item.skillId)),
  });
  queryClient.setQueriesData<WhatsNewPage>(trpc.whatsNew.queryFilter(), (page) => (page ? withoutSkill(page) : page));
  queryClient.setQueriesData<InfiniteData<WhatsNewPage, string | null>>(trpc.whatsNew.infiniteQueryFilter(), (data) =>
    data ? { ...data, pages: data.pages.map(withoutSkill) } : data,
  );
  await Promise.all([
    queryClient.invalidateQueries(trpc.viewsForSkills.pathFilter()),
    queryClient.invalidateQueries(trpc.whatsNew.pathFilter()),
    ...[...ids].map((id) => queryClient.invalidateQueries(trpc.changeSummary.queryFilter({ skillId: id }))),
  ]);
}

/**
 * `recordView` as a mutation whose success refreshes what a view changes (see refreshAfterView):
 * `const recordView = useRecordView(); recordView.mutate({ skillId })`.
 */
export function useRecordView() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  return useMutation(
    trpc.recordView.mutationOptions({
      onSuccess: (result, { skillId }) => refreshAfterView(queryClient, trpc, skillId, result),
    }),
  );
}
