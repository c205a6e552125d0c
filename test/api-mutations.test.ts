import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

// Write rules (docs/rules.md, "Writes") end to end: presets, column allowlists, checks after the write,
// update filters, delete rules, upserts, and one transaction per mutation operation.
const db = useTestDatabase();
let api: TestGateway;

const OWN = 'SELECT * FROM note WHERE owner = :sender';
const TABLES = {
  board: { select: 'SELECT b.* FROM board b JOIN seat s ON s.board_id = b.id WHERE s.identity = :sender' },
  // Closed tickets are hidden from everyone: writes can move rows out of the caller's view.
  ticket: {
    select: "SELECT * FROM ticket WHERE status <> 'closed'",
    insert: { check: 'public' },
    update: { columns: ['status'] },
  },
  note: {
    select: [OWN, 'SELECT n.* FROM note n JOIN board b ON b.id = n.board_id WHERE n.shared'],
    insert: {
      check: ["SELECT n.* FROM note n JOIN seat s ON s.board_id = n.board_id WHERE s.identity = :sender AND s.role = 'writer'"],
      columns: ['id', 'board_id', 'body', 'shared', 'stars'],
      set: { owner: ':sender' },
    },
    update: { filter: [OWN], check: ['SELECT * FROM note WHERE length(body) <= 20'], columns: ['body', 'shared', 'stars'] },
    delete: [OWN],
  },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE board (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE seat (board_id int REFERENCES board(id), identity text, role text NOT NULL, PRIMARY KEY (board_id, identity));
    CREATE TABLE note (id int PRIMARY KEY, board_id int NOT NULL REFERENCES board(id), owner text NOT NULL,
                       body text NOT NULL CHECK (body <> 'forbidden-word'), shared boolean NOT NULL DEFAULT false,
                       stars int NOT NULL DEFAULT 0);
    CREATE TABLE ticket (id int PRIMARY KEY, status text NOT NULL);
    INSERT INTO ticket VALUES (1, 'open'), (2, 'open');
    INSERT INTO board VALUES (1, 'one'), (2, 'two');
    INSERT INTO seat VALUES (1, 'alice', 'writer'), (1, 'bob', 'reader'), (2, 'bob', 'writer');
    INSERT INTO note VALUES (1, 1, 'alice', 'alice private', false, 0), (2, 1, 'alice', 'alice shared', true, 0),
                            (3, 2, 'bob', 'bob on two', true, 0);
  `);
  api = await startGateway(db, { tables: TABLES });
});

const notes = async () => (await db.sql`SELECT id, owner, body, shared, stars FROM note ORDER BY id`).map((r) => ({ ...r }));

describe('insert', () => {
  it('fills presets from the identity and returns the new row', async () => {
    const res = await api.gql('alice', 'mutation { insert_note_one(object: {id: 10, board_id: 1, body: "hi"}) { id owner body } }');
    expect(res).toEqual({ data: { insert_note_one: { id: 10, owner: 'alice', body: 'hi' } } });
  });
  it('a preset column is not in the input type, so it cannot be overridden', async () => {
    const res = await api.gql('alice', 'mutation { insert_note_one(object: {id: 11, board_id: 1, body: "x", owner: "bob"}) { id } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(res.errors?.[0]?.message).toContain('owner');
    expect((await notes()).find((n) => n.id === 11)).toBeUndefined();
  });
  it('a row failing the check rule is refused with FORBIDDEN and nothing is written', async () => {
    const before = await notes();
    const res = await api.gql('bob', 'mutation { insert_note(objects: [{id: 12, board_id: 2, body: "ok"}, {id: 13, board_id: 1, body: "reader only"}]) { affected_rows } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect(res.data?.['insert_note']).toBeNull();
    expect(await notes()).toEqual(before);
  });
  it('returns the inserted row with its preset owner', async () => {
    const res = await api.gql('bob', 'mutation { insert_note(objects: [{id: 14, board_id: 2, body: "mine"}]) { affected_rows returning { id owner } } }');
    expect(res).toEqual({ data: { insert_note: { affected_rows: 1, returning: [{ id: 14, owner: 'bob' }] } } });
  });
  it('a constraint violation comes back as CONSTRAINT_VIOLATION with the constraint name', async () => {
    const dup = await api.gql('alice', 'mutation { insert_note_one(object: {id: 1, board_id: 1, body: "dup"}) { id } }');
    expect(dup.errors?.[0]?.extensions).toMatchObject({ code: 'CONSTRAINT_VIOLATION', constraint: 'note_pkey' });
    expect(dup.errors?.[0]?.message).not.toContain('alice private');
    const check = await api.gql('alice', 'mutation { insert_note_one(object: {id: 15, board_id: 1, body: "forbidden-word"}) { id } }');
    expect(check.errors?.[0]?.extensions).toMatchObject({ code: 'CONSTRAINT_VIOLATION', constraint: 'note_body_check' });
  });
  it('on_conflict updates only rows the caller could update, and checks them', async () => {
    const mine = await api.gql('alice', 'mutation { insert_note_one(object: {id: 10, board_id: 1, body: "upserted"}, on_conflict: {constraint: note_pkey, update_columns: [body]}) { id body } }');
    expect(mine).toEqual({ data: { insert_note_one: { id: 10, body: 'upserted' } } });
    // Note 3 is bob's: alice's upsert must not touch it (the update filter says owner = sender).
    const theirs = await api.gql('alice', 'mutation { insert_note(objects: [{id: 3, board_id: 1, body: "stolen"}], on_conflict: {constraint: note_pkey, update_columns: [body]}) { affected_rows } }');
    expect(theirs).toEqual({ data: { insert_note: { affected_rows: 0 } } });
    expect((await notes()).find((n) => n.id === 3)?.body).toBe('bob on two');
    const nothing = await api.gql('alice', 'mutation { insert_note(objects: [{id: 1, board_id: 1, body: "ignored"}], on_conflict: {constraint: note_pkey, update_columns: []}) { affected_rows } }');
    expect(nothing).toEqual({ data: { insert_note: { affected_rows: 0 } } });
  });
});

describe('returning', () => {
  it('affected_rows counts every written row; returning leaves out rows the caller cannot see after the write', async () => {
    const ins = await api.gql('alice', 'mutation { insert_ticket(objects: [{id: 3, status: "open"}, {id: 4, status: "closed"}]) { affected_rows returning { id } } }');
    expect(ins).toEqual({ data: { insert_ticket: { affected_rows: 2, returning: [{ id: 3 }] } } });
    const one = await api.gql('alice', 'mutation { insert_ticket_one(object: {id: 5, status: "closed"}) { id } }');
    expect(one).toEqual({ data: { insert_ticket_one: null } });
    const upd = await api.gql('alice', 'mutation { update_ticket(where: {id: {_in: [1, 2]}}, _set: {status: "closed"}) { affected_rows returning { id status } } }');
    expect(upd).toEqual({ data: { update_ticket: { affected_rows: 2, returning: [] } } });
    const byPk = await api.gql('alice', 'mutation { update_ticket_by_pk(pk_columns: {id: 3}, _set: {status: "closed"}) { id } }');
    expect(byPk).toEqual({ data: { update_ticket_by_pk: null } });
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ticket WHERE status = 'closed'`;
    expect(row?.n).toBe(5);
  });
});

