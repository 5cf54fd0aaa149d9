// React Query integration for skill-views: the tRPC context, a ready-made provider with sensible defaults, and hooks
// that keep badges, the feed and the count in step (useRecordView, useMarkSeen/useMarkAllSeen, useSkillViewsLive,
// privacy controls).
import {
  MutationCache,
  QueryCache,
  QueryClient,
  QueryClientProvider,
  type InfiniteData,
  type QueryFilters,
  type QueryKey,
  useInfiniteQuery,
  useMutation,
  useQuery,
  useQueryClient,
} from '@tanstack/react-query';
import { createTRPCContext, type TRPCOptionsProxy } from '@trpc/tanstack-react-query';
import { createContext, createElement, useContext, useEffect, useRef, useState, useSyncExternalStore, type ReactNode } from 'react';
import {
  createClient,
  errorCode,
  type AppRouter,
  type ClientOptions,
  type LiveEvent,
  type RouterOutputs,
  type SkillViewsClient,
} from './index.ts';

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
  const [live] = useState<LiveProviderValue>(() => ({ onUnauthorized: (error) => latest.current.onUnauthorized?.(error) }));
  return createElement(
    QueryClientProvider,
    { client: queryClient },
    createElement(TRPCProvider, { queryClient, trpcClient, children: createElement(LiveContext.Provider, { value: live, children }) }),
  );
}

/** What SkillViewsProvider tells useSkillViewsLive: whom to tell when the stream is refused for the token. */
interface LiveProviderValue {
  onUnauthorized: (error: unknown) => void;
}

const LiveContext = createContext<LiveProviderValue | null>(null);

/** The what's-new feed as an infinite query: `fetchNextPage()` loads the page after `nextCursor`. */
export function useWhatsNewFeed(input: { limit?: number; windowDays?: number } = {}) {
  const trpc = useTRPC();
  return useInfiniteQuery(trpc.whatsNew.infiniteQueryOptions(input, { getNextPageParam: (page) => page.nextCursor }));
}

type RecordViewResult = RouterOutputs['recordView'];
type ViewsBySkill = RouterOutputs['viewsForSkills'];
type WhatsNewPage = RouterOutputs['whatsNew'];
type WhatsNewCount = RouterOutputs['whatsNewCount'];
type ChangeSummary = RouterOutputs['changeSummary'];
type ExportPage = RouterOutputs['exportMyViews'];

/** The server's default window for whatsNew and whatsNewCount (DESIGN.md), for inputs that leave it out. */
const DEFAULT_WINDOW_DAYS = 30;

/** The input a cached tRPC query was made with: the last part of its key, `{ input, type }`. */
function inputOf(queryKey: QueryKey): Record<string, unknown> {
  const last = queryKey[queryKey.length - 1] as { input?: unknown } | undefined;
  const input = last && typeof last === 'object' && !Array.isArray(last) ? last.input : undefined;
  return input && typeof input === 'object' ? (input as Record<string, unknown>) : {};
}

const windowOf = (queryKey: QueryKey) => {
  const days = inputOf(queryKey).windowDays;
  return typeof days === 'number' ? days : DEFAULT_WINDOW_DAYS;
};

/** Calls `update` with each cached query's data and key, and stores what it returns. */
function updateEach<T>(queryClient: QueryClient, filters: QueryFilters, update: (data: T, queryKey: QueryKey) => T) {
  for (const [queryKey, data] of queryClient.getQueriesData<T>(filters)) {
    if (data !== undefined) queryClient.setQueryData<T>(queryKey, update(data, queryKey));
  }
}

/**
 * Brings the cache up to date after a view of `skillId`: the skill's known view entries flip at once
 * (no "Updated" badge lingers while refetching), it leaves cached feeds, and every viewsForSkills,
 * whatsNew and whatsNewCount query plus this skill's changeSummary is invalidated. Active queries refetch
 * now, the rest when next used. When the view was not recorded (`tracked: false`: the user paused
 * tracking), nothing was seen, so nothing changes but the cached tracking preference.
 */
export async function refreshAfterView(
  queryClient: QueryClient,
  trpc: SkillViewsTRPC,
  skillId: string,
  result: RecordViewResult,
): Promise<void> {
  const view = result.view;
  if (!result.tracked || !view) {
    queryClient.setQueryData(trpc.trackingPreference.queryKey({}), { enabled: false });
    return;
  }
  const ids = new Set([skillId, view.skillId]);
  queryClient.setQueriesData<ViewsBySkill>(trpc.viewsForSkills.queryFilter(), (views) => {
    if (!views || !views.has(view.skillId)) return views;
    return new Map(views).set(view.skillId, { ...view, hasUpdate: false });
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
    queryClient.invalidateQueries(trpc.whatsNewCount.pathFilter()),
    ...[...ids].map((id) => queryClient.invalidateQueries(trpc.changeSummary.queryFilter({ skillId: id }))),
  ]);
}

