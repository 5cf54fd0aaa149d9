// A plain in-memory model of the read state (DESIGN "What changed since seen"), for the property test: what each
// user saw of each skill, and what every read procedure should therefore answer.

export type Field = 'name' | 'description';
export type Status = 'draft' | 'published' | 'archived';

export interface Content {
  name: string;
  description: string;
  /** Published version number, null when none is published. */
  publishedVersion: number | null;
}

export interface ModelSkill extends Content {
  status: Status;
  /** Version snapshots by number (1, 2, …). */
  versions: { name: string; description: string }[];
  /** updated_at is inside the feed's window (false after a backdate, true again at the next content change). */
  inWindow: boolean;
  /** Authors of the skill's feedback, oldest first (null: anonymous). */
  feedback: (number | null)[];
}

export interface ModelView {
  /** The content the user's last recordView or effective markSeen saw. */
  seen: Content;
  /** How many of the skill's feedback rows existed then. */
  feedbackSeen: number;
  viewCount: number;
  lastViewedVersion: number | null;
}

export type ExpectedChange =
  | { kind: 'version_bump'; from: number | null; to: number }
  | { kind: 'details_updated'; fields: Field[] }
  | { kind: 'new_feedback'; count: number };

export class ReadStateModel {
  readonly skills: ModelSkill[];
  /** views[user][skill]. */
  readonly views: (ModelView | undefined)[][];
  readonly tracking: boolean[];

  constructor(userCount: number, skills: ModelSkill[]) {
    this.skills = skills;
    this.views = Array.from({ length: userCount }, () => skills.map(() => undefined));
    this.tracking = Array.from({ length: userCount }, () => true);
  }

  /** Sets a skill's content; a real change moves updated_at to now (inside the window). */
  setContent(skill: number, next: Content) {
    const s = this.skills[skill]!;
    if (s.name !== next.name || s.description !== next.description || s.publishedVersion !== next.publishedVersion) {
      Object.assign(s, next);
      s.inWindow = true;
    }
  }

  contentUnseen(user: number, skill: number): boolean {
    const v = this.views[user]![skill];
    if (!v) return false;
    const s = this.skills[skill]!;
    return (
      v.seen.name !== s.name ||
      v.seen.description !== s.description ||
      (s.publishedVersion !== null && s.publishedVersion !== v.seen.publishedVersion)
    );
  }

  /** Feedback by others (anonymous included) the user's last seen statement could not see. */
  unseenFeedback(user: number, skill: number): number {
    const v = this.views[user]![skill];
    if (!v) return 0;
    return this.skills[skill]!.feedback.slice(v.feedbackSeen).filter((author) => author !== user).length;
  }

  private see(user: number, skill: number) {
    const s = this.skills[skill]!;
    const v = this.views[user]![skill]!;
    v.seen = { name: s.name, description: s.description, publishedVersion: s.publishedVersion };
    v.feedbackSeen = s.feedback.length;
  }

  /** recordView: returns whether it was tracked. */
  recordView(user: number, skill: number): boolean {
    if (!this.tracking[user]) return false;
    const s = this.skills[skill]!;
    const v = this.views[user]![skill];
    if (!v) {
      this.views[user]![skill] = {
        seen: { name: s.name, description: s.description, publishedVersion: s.publishedVersion },
        feedbackSeen: s.feedback.length,
        viewCount: 1,
        lastViewedVersion: s.publishedVersion,
      };
    } else {
      v.viewCount += 1;
      // greatest() ignores NULL: the version seen never goes backwards nor to null.
      if (s.publishedVersion !== null && (v.lastViewedVersion === null || s.publishedVersion > v.lastViewedVersion)) {
        v.lastViewedVersion = s.publishedVersion;
      }
      this.see(user, skill);
    }
    return true;
  }

  /** markSeen (skills: null = markAllSeen): rows viewed with something unseen become seen; returns how many. */
  markSeen(user: number, skills: readonly number[] | null): number {
    const targets = skills ? [...new Set(skills)] : this.skills.map((_, i) => i);
    let marked = 0;
    for (const skill of targets) {
      if (!this.views[user]![skill]) continue;
      if (this.contentUnseen(user, skill) || this.unseenFeedback(user, skill) > 0) {
        this.see(user, skill);
        marked += 1;
      }
    }
    return marked;
  }

  /** changeSummary's `changes` for a viewed skill, in the order the procedure lists them. */
  expectedChanges(user: number, skill: number): ExpectedChange[] {
    const v = this.views[user]![skill];
    if (!v) return [];
    const s = this.skills[skill]!;
    const changes: ExpectedChange[] = [];
    if (this.contentUnseen(user, skill)) {
      if (s.publishedVersion !== null && s.publishedVersion !== v.seen.publishedVersion) {
        changes.push({ kind: 'version_bump', from: v.seen.publishedVersion, to: s.publishedVersion });
      }
      const fields: Field[] = [];
      if (v.seen.name !== s.name) fields.push('name');
      if (v.seen.description !== s.description) fields.push('description');
      if (fields.length > 0) changes.push({ kind: 'details_updated', fields });
    }
    const feedback = this.unseenFeedback(user, skill);
    if (feedback > 0) changes.push({ kind: 'new_feedback', count: feedback });
    return changes;
  }

  /** The skills whatsNew lists for the user (in no particular order). */
  expectedFeed(user: number): number[] {
    return this.skills
      .map((s, i) => (this.contentUnseen(user, i) && s.status === 'published' && s.inWindow ? i : -1))
      .filter((i) => i >= 0);
  }
}
