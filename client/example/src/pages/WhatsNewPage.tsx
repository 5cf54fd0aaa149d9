// The what's-new feed: skills you viewed that changed since, newest first, a page at a time with "Load more".
import { useEffect } from 'react';
import { useWhatsNewFeed } from '../../../react.ts';
import { Badge, EmptyState, ErrorState, SkeletonList } from '../components.tsx';
import { useDirectory } from '../directory.tsx';
import { feedChange, fullDate, timeAgo } from '../format.ts';
import { MarkAllSeenButton } from '../read-state.tsx';
import { Link, paths } from '../router.tsx';

export const feedPageSize = 4;

export function WhatsNewPage() {
  const feed = useWhatsNewFeed({ limit: feedPageSize });
  const items = feed.data?.pages.flatMap((p) => p.items) ?? [];

  const { remember } = useDirectory();
  useEffect(() => {
    const pages = feed.data?.pages ?? [];
    remember(pages.flatMap((p) => p.items.map(({ skillId, name, slug, category }) => ({ id: skillId, name, slug, category }))));
  }, [feed.data, remember]);

  const header = (
    <div className="page-header">
      <div>
        <h1>What's new</h1>
        <p className="muted">Skills you have viewed that changed since, newest change first (last 30 days).</p>
      </div>
      <MarkAllSeenButton />
    </div>
  );

  if (feed.isPending) return <>{header}<SkeletonList label="Loading what's new…" rows={feedPageSize} /></>;
  if (feed.isError && items.length === 0) {
    return <>{header}<ErrorState title="Could not load what's new" error={feed.error} onRetry={() => void feed.refetch()} /></>;
  }
  if (items.length === 0) {
    return (
      <>
        {header}
        <EmptyState title="You're all caught up">
          Nothing you viewed has changed since. When a skill you opened gets a new version or new details, it shows up here.
        </EmptyState>
      </>
    );
  }

  return (
    <>
      {header}
      <ol className="card-list feed" aria-label="What's new">
        {items.map((item) => (
          <li key={item.skillId} className="card feed-item" data-skill-id={item.skillId}>
            <div className="skill-row-main">
              <Link to={paths.skill(item.skillId)} className="skill-name">
                {item.name}
              </Link>
              <span className="tag">{item.category}</span>
              <Badge tone="accent">{feedChange(item)}</Badge>
            </div>
            <p className="muted small">
              Changed <time dateTime={item.updatedAt.toISOString()} title={fullDate(item.updatedAt)}>{timeAgo(item.updatedAt)}</time>
              {' · '}you last looked{' '}
              <time dateTime={item.lastViewedAt.toISOString()} title={fullDate(item.lastViewedAt)}>{timeAgo(item.lastViewedAt)}</time>
            </p>
          </li>
        ))}
      </ol>
      <div className="load-more">
        {feed.isFetchNextPageError ? (
          <p role="alert" className="error-inline">Could not load more. </p>
        ) : null}
        {feed.hasNextPage ? (
          <button type="button" className="button" onClick={() => void feed.fetchNextPage()} disabled={feed.isFetchingNextPage}>
            {feed.isFetchingNextPage ? 'Loading…' : feed.isFetchNextPageError ? 'Try again' : 'Load more'}
          </button>
        ) : (
          <p className="muted small">That's everything that changed in the last 30 days.</p>
        )}
      </div>
    </>
  );
}
