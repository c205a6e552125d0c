import type { Sql } from '../../src/db/index.ts';

/**
 * A small table with per-owner visibility and an admin, and a model of what every identity must
 * receive: fault tests write through `NoteModel`, which records each change in commit order, and
 * compare what clients got with `expectedEvents` / `expectedLive`.
 */
export const NOTE_SCHEMA = `
  CREATE TABLE admin (identity text PRIMARY KEY);
  CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
  INSERT INTO admin VALUES ('carol');`;

export const NOTE_TABLES = {
  note: {
    select: ['SELECT * FROM note WHERE owner = :sender', 'SELECT note.* FROM note JOIN admin ON admin.identity = :sender'],
    update: { filter: ['SELECT * FROM note WHERE owner = :sender'], columns: ['body'] },
  },
};

export const NOTE_ADMINS = new Set(['carol']);

export const NOTE_CHANGES = 'subscription($where: note_bool_exp, $after: String) { note_changes(where: $where, after: $after) { op position row { id owner body } old { id owner body } } }';
export const NOTE_LIVE = 'subscription { note(order_by: {id: asc}) { id owner body } }';

export interface Note {
  id: number;
  owner: string;
  body: string;
}

export interface NoteEvent {
  op: string;
  position: string;
  row: Note | null;
  old: Note | null;
}

interface Written {
  op: 'INSERT' | 'UPDATE' | 'DELETE';
  old: Note | null;
  new: Note | null;
}

export class NoteModel {
  readonly rows = new Map<number, Note>();
  readonly written: Written[] = [];

  /** `writer` must be one connection (or writes must not overlap), so the model's order is commit order. */
  constructor(private readonly writer: Sql) {}

  async insert(id: number, owner: string, body: string): Promise<void> {
    await this.writer`INSERT INTO note VALUES (${id}, ${owner}, ${body})`;
    const row = { id, owner, body };
    this.rows.set(id, row);
    this.written.push({ op: 'INSERT', old: null, new: row });
  }

  async update(id: number, set: Partial<Omit<Note, 'id'>>): Promise<void> {
    const old = this.rows.get(id)!;
    const row = { ...old, ...set };
    await this.writer`UPDATE note SET owner = ${row.owner}, body = ${row.body} WHERE id = ${id}`;
    this.rows.set(id, row);
    this.written.push({ op: 'UPDATE', old, new: row });
  }

  async remove(id: number): Promise<void> {
    const old = this.rows.get(id)!;
    await this.writer`DELETE FROM note WHERE id = ${id}`;
    this.rows.delete(id);
    this.written.push({ op: 'DELETE', old, new: null });
  }

  /** The events a `note_changes` subscriber `who` (with an optional `where`) must receive for every change written. */
  expectedEvents(who: string, where: (row: Note) => boolean = () => true): Omit<NoteEvent, 'position'>[] {
    const out: Omit<NoteEvent, 'position'>[] = [];
    for (const w of this.written) {
      const n = w.new !== null && sees(who, w.new) && where(w.new);
      const o = w.old !== null && sees(who, w.old) && where(w.old);
      const op = w.op === 'INSERT' ? (n ? 'INSERT' : null) : w.op === 'DELETE' ? (o ? 'DELETE' : null) : n && o ? 'UPDATE' : n ? 'INSERT' : o ? 'DELETE' : null;
      if (op) out.push({ op, row: op === 'DELETE' ? null : w.new, old: op === 'INSERT' ? null : w.old });
    }
    return out;
  }

  /** The result of `NOTE_LIVE` for `who` now. */
  expectedLive(who: string): Note[] {
    return [...this.rows.values()].filter((r) => sees(who, r)).sort((a, b) => a.id - b.id);
  }
}

export const sees = (who: string, row: Note): boolean => row.owner === who || NOTE_ADMINS.has(who);

/** The events of a `note_changes` operation's results. */
export const noteEvents = (values: { data?: unknown }[]): NoteEvent[] => values.map((v) => (v.data as { note_changes: NoteEvent }).note_changes);

/** Events without positions (to compare with the model), after checking positions strictly increase: nothing came twice. */
export function withoutPositions(events: NoteEvent[]): Omit<NoteEvent, 'position'>[] {
  for (let i = 1; i < events.length; i++) {
    if (BigInt(events[i]!.position) <= BigInt(events[i - 1]!.position)) throw new Error(`positions do not increase at ${i}: ${events[i - 1]!.position} then ${events[i]!.position}`);
  }
  return events.map(({ position: _p, ...e }) => e);
}
