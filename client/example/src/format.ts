// Wording for dates and changes, in one place so every page says things the same way.
import type { RouterOutputs } from '../../index.ts';

export type Change = RouterOutputs['changeSummary']['changes'][number];
export type FeedItem = RouterOutputs['whatsNew']['items'][number];

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
const absolute = new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeStyle: 'short' });

const units: [Intl.RelativeTimeFormatUnit, number][] = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
];

/** "10 days ago", "yesterday", "just now" (days up to a month: "last week" is too vague here). */
export function timeAgo(date: Date, now = Date.now()): string {
  const seconds = Math.round((date.getTime() - now) / 1000);
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
  }
  return 'just now';
}

export function fullDate(date: Date): string {
  return absolute.format(date);
}

export function versionLabel(version: number | null): string {
  return version === null ? 'unpublished' : `v${version}`;
}

export function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** One line per change, e.g. "v1 → v3", "Details edited: name, description", "2 new feedback". */
export function describeChange(change: Change): { title: string; detail: string } {
  switch (change.kind) {
    case 'version_bump':
      return {
        title: change.from === null ? `Published as v${change.to}` : `v${change.from} → v${change.to}`,
        detail: change.from === null ? 'It had no published version when you last looked.' : plural(change.to - change.from, 'new version'),
      };
    case 'details_updated':
      return { title: `Details edited: ${change.fields.join(', ')}`, detail: 'Compared with the version you last saw.' };
    case 'new_feedback':
      return { title: `${change.count} new feedback`, detail: 'From colleagues since your last visit.' };
  }
}

/** What changed on a feed item, in a few words. */
export function feedChange(item: FeedItem): string {
  if (item.currentVersion !== null && item.currentVersion > (item.lastViewedVersion ?? 0)) {
    return item.lastViewedVersion === null ? `Published as v${item.currentVersion}` : `v${item.lastViewedVersion} → v${item.currentVersion}`;
  }
  return 'Details edited';
}

/** The nav badge's text: "7", or "999+" when the server stopped counting at its cap. */
export function countLabel({ count, capped }: { count: number; capped: boolean }): string {
  return capped ? `${count}+` : String(count);
}