/**
 * `recordView` as a mutation whose success refreshes what a view changes (see refreshAfterView):
 * `const recordView = useRecordView(); recordView.mutate({ skillId })`. Resolves to
 * `{ view: SkillView | null, previous: SkillView | null, tracked: boolean }` (`view` null and `tracked`
 * false when the user paused tracking). Errors: NOT_FOUND for a skill outside the caller's tenant,
 * BAD_REQUEST for a malformed id. Never retried: a retry after a lost response could count a visit twice.
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

/**
 * The nav-badge count: how many items the what's-new feed holds over all its pages, `{ count, capped }`.
 * `capped: true` means "at least `count`" (show "999+"); `input.cap` (999 to 10000, default 999) moves
 * the cap, `input.windowDays` (1 to 90, default 30) must match the feed it stands for. Errors: BAD_REQUEST
 * for inputs out of range. useMarkSeen/useMarkAllSeen and useRecordView keep it current.
 */
export function useWhatsNewCount(input: { windowDays?: number; cap?: number } = {}) {
  const trpc = useTRPC();
  return useQuery(trpc.whatsNewCount.queryOptions(input));
}

/** What an optimistic update replaced, to put back if the server refuses. */
type Snapshot = [QueryKey, unknown][];

/**
 * Applies "these skills are seen" (`ids` null: every skill) to the cache at once: hasUpdate false in every
 * cached viewsForSkills Map, the skills gone from every cached whatsNew page (infinite queries included),
 * whatsNewCount lowered (to 0 for all; otherwise by the marked skills known to be counted, i.e. listed in a
 * cached feed of the same window; a capped count is left for the refetch), and their cached change summaries
 * without version_bump, details_updated and new_feedback. Cancels in-flight fetches first, so a response
 * from before the mark cannot overwrite it. Returns what it replaced.
 */
export async function markSeenInCache(
  queryClient: QueryClient,
  trpc: SkillViewsTRPC,
  ids: ReadonlySet<string> | null,
): Promise<Snapshot> {
  const marked = (skillId: string) => ids === null || ids.has(skillId.toLowerCase());
  const filters = [
    trpc.viewsForSkills.pathFilter(),
    trpc.whatsNew.pathFilter(),
    trpc.whatsNewCount.pathFilter(),
    trpc.changeSummary.pathFilter(),
  ];
  await Promise.all(filters.map((filter) => queryClient.cancelQueries(filter)));
  const snapshot: Snapshot = filters.flatMap((filter) => queryClient.getQueriesData(filter));

  // Before the feeds change: which marked skills each window's count includes.
  const countedByWindow = new Map<number, Set<string>>();
  const feedPages = (data: unknown): WhatsNewPage[] =>
    data && typeof data === 'object' && 'pages' in data ? (data as InfiniteData<WhatsNewPage>).pages : data ? [data as WhatsNewPage] : [];
  for (const [queryKey, data] of queryClient.getQueriesData(trpc.whatsNew.pathFilter())) {
    const window = windowOf(queryKey);
    const counted = countedByWindow.get(window) ?? new Set<string>();
    for (const page of feedPages(data)) for (const item of page.items) if (marked(item.skillId)) counted.add(item.skillId);
    countedByWindow.set(window, counted);
  }

  updateEach<ViewsBySkill>(queryClient, trpc.viewsForSkills.pathFilter(), (views) => {
    if (![...views.values()].some((view) => view.hasUpdate && marked(view.skillId))) return views;
    const next = new Map(views);
    for (const [key, view] of views) if (view.hasUpdate && marked(view.skillId)) next.set(key, { ...view, hasUpdate: false });
    return next;
  });
  const unmarked = (page: WhatsNewPage): WhatsNewPage =>
    ids === null ? { items: [], nextCursor: null } : { ...page, items: page.items.filter((item) => !marked(item.skillId)) };
  queryClient.setQueriesData<WhatsNewPage>(trpc.whatsNew.queryFilter(), (page) => (page ? unmarked(page) : page));
  queryClient.setQueriesData<InfiniteData<WhatsNewPage, string | null>>(trpc.whatsNew.infiniteQueryFilter(), (data) => {
    if (!data) return data;
    // Everything seen: the feed is one empty page.
    if (ids === null) return { pages: [unmarked(data.pages[0]!)], pageParams: data.pageParams.slice(0, 1) };
    return { ...data, pages: data.pages.map(unmarked) };
  });
  updateEach<WhatsNewCount>(queryClient, trpc.whatsNewCount.pathFilter(), (count, queryKey) => {
    if (ids === null) return { count: 0, capped: false };
    if (count.capped) return count;
    const known = countedByWindow.get(windowOf(queryKey))?.size ?? 0;
    return { ...count, count: Math.max(0, count.count - known) };
  });
  updateEach<ChangeSummary>(queryClient, trpc.changeSummary.pathFilter(), (summary) =>
    marked(summary.skillId) ? { ...summary, changes: summary.changes.filter((c) => !seenKinds.has(c.kind)) } : summary,
  );
  return snapshot;
}

