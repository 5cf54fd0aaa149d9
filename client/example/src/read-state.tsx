// The read state in the chrome: the nav count of unseen changes, and "Mark all as seen" (optimistic: badges,
// feed and count clear at once, and come back if the server refuses).
import { useMarkAllSeen, useWhatsNewCount } from '../../react.ts';
import { countLabel, plural } from './format.ts';

/** The what's-new count beside its nav link; nothing while loading, on error or at zero. */
export function NavCount() {
  const { data } = useWhatsNewCount();
  if (!data || data.count === 0) return null;
  const label = countLabel(data);
  return (
    <span
      className="nav-count"
      data-testid="whats-new-count"
      title={`${data.capped ? 'More than ' : ''}${plural(data.count, 'skill')} changed since you last looked`}
    >
      {label}
    </span>
  );
}

/** Clears every Updated badge, the feed and the nav count without opening each skill (no visit is counted). */
export function MarkAllSeenButton() {
  const markAll = useMarkAllSeen();
  return (
    <div className="header-actions">
      {markAll.isError ? (
        <span role="alert" className="error-inline">
          Could not mark everything as seen.
        </span>
      ) : null}
      <button type="button" className="button" onClick={() => markAll.mutate({})} disabled={markAll.isPending}>
        Mark all as seen
      </button>
    </div>
  );
}
