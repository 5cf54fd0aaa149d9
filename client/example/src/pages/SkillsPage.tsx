// The skills list: "Updated" badges from one viewsForSkills call, batched with the what's-new feed in one request.
import { skipToken, useQuery } from '@tanstack/react-query';
import { useEffect, useMemo, useState } from 'react';
import { useTRPC } from '../../../react.ts';
import type { SkillInfo } from '../catalogue.ts';
import { Badge, EmptyState, ErrorState, SkeletonList } from '../components.tsx';
import { useDirectory } from '../directory.tsx';
import { fullDate, plural, timeAgo } from '../format.ts';
import { MarkAllSeenButton } from '../read-state.tsx';
import { Link, paths } from '../router.tsx';

/** The feed is read in full (the server's maximum page) to find skills the catalogue does not list. */
const feedLimit = 50;

export function SkillsPage() {
  const trpc = useTRPC();
  const directory = useDirectory();
  // Fixed for this visit: skills the feed adds later get their badge from the feed itself, so the
  // page never needs a second viewsForSkills round trip.
  const [skillIds] = useState(() => directory.skills.map((s) => s.id));
  const views = useQuery(trpc.viewsForSkills.queryOptions(skillIds.length > 0 ? { skillIds } : skipToken));
  const feed = useQuery(trpc.whatsNew.queryOptions({ limit: feedLimit }));

  const { remember } = directory;
  // Visits of skills this page knows only from the feed, kept when they leave it ("Mark all as seen"): being
  // seen changes no visit. Within one mount nothing else can change them; the next mount asks viewsForSkills.
  const [feedVisits, setFeedVisits] = useState(() => new Map<string, { count: number; last: Date }>());
  useEffect(() => {
    if (!feed.data) return;
    remember(feed.data.items.map(({ skillId, name, slug, category }) => ({ id: skillId, name, slug, category })));
    const items = feed.data.items;
    if (items.length > 0) {
      setFeedVisits((known) => new Map([...known, ...items.map((i): [string, { count: number; last: Date }] => [i.skillId, { count: i.viewCount, last: i.lastViewedAt }])]));
    }
  }, [feed.data, remember]);

  const rows = useMemo(() => {
    const byId = new Map<string, SkillInfo>(directory.skills.map((s) => [s.id, s]));
    const feedItems = new Map((feed.data?.items ?? []).map((item) => [item.skillId, item]));
    for (const { skillId, name, slug, category } of feedItems.values()) {
      if (!byId.has(skillId)) byId.set(skillId, { id: skillId, name, slug, category });
    }
    return [...byId.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((skill) => {
        const view = views.data?.get(skill.id);
        const fromFeed = feedItems.get(skill.id);
        // The view row is the authority when this page asked for it; otherwise being in the feed means updated.
        const updated = view ? view.hasUpdate : fromFeed !== undefined;
        const visits = view ?? fromFeed;
        return {
          skill,
          updated,
          visits: visits ? { count: visits.viewCount, last: visits.lastViewedAt } : (feedVisits.get(skill.id) ?? null),
        };
      });
  }, [directory.skills, feed.data, views.data, feedVisits]);

  const header = (
    <div className="page-header">
      <div>
        <h1>Skills</h1>
        <p className="muted">Your organisation's skills, and which ones changed since you last looked.</p>
      </div>
      <MarkAllSeenButton />
    </div>
  );

  if (views.isPending && skillIds.length > 0) return <>{header}<SkeletonList label="Loading skills…" rows={5} /></>;
  if (feed.isPending) return <>{header}<SkeletonList label="Loading skills…" rows={5} /></>;
  const failed = views.error ?? feed.error;
  if (failed) {
    return (
      <>
        {header}
        <ErrorState
          title="Could not load your skills"
          error={failed}
          onRetry={() => {
            void views.refetch();
            void feed.refetch();
          }}
        />
      </>
    );
  }
  if (rows.length === 0) {
    return (
      <>
        {header}
        <EmptyState title="No skills yet">
          Skills you view will appear here. This example knows the demo catalogue; other organisations' skills
          show up once they appear in your what's-new feed.
        </EmptyState>
      </>
    );
  }

  const updatedCount = rows.filter((r) => r.updated).length;
  return (
    <>
      {header}
      <p className="summary-line" data-testid="updated-count">
        {updatedCount > 0 ? (
          <>
            <strong>{plural(updatedCount, 'skill')}</strong> updated since your last visit ·{' '}
            <Link to={paths.whatsNew}>see what's new</Link>
          </>
        ) : (
          "You're up to date: nothing changed since you last looked."
        )}
      </p>
      <ul className="card-list" aria-label="Skills">
        {rows.map(({ skill, visits, updated }) => (
          <li key={skill.id} className="card skill-row" data-skill-id={skill.id}>
            <div className="skill-row-main">
              <Link to={paths.skill(skill.id)} className="skill-name">
                {skill.name}
              </Link>
              <span className="tag">{skill.category}</span>
            </div>
            <div className="skill-row-meta">
              {visits ? (
                <span className="muted">
                  Last opened{' '}
                  <time dateTime={visits.last.toISOString()} title={fullDate(visits.last)}>
                    {timeAgo(visits.last)}
                  </time>{' '}
                  · {plural(visits.count, 'visit')}
                </span>
              ) : (
                <span className="muted">Not viewed yet</span>
              )}
              {updated ? <Badge tone="accent">Updated</Badge> : null}
            </div>
          </li>
        ))}
      </ul>
    </>
  );
}