describe('update', () => {
  it('touches only visible rows that pass the filter', async () => {
    const res = await api.gql('alice', 'mutation { update_note(where: {}, _set: {shared: true}) { affected_rows returning { id } } }');
    const d = res.data?.['update_note'] as { affected_rows: number; returning: { id: number }[] };
    expect(d.returning.map((r) => r.id).sort()).toEqual([1, 10, 2]);
    expect(d.affected_rows).toBe(3);
    expect((await notes()).find((n) => n.id === 3)?.shared).toBe(true);
  });
  it('cannot update a row it can see but does not own (filter)', async () => {
    const res = await api.gql('bob', 'mutation { update_note_by_pk(pk_columns: {id: 2}, _set: {body: "bob was here"}) { id } }');
    expect(res).toEqual({ data: { update_note_by_pk: null } });
    expect((await notes()).find((n) => n.id === 2)?.body).toBe('alice shared');
  });
  it('a changed row must pass the check rule, else FORBIDDEN and nothing changes', async () => {
    const before = await notes();
    const res = await api.gql('alice', 'mutation { update_note(where: {}, _set: {body: "a body much longer than twenty characters"}) { affected_rows } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect(await notes()).toEqual(before);
  });
  it('_inc adds to numeric columns', async () => {
    const res = await api.gql('alice', 'mutation { update_note_by_pk(pk_columns: {id: 1}, _inc: {stars: 2}) { stars } }');
    expect(res).toEqual({ data: { update_note_by_pk: { stars: 2 } } });
  });
  it('columns outside the allowlist are not in the input type', async () => {
    const res = await api.gql('alice', 'mutation { update_note(where: {}, _set: {owner: "bob"}) { affected_rows } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
    expect((await notes()).every((n) => n.owner !== 'bob' || [3, 14].includes(n.id))).toBe(true);
  });
  it('update_t_many runs its updates in order, each under the same rules', async () => {
    const res = await api.gql('alice', `mutation { update_note_many(updates: [
      {where: {id: {_eq: 1}}, _set: {stars: 5}},
      {where: {stars: {_eq: 5}}, _inc: {stars: 1}},
      {where: {id: {_eq: 3}}, _set: {body: "alice was here"}}
    ]) { affected_rows returning { id stars } } }`);
    expect(res).toEqual({ data: { update_note_many: [
      { affected_rows: 1, returning: [{ id: 1, stars: 5 }] },
      { affected_rows: 1, returning: [{ id: 1, stars: 6 }] },
      // bob's note 3 is visible to alice (shared) but not hers to update (filter).
      { affected_rows: 0, returning: [] },
    ] } });
    expect((await notes()).find((n) => n.id === 3)?.body).toBe('bob on two');
  });
  it('update_t_many: a check failing in a later update rolls back the earlier ones', async () => {
    const before = await notes();
    const res = await api.gql('alice', `mutation { update_note_many(updates: [
      {where: {id: {_eq: 1}}, _set: {stars: 50}},
      {where: {id: {_eq: 2}}, _set: {body: "a body much longer than twenty characters"}}
    ]) { affected_rows } }`);
    expect(res.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    expect(await notes()).toEqual(before);
  });
});

describe('delete', () => {
  it('deletes only rows matching where, visible, and a delete rule', async () => {
    const res = await api.gql('bob', 'mutation { delete_note(where: {board_id: {_eq: 1}}) { affected_rows } }');
    expect(res).toEqual({ data: { delete_note: { affected_rows: 0 } } });
    expect((await notes()).filter((n) => n.owner === 'alice')).toHaveLength(3);
    const own = await api.gql('bob', 'mutation { delete_note_by_pk(id: 14) { id body } }');
    expect(own).toEqual({ data: { delete_note_by_pk: { id: 14, body: 'mine' } } });
  });
  it('cannot delete hidden rows even by primary key', async () => {
    await db.sql`INSERT INTO note VALUES (20, 2, 'carol', 'carol private', false, 0)`;
    const res = await api.gql('bob', 'mutation { delete_note_by_pk(id: 20) { id } }');
    expect(res).toEqual({ data: { delete_note_by_pk: null } });
    expect((await notes()).some((n) => n.id === 20)).toBe(true);
  });
});

describe('one transaction per mutation operation', () => {
  it('an error in a later field rolls back the earlier ones', async () => {
    const before = await notes();
    const res = await api.gql('alice', `mutation {
      a: update_note_by_pk(pk_columns: {id: 1}, _set: {body: "changed"}) { id }
      b: insert_note_one(object: {id: 1, board_id: 1, body: "duplicate"}) { id }
    }`);
    expect(res.errors?.[0]?.extensions?.['code']).toBe('CONSTRAINT_VIOLATION');
    expect(await notes()).toEqual(before);
  });
});

describe('undeclared operations do not exist', () => {
  it('board has no mutations', async () => {
    const res = await api.gql('alice', 'mutation { insert_board_one(object: {id: 9, name: "x"}) { id } }');
    expect(res.errors?.[0]?.extensions?.['code']).toBe('GRAPHQL_VALIDATION_FAILED');
  });
});
