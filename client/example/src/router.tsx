// A minimal history-API router: four pages do not need a routing library.
import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from 'react';

export type Route =
  | { page: 'skills' }
  | { page: 'whats-new' }
  | { page: 'privacy' }
  | { page: 'skill'; skillId: string }
  | { page: 'not-found' };

export const paths = {
  skills: '/',
  whatsNew: '/whats-new',
  privacy: '/privacy',
  skill: (skillId: string) => `/skills/${encodeURIComponent(skillId)}`,
};

export function parseRoute(pathname: string): Route {
  if (pathname === '/' || pathname === '') return { page: 'skills' };
  if (pathname === '/whats-new') return { page: 'whats-new' };
  if (pathname === '/privacy') return { page: 'privacy' };
  const skill = /^\/skills\/([^/]+)\/?$/.exec(pathname);
  if (skill?.[1]) return { page: 'skill', skillId: decodeURIComponent(skill[1]) };
  return { page: 'not-found' };
}

const navigationEvent = 'skill-views:navigate';

function subscribe(onChange: () => void) {
  window.addEventListener('popstate', onChange);
  window.addEventListener(navigationEvent, onChange);
  return () => {
    window.removeEventListener('popstate', onChange);
    window.removeEventListener(navigationEvent, onChange);
  };
}

export function usePathname(): string {
  return useSyncExternalStore(subscribe, () => window.location.pathname);
}

export function navigate(to: string): void {
  if (to === window.location.pathname) return;
  window.history.pushState(null, '', to);
  window.scrollTo(0, 0);
  window.dispatchEvent(new Event(navigationEvent));
}

/** An ordinary link (middle-click and "open in new tab" keep working) that navigates in place. */
export function Link({ to, onClick, ...rest }: { to: string } & AnchorHTMLAttributes<HTMLAnchorElement>) {
  const handleClick = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={handleClick} {...rest} />;
}
