import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';
import { compile } from './support/rules.ts';

// Mutations on auto-updatable views: a view has no PRIMARY KEY, so its config declares one
// (`primaryKey`), which gives it `_by_pk` and write rules. A declared key is not known to be
// unique, so it is never used to decide visibility or which rows a filter reaches.
const db = useTestDatabase();
let api: TestGateway;

const OWN_NOTE = 'SELECT * FROM my_note WHERE owner = :sender';
const OWN_ITEM = 'SELECT * FROM item_v WHERE owner = :sender';
const TABLES = {
  my_note: {
    primaryKey: ['id'],
    select: OWN_NOTE,
    insert: { check: ["SELECT * FROM my_note WHERE owner = :sender AND body <> 'no'"], columns: ['id', 'body'], set: { owner: ':sender' } },
    update: { filter: OWN_NOTE, columns: ['body'] },
    delete: OWN_NOTE,
  },
  // grp repeats: declared as the key, it is not unique.
  item_v: {
    primaryKey: ['grp'],
    select: [OWN_ITEM, "SELECT * FROM item_v WHERE body = 'public'"],
    update: { filter: OWN_ITEM, columns: ['body'] },
    delete: OWN_ITEM,
  },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE note (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL, archived boolean NOT NULL DEFAULT false);
    CREATE VIEW my_note AS SELECT id, owner, body FROM note WHERE NOT archived;
    INSERT INTO note VALUES (1, 'alice', 'a1', false), (2, 'bob', 'b1', false), (3, 'alice', 'old', true);
    CREATE TABLE item (id int PRIMARY KEY, grp int NOT NULL, owner text NOT NULL, body text NOT NULL);
    CREATE VIEW item_v AS SELECT grp, owner, body FROM item;
    INSERT INTO item VALUES (1, 7, 'alice', 'mine'), (2, 7, 'bob', 'bob secret'), (3, 8, 'bob', 'public');
  `);
  api = await startGateway(db, { tables: TABLES });
});

const notes = async () => (await db.sql`SELECT id, owner, body FROM note ORDER BY id`).map((r) => ({ ...r }));
const items = async () => (await db.sql`SELECT id, body FROM item ORDER BY id`).map((r) => ({ ...r }));

describe('mutations on a view with a declared key', () => {
  it('insert through the view with presets and check', async () => {
    const res = await api.gql('alice', 'mutation { insert_my_note_one(object: {id: 10, body: "hi"}) { id owner body } }');
    expect(res).toEqual({ data: { insert_my_note_one: { id: 10, owner: 'alice', body: 'hi' } } });
    const before = await notes();
    const refused = await api.gql('alice', 'mutation { insert_my_note(objects: [{id: 11, body: "ok"}, {id: 12, body: "no"}]) { affected_rows } }');
    expect(refused.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect(await notes()).toEqual(before);
  });

  it('_by_pk reads, updates and deletes only what the rules allow', async () => {
    expect((await api.gql('alice', '{ my_note_by_pk(id: 2) { id } }')).data).toEqual({ my_note_by_pk: null });
    expect((await api.gql('bob', '{ my_note_by_pk(id: 2) { body } }')).data).toEqual({ my_note_by_pk: { body: 'b1' } });
    expect((await api.gql('alice', 'mutation { update_my_note_by_pk(pk_columns: {id: 2}, _set: {body: "x"}) { id } }')).data).toEqual({ update_my_note_by_pk: null });
    expect((await api.gql('alice', 'mutation { update_my_note_by_pk(pk_columns: {id: 1}, _set: {body: "a2"}) { body } }')).data).toEqual({ update_my_note_by_pk: { body: 'a2' } });
    expect((await api.gql('alice', 'mutation { delete_my_note(where: {id: {_in: [2, 3, 10]}}) { affected_rows } }')).data).toEqual({ delete_my_note: { affected_rows: 1 } });
    expect(await notes()).toEqual([{ id: 1, owner: 'alice', body: 'a2' }, { id: 2, owner: 'bob', body: 'b1' }, { id: 3, owner: 'alice', body: 'old' }]);
  });
});

describe('a declared key that is not unique', () => {
  it('does not let a hidden row through beside a visible one with the same key', async () => {
    const res = await api.gql('alice', '{ item_v(order_by: {body: asc}) { grp body } }');
    expect(res.data).toEqual({ item_v: [{ grp: 7, body: 'mine' }, { grp: 8, body: 'public' }] });
  });

  it('a filtered update or delete reaches only the visible rows it matches', async () => {
    const before = await items();
    const upd = await api.gql('alice', 'mutation { update_item_v(where: {grp: {_eq: 7}}, _set: {body: "changed"}) { affected_rows } }');
    expect(upd.data).toEqual({ update_item_v: { affected_rows: 1 } });
    expect(await items()).toEqual(before.map((r) => (r['id'] === 1 ? { ...r, body: 'changed' } : r)));
    const del = await api.gql('alice', 'mutation { delete_item_v(where: {body: {_eq: "changed"}}) { affected_rows } }');
    expect(del.data).toEqual({ delete_item_v: { affected_rows: 1 } });
    expect((await items()).map((r) => r['id'])).toEqual([2, 3]);
  });
});

describe('check', () => {
  it('refuses a key on a table, a key naming no column, and write rules on a view without a key', async () => {
    await expect(compile(db, { note: { select: 'public', primaryKey: ['id'] } })).rejects.toThrow(/"note" is a table; its key is its PRIMARY KEY/);
    await expect(compile(db, { my_note: { select: 'public', primaryKey: ['nope'] } })).rejects.toThrow(/view "my_note" has no column "nope"/);
    await expect(compile(db, { my_note: { select: 'public', delete: OWN_NOTE } })).rejects.toThrow(/has no primary key[\s\S]*Declare the view's key/);
  });
});
