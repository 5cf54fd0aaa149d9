// Your tracking data: pause or resume the recording of your views, export every row, or erase them all.
import { useEffect, useMemo, useState } from 'react';
import { useExportMyViews, useForgetMyViews, useSetTracking, useTrackingPreference } from '../../../react.ts';
import { Badge, ErrorState, SkeletonList } from '../components.tsx';
import { plural } from '../format.ts';

/** Rows per export request: small, so the demo's dozen views take several pages (as a real export would). */
export const exportPageSize = 5;

export function PrivacyPage() {
  const preference = useTrackingPreference();
  const setTracking = useSetTracking();
  const exportViews = useExportMyViews({ pageSize: exportPageSize });
  const forget = useForgetMyViews();
  const [confirming, setConfirming] = useState(false);

  const header = (
    <div className="page-header">
      <div>
        <h1>Privacy</h1>
        <p className="muted">What this app records about your reading, and your control over it.</p>
      </div>
    </div>
  );

  if (preference.isPending) return <>{header}<SkeletonList label="Loading your settings…" rows={3} /></>;
  if (preference.isError) {
    return <>{header}<ErrorState title="Could not load your settings" error={preference.error} onRetry={() => void preference.refetch()} /></>;
  }
  const enabled = preference.data.enabled;

  return (
    <>
      {header}
      <section className="card panel" aria-labelledby="tracking-heading">
        <h2 id="tracking-heading">Recording your views</h2>
        <p data-testid="tracking-state">
          {enabled ? (
            <>
              <Badge tone="success">On</Badge> Each skill you open is recorded, so you can see what changed since your
              last visit.
            </>
          ) : (
            <>
              <Badge tone="neutral">Paused</Badge> Skills you open are not recorded. What was recorded before stays until
              you forget it.
            </>
          )}
        </p>
        <div className="panel-actions">
          <button
            type="button"
            className="button"
            disabled={setTracking.isPending}
            onClick={() => setTracking.mutate({ enabled: !enabled })}
          >
            {enabled ? 'Pause tracking' : 'Resume tracking'}
          </button>
          {setTracking.isError ? (
            <span role="alert" className="error-inline">
              Could not change the setting. Try again.
            </span>
          ) : null}
        </div>
      </section>

      <section className="card panel" aria-labelledby="export-heading">
        <h2 id="export-heading">Export my views</h2>
        <p className="muted">Every skill you opened, when, how often and at which version, as JSON.</p>
        <div className="panel-actions">
          <button type="button" className="button" disabled={exportViews.isPending} onClick={() => exportViews.mutate()}>
            {exportViews.isPending ? 'Exporting…' : 'Export my views'}
          </button>
          {exportViews.isError ? (
            <span role="alert" className="error-inline">
              Could not export your views. Try again.
            </span>
          ) : null}
        </div>
        {exportViews.data ? <ExportResult rows={exportViews.data} /> : null}
      </section>

      <section className="card panel" aria-labelledby="forget-heading">
        <h2 id="forget-heading">Forget my views</h2>
        <p className="muted">
          Deletes every record of the skills you opened. Updated badges and what's new start over from your next visit.
        </p>
        <div className="panel-actions">
          {confirming ? (
            <>
              <span role="alert">Delete all your recorded views? This cannot be undone.</span>
              <button
                type="button"
                className="button danger"
                disabled={forget.isPending}
                onClick={() =>
                  forget.mutate(
                    {},
                    {
                      onSuccess: () => {
                        setConfirming(false);
                        exportViews.reset();
                      },
                    },
                  )
                }
              >
                Yes, forget my views
              </button>
              <button type="button" className="button" disabled={forget.isPending} onClick={() => setConfirming(false)}>
                Cancel
              </button>
            </>
          ) : (
            <button type="button" className="button" onClick={() => setConfirming(true)}>
              Forget my views
            </button>
          )}
        </div>
        {forget.isError ? (
          <p role="alert" className="error-inline">
            Could not forget your views. Try again.
          </p>
        ) : forget.data && !confirming ? (
          <p className="muted small" data-testid="forget-status" aria-live="polite">
            Forgot {plural(forget.data.deleted, 'view')}.
          </p>
        ) : null}
      </section>
    </>
  );
}

type ExportedView = NonNullable<ReturnType<typeof useExportMyViews>['data']>[number];

/** The export on screen, and as a file to download. */
function ExportResult({ rows }: { rows: ExportedView[] }) {
  const json = useMemo(() => JSON.stringify(rows, null, 2), [rows]);
  const [href, setHref] = useState<string | null>(null);
  useEffect(() => {
    const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
    setHref(url);
    return () => URL.revokeObjectURL(url);
  }, [json]);

  return (
    <div data-testid="export-result">
      <p className="muted small" aria-live="polite">
        {rows.length === 0 ? 'No views recorded.' : `${plural(rows.length, 'view')} recorded.`}{' '}
        {href ? (
          <a href={href} download="my-skill-views.json">
            Download JSON
          </a>
        ) : null}
      </p>
      <pre className="export-json" data-testid="export-json">
        {json}
      </pre>
    </div>
  );
}