/** Change kinds that marking a skill seen clears. */
const seenKinds = new Set<string>(['version_bump', 'details_updated', 'new_feedback']);

/** Puts back what markSeenInCache replaced. */
function restore(queryClient: QueryClient, snapshot: Snapshot | undefined) {
  for (const [queryKey, data] of snapshot ?? []) queryClient.setQueryData(queryKey, data);
}

/**
 * Refetches every query about views (viewsForSkills, whatsNew, whatsNewCount, changeSummary; active queries now,
 * the rest when next used): after marking seen, and when a live `resync` says something may have been missed.
 */
export function invalidateReadState(queryClient: QueryClient, trpc: SkillViewsTRPC) {
  return Promise.all([
    queryClient.invalidateQueries(trpc.viewsForSkills.pathFilter()),
    queryClient.invalidateQueries(trpc.whatsNew.pathFilter()),
    queryClient.invalidateQueries(trpc.whatsNewCount.pathFilter()),
    queryClient.invalidateQueries(trpc.changeSummary.pathFilter()),
  ]);
}

/**
 * `markSeen` as an optimistic mutation: `markSeen.mutate({ skillIds })` (1 to 500 ids) clears the skills'
 * Updated badges, feed entries, their share of the count and their change summaries at once
 * (markSeenInCache), rolls the cache back if the call fails, and refetches when it settles. Resolves to
 * `{ marked }`, the skills that had something unseen; never-viewed and unknown ids are skipped, not errors.
 * Errors: BAD_REQUEST for an empty, oversized or malformed list. Does not count a visit.
 */
export function useMarkSeen() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  return useMutation(
    trpc.markSeen.mutationOptions<Snapshot>({
      onMutate: ({ skillIds }) => markSeenInCache(queryClient, trpc, new Set(skillIds.map((id) => id.toLowerCase()))),
      onError: (_error, _input, snapshot) => restore(queryClient, snapshot),
      onSettled: () => invalidateReadState(queryClient, trpc),
    }),
  );
}

/**
 * `markAllSeen` as an optimistic mutation: `markAllSeen.mutate({})` clears every Updated badge, the whole
 * feed, the count (to 0) and every change summary at once, rolls back if the call fails, and refetches when
 * it settles. Resolves to `{ marked }`: how many viewed skills had something unseen (any window).
 */
export function useMarkAllSeen() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  return useMutation(
    trpc.markAllSeen.mutationOptions<Snapshot>({
      onMutate: () => markSeenInCache(queryClient, trpc, null),
      onError: (_error, _input, snapshot) => restore(queryClient, snapshot),
      onSettled: () => invalidateReadState(queryClient, trpc),
    }),
  );
}

/** Whether the caller's views are recorded: `{ enabled }` (true until they pause it). */
export function useTrackingPreference() {
  const trpc = useTRPC();
  return useQuery(trpc.trackingPreference.queryOptions({}));
}

/**
 * `setTracking` as a mutation: `setTracking.mutate({ enabled: false })` pauses the recording of the caller's
 * views (recordView then writes nothing and says `tracked: false`), `true` resumes it. Resolves to the
 * preference in force, `{ enabled }`, which becomes the cached trackingPreference.
 */
export function useSetTracking() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  return useMutation(
    trpc.setTracking.mutationOptions({
      onSuccess: (preference) => queryClient.setQueryData(trpc.trackingPreference.queryKey({}), preference),
    }),
  );
}

