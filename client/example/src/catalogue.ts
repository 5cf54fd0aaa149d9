// The demo catalogue the example lists, copied from db/seed.ts (the server has no "list skills" procedure).
// Kept as literals: importing db/seed.ts would pull the database layer into the browser bundle.
// tests/e2e/catalogue.e2e.ts checks these against the seed and the running server.

export interface SkillInfo {
  id: string;
  name: string;
  slug: string;
  category: string;
}

export interface DemoTenant {
  name: string;
  users: Record<string, string>;
  skills: SkillInfo[];
}

/** Published demo skills with fixed ids (`demoIds` in db/seed.ts), by tenant id. */
export const demoCatalogue: Record<string, DemoTenant> = {
  'a1000000-0000-4000-8000-000000000001': {
    name: 'Acme Corp',
    users: {
      'a1000000-0000-4000-8000-0000000000a1': 'Ada Lovelace',
      'a1000000-0000-4000-8000-0000000000a2': 'Grace Hopper',
      'a1000000-0000-4000-8000-0000000000a3': 'Linus Torvalds',
    },
    skills: [
      { id: 'a1000000-0000-4000-8000-00000000c001', name: 'TypeScript Fundamentals', slug: 'typescript-fundamentals', category: 'Engineering' },
      { id: 'a1000000-0000-4000-8000-00000000c002', name: 'SQL Window Functions', slug: 'sql-window-functions', category: 'Data' },
      { id: 'a1000000-0000-4000-8000-00000000c003', name: 'Incident Response', slug: 'incident-response', category: 'Operations' },
      { id: 'a1000000-0000-4000-8000-00000000c004', name: 'React Performance', slug: 'react-performance', category: 'Engineering' },
    ],
  },
  'b2000000-0000-4000-8000-000000000002': {
    name: 'Globex',
    users: {
      'b2000000-0000-4000-8000-0000000000b1': 'Hank Scorpio',
      'b2000000-0000-4000-8000-0000000000b2': 'Marge Simpson',
    },
    skills: [
      { id: 'b2000000-0000-4000-8000-00000000d001', name: 'Doomsday Devices', slug: 'doomsday-devices', category: 'Engineering' },
      { id: 'b2000000-0000-4000-8000-00000000d002', name: 'Hammock-Driven Development', slug: 'hammock-driven-development', category: 'Culture' },
      { id: 'b2000000-0000-4000-8000-00000000d003', name: 'Nuclear Safety', slug: 'nuclear-safety', category: 'Operations' },
    ],
  },
};
