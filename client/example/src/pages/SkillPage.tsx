// One skill: what changed since the last visit, then the visit is recorded (useRecordView).
import { useQuery } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { errorCode, type RouterOutputs } from '../../../index.ts';
import { useRecordView, useTRPC } from '../../../react.ts';
import { Badge, ErrorState, SkeletonList } from '../components.tsx';
import { useDirectory } from '../directory.tsx';
import { describeChange, fullDate, plural, timeAgo, versionLabel } from '../format.ts';
import { Link, paths } from '../router.tsx';

type Summary = RouterOutputs['changeSummary'];

/** Render with `key={skillId}`: each visit of a skill is its own page state. */
export function SkillPage({ skillId }: { skillId: string }) {
  const trpc = useTRPC();
  const skill = useDirectory().find(skillId);
  // Always ask afresh on open, and keep what was true at open: recording this visit (below) resets the
  // summary on the server, and the refetch that follows must not wipe what the reader came to see.
  const summary = useQuery({
    ...trpc.changeSummary.queryOptions({ skillId }),
    refetchOnMount: 'always',
    refetchOnWindowFocus: false,
  });
  const recordView = useRecordView();
  const [atOpen, setAtOpen] = useState<Summary | null>(null);
  const recorded = useRef(false);

  const ready = summary.isFetchedAfterMount && summary.isSuccess;
  const { mutate } = recordView;
  useEffect(() => {
    // Record only after the summary is read, or it could already count this visit. The ref keeps
    // StrictMode's double effects from counting the visit twice.
    if (!ready || recorded.current) return;
    recorded.current = true;
    setAtOpen(summary.data);
    mutate({ skillId });
  }, [ready, summary.data, mutate, skillId]);

  const back = (
    <nav className="breadcrumbs">
      <Link to={paths.skills}>← All skills</Link>
    </nav>
  );

  if (summary.isError && !atOpen) {
    const notFound = errorCode(summary.error) === 'NOT_FOUND';
    return (
      <>
        {back}
        <ErrorState
          title={notFound ? 'Skill not found' : 'Could not load this skill'}
          error={summary.error}
          onRetry={notFound ? undefined : () => void summary.refetch()}
        />
      </>
    );
  }
  const shown = atOpen ?? (ready ? summary.data : null);
  if (!shown) {
    return (
      <>
        {back}
        <SkeletonList label="Loading skill…" rows={2} />
      </>
    );
  }

  return (
    <>
      {back}
      <div className="page-header">
        <div>
          <h1>{skill?.name ?? 'Skill'}</h1>
          <p className="muted">
            {skill ? <span className="tag">{skill.category}</span> : null} Current version{' '}
            <strong>{versionLabel(shown.currentVersion)}</strong>
          </p>
        </div>
      </div>

      <section className="card panel" aria-labelledby="since-heading">
        <h2 id="since-heading">Since your last visit</h2>
        {shown.firstView ? (
          <p>This is your first visit. From now on, this page tells you what changed since you last looked.</p>
        ) : (
          <>
            {shown.lastViewedAt ? (
              <p className="muted">
                You last looked{' '}
                <time dateTime={shown.lastViewedAt.toISOString()} title={fullDate(shown.lastViewedAt)}>
                  {timeAgo(shown.lastViewedAt)}
                </time>
                {shown.lastViewedVersion !== null ? `, at ${versionLabel(shown.lastViewedVersion)}` : ''}.
              </p>
            ) : null}
            {shown.changes.length === 0 ? (
              <p data-testid="no-changes">Nothing has changed since your last visit.</p>
            ) : (
              <ul className="changes" aria-label="Changes">
                {shown.changes.map((change) => {
                  const { title, detail } = describeChange(change);
                  return (
                    <li key={change.kind} className={`change change-${change.kind}`}>
                      <strong>{title}</strong>
                      <span className="muted small">{detail}</span>
                    </li>
                  );
                })}
              </ul>
            )}
          </>
        )}
      </section>

      <p className="muted small visit-status" data-testid="visit-status" aria-live="polite">
        {recordView.isError ? (
          <>
            Could not record this visit.{' '}
            <button type="button" className="link-button" onClick={() => mutate({ skillId })}>
              Try again
            </button>
          </>
        ) : recordView.data?.view ? (
          <>
            <Badge tone="success">Visit recorded</Badge> You have opened this skill{' '}
            {plural(recordView.data.view.viewCount, 'time')}.
          </>
        ) : recordView.data ? (
          <>
            <Badge tone="neutral">Not recorded</Badge> Tracking is paused: this visit was not recorded.{' '}
            <Link to={paths.privacy}>Privacy settings</Link>
          </>
        ) : (
          'Recording your visit…'
        )}
      </p>
    </>
  );
}
