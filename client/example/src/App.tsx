// The example app: a session gate (sign-in), then the skills list, the what's-new feed, skill pages and privacy, kept
// live by one onChange subscription.
import { useEffect, useState } from 'react';
import { SkillViewsProvider, useSkillViewsLive } from '../../react.ts';
import { EmptyState } from './components.tsx';
import { DirectoryProvider, useDirectory } from './directory.tsx';
import { PrivacyPage } from './pages/PrivacyPage.tsx';
import { SignIn } from './pages/SignIn.tsx';
import { SkillPage } from './pages/SkillPage.tsx';
import { SkillsPage } from './pages/SkillsPage.tsx';
import { WhatsNewPage } from './pages/WhatsNewPage.tsx';
import { LiveIndicator, NavCount } from './read-state.tsx';
import { Link, parseRoute, paths, usePathname, type Route } from './router.tsx';
import { checkToken, initialToken, saveToken, type Session } from './session.ts';

export function App() {
  const [token, setToken] = useState(initialToken);
  // The token the server last refused; kept until the user signs in again.
  const [rejectedToken, setRejectedToken] = useState<string | null>(null);

  const signIn = (next: string) => {
    saveToken(next);
    setRejectedToken(null);
    setToken(next);
  };
  const signOut = () => {
    saveToken(null);
    setRejectedToken(null);
    setToken(null);
  };

  if (!token) return <SignIn reason={{ kind: 'signed-out' }} onSignIn={signIn} />;
  const check = checkToken(token);
  if (!check.ok) {
    const reason = check.reason === 'expired' ? { kind: 'expired' as const, expiredAt: check.expiredAt } : { kind: 'malformed' as const };
    return <SignIn reason={reason} onSignIn={signIn} />;
  }
  if (rejectedToken === token) return <SignIn reason={{ kind: 'rejected' }} onSignIn={signIn} />;

  return (
    // A new token is a new user: keyed, so no cached data of the previous one survives.
    <SkillViewsProvider key={token} url="/trpc" getToken={() => token} onUnauthorized={() => setRejectedToken(token)}>
      <DirectoryProvider session={check.session}>
        <Shell session={check.session} onSignOut={signOut} />
      </DirectoryProvider>
    </SkillViewsProvider>
  );
}

const titles: Record<Route['page'], string> = {
  skills: 'Skills',
  'whats-new': "What's new",
  privacy: 'Privacy',
  skill: 'Skill',
  'not-found': 'Not found',
};

function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const route = parseRoute(usePathname());
  const { userName, tenantName } = useDirectory();
  // The app's live subscription (badges, the feed and the nav count refetch as skills change), held by the shell so
  // it does not depend on the indicator being shown; the indicator shares the same stream.
  useSkillViewsLive();
  useEffect(() => {
    document.title = `${titles[route.page]} · Skills`;
  }, [route.page]);

  return (
    <>
      <header className="topbar">
        <div className="topbar-inner">
          <Link to={paths.skills} className="brand">
            <span className="brand-mark" aria-hidden="true" />
            Skills
          </Link>
          <nav className="nav" aria-label="Main">
            <Link to={paths.skills} aria-current={route.page === 'skills' ? 'page' : undefined}>
              All skills
            </Link>
            <Link to={paths.whatsNew} aria-current={route.page === 'whats-new' ? 'page' : undefined}>
              What's new
              <NavCount />
            </Link>
            <Link to={paths.privacy} aria-current={route.page === 'privacy' ? 'page' : undefined}>
              Privacy
            </Link>
            <LiveIndicator />
          </nav>
          <div className="user">
            <span className="user-name" data-testid="signed-in-as">
              {userName ?? `User ${session.userId.slice(-4)}`}
              {tenantName ? <span className="muted"> · {tenantName}</span> : null}
            </span>
            <button type="button" className="link-button" onClick={onSignOut}>
              Sign out
            </button>
          </div>
        </div>
      </header>
      <main className="content">
        <Page route={route} />
      </main>
    </>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'skills':
      return <SkillsPage />;
    case 'whats-new':
      return <WhatsNewPage />;
    case 'privacy':
      return <PrivacyPage />;
    case 'skill':
      return <SkillPage key={route.skillId} skillId={route.skillId} />;
    case 'not-found':
      return (
        <EmptyState title="Page not found">
          <Link to={paths.skills}>Back to all skills</Link>
        </EmptyState>
      );
  }
}
