// The read state in the chrome: the nav count of unseen changes, the live-updates indicator, and "Mark all as seen"
// (optimistic: badges, feed and count clear at once, and come back if the server refuses).
import { useMarkAllSeen, useSkillViewsLive, useWhatsNewCount, type LiveState } from '../../react.ts';
import { countLabel, plural } from './format.ts';

const liveLabels: Record<LiveState['status'], { text: string; title: string }> = {
  connecting: { text: 'Connecting…', title: 'Connecting to live updates' },
  live: { text: 'Live', title: 'Badges and the count update as skills change' },
  reconnecting: { text: 'Reconnecting…', title: 'Connection lost: reconnecting; nothing is missed meanwhile' },
  error: { text: 'Offline', title: 'Live updates are unavailable; retrying. Reload to see the latest.' },
};

/**
 * Whether badges and the count update by themselves: Live, Reconnecting… or Offline. It reads the stream the shell
 * holds open (useSkillViewsLive shares one subscription among all its callers).
 */
export function LiveIndicator() {
  const state = useSkillViewsLive();
  const { text, title } = liveLabels[state.status];
  return (
    <span className={`live-indicator live-${state.status}`} data-testid="live-status" data-status={state.status} role="status" title={title}>
      <span className="live-dot" aria-hidden="true" />
      {text}
    </span>
  );
}

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