/**
 * Every view row of the caller, read page after page (`pageSize` 1 to 500, default 500) until the last:
 * `SkillView[]` by skill id (the right of access). Rows recorded while it pages may be missed or listed
 * once; none twice.
 */
export async function exportAllMyViews(
  client: SkillViewsClient,
  { pageSize = 500 }: { pageSize?: number } = {},
): Promise<ExportPage['items']> {
  const rows: ExportPage['items'] = [];
  let cursor: string | null = null;
  do {
    const page: ExportPage = await client.exportMyViews.query({ limit: pageSize, cursor });
    rows.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return rows;
}

/**
 * The caller's whole export on demand (a download button): `exportViews.mutate()` pages through
 * exportMyViews (exportAllMyViews) and resolves to every `SkillView`. Nothing is cached: an export is
 * always read afresh.
 */
export function useExportMyViews(options: { pageSize?: number } = {}) {
  const client = useTRPCClient();
  return useMutation({ mutationFn: () => exportAllMyViews(client, options) });
}

/**
 * `forgetMyViews` as a mutation: deletes every view row of the caller (the right to erasure) and resolves to
 * `{ deleted }`. On success the cache forgets them too: no badges, an empty feed, a count of 0, change
 * summaries of first visits; then everything about views refetches.
 */
export function useForgetMyViews() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  return useMutation(
    trpc.forgetMyViews.mutationOptions({
      onSuccess: async () => {
        // Cancels in-flight fetches first: a cancelled fetch puts back the data it started from.
        await markSeenInCache(queryClient, trpc, null);
        updateEach<ViewsBySkill>(queryClient, trpc.viewsForSkills.pathFilter(), () => new Map());
        updateEach<ChangeSummary>(queryClient, trpc.changeSummary.pathFilter(), (summary) => ({
          ...summary,
          firstView: true,
          lastViewedAt: null,
          lastViewedVersion: null,
          changes: [],
        }));
        await Promise.all([invalidateReadState(queryClient, trpc), queryClient.invalidateQueries(trpc.exportMyViews.pathFilter())]);
      },
    }),
  );
}

/**
 * What one live event changes in the cache: `changed` invalidates every viewsForSkills, whatsNew (infinite
 * queries included) and whatsNewCount query and that skill's changeSummary (other skills' summaries stay cached);
 * `resync` invalidates all of those and every changeSummary; `ready` changes nothing. Active queries refetch now,
 * the rest when next used.
 */
export async function refreshAfterLiveEvent(queryClient: QueryClient, trpc: SkillViewsTRPC, event: LiveEvent): Promise<void> {
  switch (event.kind) {
    case 'ready':
      return;
    case 'resync':
      await invalidateReadState(queryClient, trpc);
      return;
    case 'changed': {
      const skillId = event.skillId.toLowerCase();
      await Promise.all([
        queryClient.invalidateQueries(trpc.viewsForSkills.pathFilter()),
        queryClient.invalidateQueries(trpc.whatsNew.pathFilter()),
        queryClient.invalidateQueries(trpc.whatsNewCount.pathFilter()),
        // Any spelling of the id the page asked with (ids are case-insensitive).
        queryClient.invalidateQueries(
          trpc.changeSummary.pathFilter({
            predicate: (query) => String(inputOf(query.queryKey).skillId ?? '').toLowerCase() === skillId,
          }),
        ),
      ]);
      return;
    }
  }
}

/**
 * The live stream's state, for a small indicator: `connecting` until the first stream opens, `live` while one is
 * open, `reconnecting` after it dropped (tRPC reconnects by itself, resuming after the last event) or while a retry
 * is under way, `error` after the server refused or ended it (`error` says why; a retry is scheduled).
 * `lastEventAt` is when the last event arrived.
 */
export interface LiveState {
  status: 'connecting' | 'live' | 'reconnecting' | 'error';
  error?: unknown;
  lastEventAt?: Date;
}

export interface SkillViewsLiveOptions {
  /**
   * Called when the stream is refused or ended for the token (UNAUTHORIZED), besides SkillViewsProvider's
   * onUnauthorized. The hook keeps retrying, asking getToken afresh each time.
   */
  onUnauthorized?: (error: unknown) => void;
}

