// Small presentational pieces shared by the pages: badges, loading, empty and error states.
import type { ReactNode } from 'react';
import { errorCode } from '../../index.ts';

export function Badge({ tone, children }: { tone: 'accent' | 'neutral' | 'success'; children: ReactNode }) {
  return <span className={`badge badge-${tone}`}>{children}</span>;
}

export function SkeletonList({ rows = 4, label }: { rows?: number; label: string }) {
  return (
    <div role="status" aria-live="polite" className="skeleton-list">
      <span className="visually-hidden">{label}</span>
      {Array.from({ length: rows }, (_, i) => (
        <div key={i} className="skeleton-row" aria-hidden="true">
          <div className="skeleton-line wide" />
          <div className="skeleton-line" />
        </div>
      ))}
    </div>
  );
}

export function EmptyState({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty-state">
      <h2>{title}</h2>
      {children ? <p>{children}</p> : null}
    </div>
  );
}

function errorMessage(error: unknown): string {
  switch (errorCode(error)) {
    case 'NOT_FOUND':
      return 'It may have been removed, or it belongs to another organisation.';
    case 'BAD_REQUEST':
      return 'The request was not valid. Check the address and try again.';
    case 'TOO_MANY_REQUESTS':
      return 'Too many requests right now. Wait a moment and try again.';
    case null:
      return 'The server could not be reached. Check your connection and try again.';
    default:
      return 'Something went wrong on our side. Try again in a moment.';
  }
}

export function ErrorState({ title, error, onRetry }: { title: string; error: unknown; onRetry?: () => void }) {
  return (
    <div role="alert" className="error-state">
      <h2>{title}</h2>
      <p>{errorMessage(error)}</p>
      {onRetry ? (
        <button type="button" className="button" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}
