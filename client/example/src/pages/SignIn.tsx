// Sign-in: paste a bearer token (npm start prints one per demo user). Also shown when a token stops working.
import { useState, type FormEvent } from 'react';
import { checkToken, normaliseToken } from '../session.ts';
import { fullDate } from '../format.ts';

export type SignInReason =
  | { kind: 'signed-out' }
  | { kind: 'expired'; expiredAt: Date }
  | { kind: 'malformed' }
  | { kind: 'rejected' };

function reasonMessage(reason: SignInReason): string | null {
  switch (reason.kind) {
    case 'signed-out':
      return null;
    case 'expired':
      return `Your session expired on ${fullDate(reason.expiredAt)}. Sign in again to continue.`;
    case 'malformed':
      return 'The saved token is not a valid sign-in token. Sign in again to continue.';
    case 'rejected':
      return 'The server did not accept your token: it may have expired or been revoked. Sign in again to continue.';
  }
}

export function SignIn({ reason, onSignIn }: { reason: SignInReason; onSignIn: (token: string) => void }) {
  const [value, setValue] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const message = reasonMessage(reason);

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const token = normaliseToken(value);
    const check = checkToken(token);
    if (check.ok) {
      onSignIn(token);
      return;
    }
    setProblem(
      check.reason === 'expired'
        ? `That token expired on ${fullDate(check.expiredAt)}. Restart the server for fresh tokens.`
        : "That doesn't look like a sign-in token. Copy the whole line after “Bearer”.",
    );
  };

  return (
    <main className="sign-in">
      <div className="card sign-in-card">
        <h1>Sign in to Skills</h1>
        {message ? (
          <p role="alert" className="notice" data-testid="sign-in-reason">
            {message}
          </p>
        ) : null}
        <p className="muted">
          Paste a bearer token. <code>npm start</code> prints one for each demo user; you can also open this page with{' '}
          <code>?token=…</code>.
        </p>
        <form onSubmit={submit}>
          <label htmlFor="token">Bearer token</label>
          <textarea
            id="token"
            name="token"
            rows={4}
            spellCheck={false}
            autoComplete="off"
            placeholder="eyJhbGciOiJIUzI1NiIs…"
            value={value}
            onChange={(e) => {
              setValue(e.target.value);
              setProblem(null);
            }}
            aria-invalid={problem ? true : undefined}
            aria-describedby={problem ? 'token-problem' : undefined}
          />
          {problem ? (
            <p id="token-problem" className="error-inline">
              {problem}
            </p>
          ) : null}
          <button type="submit" className="button primary" disabled={value.trim() === ''}>
            Sign in
          </button>
        </form>
      </div>
    </main>
  );
}