/** Delay before retry number `failures` (0-based) after a refusal: 1 s doubling to 30 s, with ±20% jitter. */
export function liveRetryDelay(failures: number): number {
  const base = Math.min(30_000, 1_000 * 2 ** failures);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * The HTTP status of a refused stream, when the EventSource implementation reports one (the `eventsource` package's
 * error event has `code`; a browser's has none). tRPC's link hands the event on as the error's `shape` (an event
 * with a numeric code and a message looks like an error response to it) or somewhere in its `cause`.
 */
function refusalStatus(error: unknown): number | null {
  const e = error as { shape?: unknown; cause?: { error?: unknown } } | null;
  for (const candidate of [e?.shape, e?.cause, e?.cause?.error]) {
    const code = (candidate as { code?: unknown } | null | undefined)?.code;
    if (typeof code === 'number' && code >= 400 && code < 600) return code;
  }
  return null;
}

/**
 * The code a refused or ended stream failed with: the tRPC error code when the server sent one (UNAUTHORIZED when
 * the token expired mid-stream), else one read from the HTTP status (401 UNAUTHORIZED, 429 TOO_MANY_REQUESTS) when
 * the EventSource reports it (501 NOT_IMPLEMENTED: live updates are off, never retried); null when nothing says (a browser's EventSource hides the status).
 */
export function liveErrorCode(error: unknown): string | null {
  const code = errorCode(error);
  if (code) return code;
  const status = refusalStatus(error);
  if (status === 401) return 'UNAUTHORIZED';
  if (status === 429) return 'TOO_MANY_REQUESTS';
  if (status === 501) return 'NOT_IMPLEMENTED';
  return null;
}

/**
 * The onChange subscription behind useSkillViewsLive, one per QueryClient; usable without React too (any TanStack
 * QueryClient): `acquire` opens it (with a ref to an onUnauthorized handler), `release` closes it once nobody holds
 * it, `subscribe`/`getSnapshot` report its LiveState. The provider value gives onUnauthorized for UNAUTHORIZED.
 */
export class LiveConnection {
  private state: LiveState = { status: 'connecting' };
  private readonly listeners = new Set<() => void>();
  private readonly unauthorizedHandlers = new Set<{ current: SkillViewsLiveOptions['onUnauthorized'] }>();
  private users = 0;
  private subscription: { unsubscribe: () => void } | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private closeTimer: ReturnType<typeof setTimeout> | null = null;
  /** The id of the last event received: a new subscription resumes after it. */
  private lastEventId: string | null = null;
  private failures = 0;
  /** Refusals in a row whose reason the EventSource did not tell. */
  private unexplained = 0;
  /** A stream restarted from nothing after a failure: what happened meanwhile is unknown, so its `ready` refetches. */
  private resyncOnReady = false;

  constructor(
    private readonly queryClient: QueryClient,
    private readonly client: SkillViewsClient,
    private readonly trpc: SkillViewsTRPC,
    private readonly provider: { onUnauthorized: (error: unknown) => void } | null,
  ) {}

  subscribe = (listener: () => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = () => this.state;

  /** Adds a user; the first one opens the stream. */
  acquire(onUnauthorized: { current: SkillViewsLiveOptions['onUnauthorized'] }) {
    this.unauthorizedHandlers.add(onUnauthorized);
    this.users += 1;
    if (this.closeTimer) {
      clearTimeout(this.closeTimer);
      this.closeTimer = null;
    }
    if (!this.subscription && !this.retryTimer) this.connect();
  }

  /** Removes a user; when none is left the stream closes (a moment later, so a remount does not reopen it). */
  release(onUnauthorized: { current: SkillViewsLiveOptions['onUnauthorized'] }) {
    this.unauthorizedHandlers.delete(onUnauthorized);
    this.users -= 1;
    if (this.users > 0 || this.closeTimer) return;
    this.closeTimer = setTimeout(() => {
      this.closeTimer = null;
      if (this.users === 0) this.close();
    }, 0);
  }

  private close() {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.setState({ status: 'connecting', ...(this.state.lastEventAt ? { lastEventAt: this.state.lastEventAt } : {}) });
  }

  private setState(next: LiveState) {
    this.state = next;
    for (const listener of this.listeners) listener();
  }

  private update(patch: Partial<LiveState>) {
    const next: LiveState = { ...this.state, ...patch };
    if (next.error === undefined) delete next.error;
    this.setState(next);
  }

  private connect() {
    const resumeFrom = this.lastEventId;
    let ended = false;
    const subscription = this.client.onChange.subscribe(resumeFrom ? { lastEventId: resumeFrom } : {}, {
      onStarted: () => {
        if (ended) return;
        this.failures = 0;
        this.unexplained = 0;
        this.update({ status: 'live', error: undefined });
      },
      onConnectionStateChange: (connection) => {
        if (ended) return;
        if (connection.state === 'pending') this.update({ status: 'live', error: undefined });
        // tRPC reconnects by itself after a dropped connection or a retryable error, resuming after the last event.
        else if (connection.state === 'connecting' && (connection.error || this.state.status === 'live')) {
          this.update({ status: 'reconnecting', error: connection.error ?? undefined });
        }
      },
      onData: ({ id, data }: { id: string; data: LiveEvent }) => {
        if (ended) return;
        this.lastEventId = id;
        this.update({ status: 'live', error: undefined, lastEventAt: new Date() });
        const event: LiveEvent = data.kind === 'ready' && this.resyncOnReady ? { kind: 'resync' } : data;
        this.resyncOnReady = false;
        void refreshAfterLiveEvent(this.queryClient, this.trpc, event);
      },
      onError: (error) => {
        if (ended) return;
        ended = true;
        this.fail(error);
      },
      onComplete: () => {
        if (ended) return;
        ended = true;
        // The server ended the stream without an error (e.g. shutting down): open a new one.
        this.fail(null);
      },
    });
    this.subscription = {
      unsubscribe: () => {
        ended = true;
        subscription.unsubscribe();
      },
    };
  }

  /** The stream was refused or ended for good: tell whom it concerns, then try again after a backoff. */
  private fail(error: unknown) {
    this.subscription?.unsubscribe();
    this.subscription = null;
    if (this.users === 0) return;
    if (this.lastEventId === null) this.resyncOnReady = true;
    this.update({ status: error === null ? 'reconnecting' : 'error', error: error ?? undefined });
    const code = error === null ? null : liveErrorCode(error);
    this.unexplained = error !== null && code === null ? this.unexplained + 1 : 0;
    // The server has live updates switched off (LIVE_UPDATES=false): asking again will not change that.
    if (code === 'NOT_IMPLEMENTED') return;
    if (code === 'UNAUTHORIZED') this.unauthorized(error);
    // Once is usually a page's first load with a stale token, which its queries report already.
    else if (this.unexplained >= 2) void this.probe();
    const delay = liveRetryDelay(this.failures);
    this.failures += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.users === 0) return;
      this.update({ status: 'reconnecting' });
      this.connect();
    }, delay);
  }

  private unauthorized(error: unknown) {
    this.provider?.onUnauthorized(error);
    for (const handler of this.unauthorizedHandlers) handler.current?.(error);
  }

  /**
   * A browser's EventSource hides why a stream was refused (401, 429 and a proxy's 502 look alike): after the second
   * such refusal in a row, one ordinary call finds out whether the token is the reason.
   */
  private async probe() {
    try {
      await this.client.trackingPreference.query({});
    } catch (error) {
      if (errorCode(error) === 'UNAUTHORIZED' && this.users > 0) this.unauthorized(error);
    }
  }
}

