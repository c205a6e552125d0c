import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// Rows a mutation wrote are found again by primary key (issue 15.3 and 15.4): triggers that
// rewrite the row after the write (a new row version, at a new ctid) cannot hide it from the
// check rules or from `returning`, and an upsert's update is the same update as `update_t`.
const db = useTestDatabase();
let api: TestGateway;

const OWN_NOTE = 'SELECT * FROM note WHERE owner = :sender';
const OWN_DOC = 'SELECT * FROM doc WHERE owner = :sender';
const TABLES = {
  note: {
    select: [OWN_NOTE],
    insert: { check: [OWN_NOTE], columns: ['id', 'owner', 'body'] },
    update: { filter: [OWN_NOTE], check: [OWN_NOTE], columns: ['owner', 'body'] },
    delete: [OWN_NOTE],
  },
  doc: {
    select: [OWN_DOC],
    insert: { check: [OWN_DOC], columns: ['id', 'owner', 'title'] },
    // `editor` is listed so that the enum offers it: the preset must still win.
    update: { filter: [OWN_DOC], check: ['SELECT * FROM doc WHERE length(title) <= 10'], columns: ['title', 'editor'], set: { editor: ':sender' } },
  },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL, touched int NOT NULL DEFAULT 0);
    -- After every insert and update, the row is written once more (a new version at a new ctid).
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF pg_trigger_depth() = 1 THEN UPDATE note SET touched = touched + 1 WHERE id = NEW.id; END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER note_touch_insert AFTER INSERT ON note FOR EACH ROW EXECUTE FUNCTION touch();
    CREATE TRIGGER note_touch_update AFTER UPDATE ON note FOR EACH ROW EXECUTE FUNCTION touch();
    -- Before the write, a body of 'hijack' hands the row to bob.
    CREATE FUNCTION hijack() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.body = 'hijack' THEN NEW.owner := 'bob'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER note_hijack BEFORE INSERT OR UPDATE ON note FOR EACH ROW EXECUTE FUNCTION hijack();
    INSERT INTO note (id, owner, body) VALUES (1, 'alice', 'first'), (2, 'bob', 'bobs');

    CREATE TABLE doc (id int PRIMARY KEY, owner text NOT NULL, title text NOT NULL, editor text);
    INSERT INTO doc VALUES (1, 'alice', 'one', 'nobody'), (2, 'alice', 'two', 'nobody'), (3, 'bob', 'three', 'nobody');
  `);
  api = await startGateway(db, { tables: TABLES });
});

const notes = async () => (await db.sql`SELECT id, owner, body FROM note ORDER BY id`).map((r) => ({ ...r }));
const docs = async () => (await db.sql`SELECT id, owner, title, editor FROM doc ORDER BY id`).map((r) => ({ ...r }));
const code = (res: { errors?: { extensions?: Record<string, unknown> }[] }) => res.errors?.[0]?.extensions?.['code'];

describe('check rules see rows that triggers rewrote', () => {
  it('an insert of a row owned by someone else is FORBIDDEN and writes nothing', async () => {
    const before = await notes();
    const res = await api.gql('alice', 'mutation { insert_note(objects: [{id: 10, owner: "bob", body: "planted"}]) { affected_rows } }');
    expect(code(res)).toBe('FORBIDDEN');
    expect(await notes()).toEqual(before);
  });
  it('an update giving the row to someone else is FORBIDDEN and changes nothing', async () => {
    const before = await notes();
    const res = await api.gql('alice', 'mutation { update_note_by_pk(pk_columns: {id: 1}, _set: {owner: "bob"}) { id } }');
    expect(code(res)).toBe('FORBIDDEN');
    const many = await api.gql('alice', 'mutation { update_note(where: {}, _set: {owner: "bob"}) { affected_rows } }');
    expect(code(many)).toBe('FORBIDDEN');
    expect(await notes()).toEqual(before);
  });
  it('a BEFORE trigger that changes the owner is caught on insert and on update', async () => {
    const before = await notes();
    const ins = await api.gql('alice', 'mutation { insert_note_one(object: {id: 11, owner: "alice", body: "hijack"}) { id } }');
    expect(code(ins)).toBe('FORBIDDEN');
    const upd = await api.gql('alice', 'mutation { update_note_by_pk(pk_columns: {id: 1}, _set: {body: "hijack"}) { id } }');
    expect(code(upd)).toBe('FORBIDDEN');
    expect(await notes()).toEqual(before);
  });
  it('legitimate writes still work and return the rewritten rows; delete still works', async () => {
    const ins = await api.gql('alice', 'mutation { insert_note(objects: [{id: 12, owner: "alice", body: "a"}, {id: 13, owner: "alice", body: "b"}]) { affected_rows returning { id body touched } } }');
    expect(ins).toEqual({ data: { insert_note: { affected_rows: 2, returning: [{ id: 12, body: 'a', touched: 1 }, { id: 13, body: 'b', touched: 1 }] } } });
    const upd = await api.gql('alice', 'mutation { update_note_by_pk(pk_columns: {id: 12}, _set: {body: "c"}) { id body touched } }');
    expect(upd).toEqual({ data: { update_note_by_pk: { id: 12, body: 'c', touched: 2 } } });
    const del = await api.gql('alice', 'mutation { delete_note(where: {id: {_in: [12, 13, 2]}}) { affected_rows returning { id } } }');
    const deleted = del.data?.['delete_note'] as { affected_rows: number; returning: { id: number }[] };
    expect(deleted.affected_rows).toBe(2);
    expect(deleted.returning.map((r) => r.id).sort()).toEqual([12, 13]);
    expect((await notes()).map((n) => n.id)).toEqual([1, 2]);
  });
});

describe('upsert is the update of update_t', () => {
  it('the conflict update applies the update presets, as update_doc_by_pk does; update_columns: [] does nothing', async () => {
    const upd = await api.gql('alice', 'mutation { update_doc_by_pk(pk_columns: {id: 1}, _set: {title: "uno"}) { title editor } }');
    expect(upd).toEqual({ data: { update_doc_by_pk: { title: 'uno', editor: 'alice' } } });
    const ups = await api.gql('alice', 'mutation { insert_doc(objects: [{id: 2, owner: "alice", title: "dos"}], on_conflict: {constraint: doc_pkey, update_columns: [title]}) { affected_rows returning { title editor } } }');
    expect(ups).toEqual({ data: { insert_doc: { affected_rows: 1, returning: [{ title: 'dos', editor: 'alice' }] } } });
    await db.sql`UPDATE doc SET editor = 'nobody' WHERE id = 2`;
    const nothing = await api.gql('alice', 'mutation { insert_doc(objects: [{id: 2, owner: "alice", title: "zwei"}], on_conflict: {constraint: doc_pkey, update_columns: []}) { affected_rows } }');
    expect(nothing).toEqual({ data: { insert_doc: { affected_rows: 0 } } });
    expect((await docs()).find((d) => d.id === 2)).toEqual({ id: 2, owner: 'alice', title: 'dos', editor: 'nobody' });
  });
  it('the conflict update is checked by the update check rules, as update_doc is', async () => {
    const before = await docs();
    const upd = await api.gql('alice', 'mutation { update_doc(where: {id: {_eq: 1}}, _set: {title: "far too long a title"}) { affected_rows } }');
    expect(code(upd)).toBe('FORBIDDEN');
    const ups = await api.gql('alice', 'mutation { insert_doc(objects: [{id: 1, owner: "alice", title: "far too long a title"}], on_conflict: {constraint: doc_pkey, update_columns: [title]}) { affected_rows } }');
    expect(code(ups)).toBe('FORBIDDEN');
    expect(await docs()).toEqual(before);
    // The preset is part of the update: with it applied the row still passes, and says who wrote it.
    await db.sql`UPDATE doc SET editor = 'nobody' WHERE id = 1`;
    const ok = await api.gql('alice', 'mutation { insert_doc_one(object: {id: 1, owner: "alice", title: "short"}, on_conflict: {constraint: doc_pkey, update_columns: [title]}) { editor } }');
    expect(ok).toEqual({ data: { insert_doc_one: { editor: 'alice' } } });
  });
  it('a preset column cannot be set through update_columns', async () => {
    const before = await docs();
    const res = await api.gql('alice', 'mutation { insert_doc(objects: [{id: 1, owner: "alice", title: "t"}], on_conflict: {constraint: doc_pkey, update_columns: [title, editor]}) { affected_rows } }');
    expect(code(res)).toBe('FORBIDDEN');
    expect(res.errors?.[0]?.message).toContain('editor');
    expect(await docs()).toEqual(before);
  });
  it('on_conflict.where tests the existing row; a row it selects gets the presets; hidden rows are not touched', async () => {
    const skipped = await api.gql('alice', 'mutation { insert_doc(objects: [{id: 2, owner: "alice", title: "x"}], on_conflict: {constraint: doc_pkey, update_columns: [title], where: {title: {_eq: "other"}}}) { affected_rows } }');
    expect(skipped).toEqual({ data: { insert_doc: { affected_rows: 0 } } });
    const matched = await api.gql('alice', 'mutation { insert_doc(objects: [{id: 2, owner: "alice", title: "x"}], on_conflict: {constraint: doc_pkey, update_columns: [title], where: {title: {_eq: "dos"}}}) { affected_rows } }');
    expect(matched).toEqual({ data: { insert_doc: { affected_rows: 1 } } });
    expect((await docs()).find((d) => d.id === 2)).toEqual({ id: 2, owner: 'alice', title: 'x', editor: 'alice' });
    // Doc 3 is bob's and hidden from alice: her filter matches it, yet it is not updated.
    const hidden = await api.gql('alice', 'mutation { insert_doc(objects: [{id: 3, owner: "alice", title: "x"}], on_conflict: {constraint: doc_pkey, update_columns: [title], where: {title: {_eq: "three"}}}) { affected_rows } }');
    expect(hidden).toEqual({ data: { insert_doc: { affected_rows: 0 } } });
    expect((await docs()).find((d) => d.id === 3)).toEqual({ id: 3, owner: 'bob', title: 'three', editor: 'nobody' });
  });
});
