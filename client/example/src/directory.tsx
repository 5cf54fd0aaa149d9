// The skills this browser knows about for the signed-in user: the demo catalogue plus every skill the
// what's-new feed has shown (remembered in localStorage, so a skill stays listed after its update is seen).
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from 'react';
import { demoCatalogue, type SkillInfo } from './catalogue.ts';
import type { Session } from './session.ts';

export interface Directory {
  tenantName: string | null;
  userName: string | null;
  /** Known skills, by name. */
  skills: SkillInfo[];
  find: (skillId: string) => SkillInfo | undefined;
  /** Adds or refreshes skills seen in server responses. */
  remember: (skills: SkillInfo[]) => void;
}

const DirectoryContext = createContext<Directory | null>(null);

function storageKey(session: Session) {
  return `skill-views.known.${session.tenantId}.${session.userId}`;
}

function isSkillInfo(value: unknown): value is SkillInfo {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.id === 'string' && typeof v.name === 'string' && typeof v.slug === 'string' && typeof v.category === 'string';
}

function loadRemembered(session: Session): SkillInfo[] {
  try {
    const parsed: unknown = JSON.parse(window.localStorage.getItem(storageKey(session)) ?? '[]');
    return Array.isArray(parsed) ? parsed.filter(isSkillInfo) : [];
  } catch {
    return [];
  }
}

export function DirectoryProvider({ session, children }: { session: Session; children: ReactNode }) {
  const tenant = demoCatalogue[session.tenantId];
  const [remembered, setRemembered] = useState(() => loadRemembered(session));

  const remember = useCallback(
    (incoming: SkillInfo[]) => {
      setRemembered((current) => {
        const byId = new Map(current.map((s) => [s.id, s]));
        let changed = false;
        for (const { id, name, slug, category } of incoming) {
          const known = byId.get(id);
          if (known && known.name === name && known.slug === slug && known.category === category) continue;
          byId.set(id, { id, name, slug, category });
          changed = true;
        }
        if (!changed) return current;
        const next = [...byId.values()];
        try {
          window.localStorage.setItem(storageKey(session), JSON.stringify(next));
        } catch {
          // Not persisted; still known for this page.
        }
        return next;
      });
    },
    [session],
  );

  const value = useMemo<Directory>(() => {
    const byId = new Map<string, SkillInfo>();
    for (const skill of tenant?.skills ?? []) byId.set(skill.id, skill);
    // What the server said last is fresher than the built-in catalogue.
    for (const skill of remembered) byId.set(skill.id, skill);
    const skills = [...byId.values()].sort((a, b) => a.name.localeCompare(b.name));
    return {
      tenantName: tenant?.name ?? null,
      userName: tenant?.users[session.userId] ?? null,
      skills,
      find: (skillId) => byId.get(skillId.toLowerCase()),
      remember,
    };
  }, [tenant, remembered, remember, session.userId]);

  return <DirectoryContext.Provider value={value}>{children}</DirectoryContext.Provider>;
}

export function useDirectory(): Directory {
  const directory = useContext(DirectoryContext);
  if (!directory) throw new Error('useDirectory must be used inside <DirectoryProvider>');
  return directory;
}
