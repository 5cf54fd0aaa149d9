// The signed-in session: a bearer token from ?token= or the sign-in form, kept in localStorage.
// Claims are decoded only to label the page and spot an expired token early; the server verifies the token.

const storageKey = 'skill-views.token';

export interface Session {
  token: string;
  userId: string;
  tenantId: string;
  expiresAt: Date | null;
}

export type TokenCheck =
  | { ok: true; session: Session }
  | { ok: false; reason: 'malformed' }
  | { ok: false; reason: 'expired'; expiredAt: Date };

/** Accepts a bare token or a pasted "Bearer <token>" line. */
export function normaliseToken(input: string): string {
  return input.trim().replace(/^Bearer\s+/i, '').trim();
}

function decodePart(part: string): unknown {
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

export function checkToken(token: string, now = Date.now()): TokenCheck {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return { ok: false, reason: 'malformed' };
  let claims: unknown;
  try {
    claims = decodePart(parts[1]);
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (typeof claims !== 'object' || claims === null) return { ok: false, reason: 'malformed' };
  const { sub, tid, exp } = claims as Record<string, unknown>;
  if (typeof sub !== 'string' || typeof tid !== 'string') return { ok: false, reason: 'malformed' };
  const expiresAt = typeof exp === 'number' ? new Date(exp * 1000) : null;
  if (expiresAt && expiresAt.getTime() <= now) return { ok: false, reason: 'expired', expiredAt: expiresAt };
  return { ok: true, session: { token, userId: sub.toLowerCase(), tenantId: tid.toLowerCase(), expiresAt } };
}

/** A token passed as ?token= wins; it is stored and removed from the address bar (and so from history). */
export function initialToken(): string | null {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    url.searchParams.delete('token');
    window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
    const token = normaliseToken(fromUrl);
    saveToken(token);
    return token;
  }
  try {
    return window.localStorage.getItem(storageKey);
  } catch {
    return null;
  }
}

export function saveToken(token: string | null): void {
  try {
    if (token) window.localStorage.setItem(storageKey, token);
    else window.localStorage.removeItem(storageKey);
  } catch {
    // Storage can be unavailable (private mode, blocked cookies): the session then lasts for this page only.
  }
}