const liveConnections = new WeakMap<QueryClient, LiveConnection>();

/**
 * Keeps badges, the feed, the nav count and change summaries live: subscribes to `onChange` (server-sent events)
 * and invalidates exactly what each event touches (refreshAfterLiveEvent). Mount it once near the top of the app;
 * any number of components may call it: they share one stream per QueryClient, open while at least one of them
 * is mounted. Returns the stream's LiveState for an indicator.
 *
 * When the server refuses or ends the stream (a token that expired or was refused, the per-user stream cap,
 * a server going away) it retries with backoff (liveRetryDelay), with a fresh token from getToken each time,
 * resuming after the last event received (the server answers `resync` if it cannot tell what was missed). For
 * UNAUTHORIZED it calls SkillViewsProvider's onUnauthorized and `options.onUnauthorized`.
 */
export function useSkillViewsLive(options: SkillViewsLiveOptions = {}): LiveState {
  const queryClient = useQueryClient();
  const client = useTRPCClient();
  const trpc = useTRPC();
  const provider = useContext(LiveContext);
  const onUnauthorized = useRef(options.onUnauthorized);
  useEffect(() => {
    onUnauthorized.current = options.onUnauthorized;
  });
  const [connection] = useState(() => {
    let shared = liveConnections.get(queryClient);
    if (!shared) {
      shared = new LiveConnection(queryClient, client, trpc, provider);
      liveConnections.set(queryClient, shared);
    }
    return shared;
  });
  useEffect(() => {
    connection.acquire(onUnauthorized);
    return () => connection.release(onUnauthorized);
  }, [connection]);
  return useSyncExternalStore(connection.subscribe, connection.getSnapshot, connection.getSnapshot);
}
