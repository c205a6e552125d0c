import { beforeAll, describe, expect, it } from 'vitest';
import { execute, parse } from 'graphql';
import { capturedTables } from '../src/cli/capture.ts';
import { useTestDatabase } from './support/db.ts';
import { asCaller, startLive, type LiveHarness } from './support/live.ts';
import { compile } from './support/rules.ts';

// Views listed like tables: their rules apply to queries and live queries, and a live query on a
// view follows commits to the tables the view reads (through views of views too), which capture watches.
const db = useTestDatabase();
let h: LiveHarness;

const TABLES = {
  doc: { select: 'SELECT * FROM doc WHERE owner = :sender' },
  doc_title: { select: 'SELECT * FROM doc_title WHERE owner = :sender' },
  doc_short: { select: 'SELECT s.* FROM doc_short s JOIN membership m ON m.doc_id = s.id WHERE m.identity = :sender' },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, owner text NOT NULL, title text NOT NULL);
    CREATE TABLE membership (doc_id int NOT NULL, identity text NOT NULL, PRIMARY KEY (doc_id, identity));
    CREATE VIEW doc_title AS SELECT id, owner, upper(title) AS loud FROM doc;
    CREATE VIEW doc_short AS SELECT id, loud FROM doc_title;
    INSERT INTO doc VALUES (1, 'alice', 'plan'), (2, 'bob', 'secret');
    INSERT INTO membership VALUES (1, 'alice');
  `);
  h = await startLive(db, TABLES);
});

const run = async (sender: string, query: string) => execute({ schema: h.schema, document: parse(query), contextValue: { caller: asCaller(sender) } });

describe('views', () => {
  it('capture watches the tables a listed view reads, through views of views, and not the views', async () => {
    const rules = await compile(db, TABLES);
    const { tables, views } = capturedTables(rules, await db.catalog(), ['doc_short']);
    expect(tables).toEqual(['doc', 'membership']);
    expect(views).toEqual(['doc_short', 'doc_title']);
  });

  it('a rule on a view filters its rows in queries', async () => {
    expect((await run('alice', '{ doc_title { id loud } }')).data).toEqual({ doc_title: [{ id: 1, loud: 'PLAN' }] });
    expect((await run('bob', '{ doc_title { id loud } }')).data).toEqual({ doc_title: [{ id: 2, loud: 'SECRET' }] });
    // A filter matching bob's hidden row gives alice nothing, as one matching no row does.
    expect((await run('alice', '{ doc_title(where: {loud: {_eq: "SECRET"}}) { id } }')).data).toEqual({ doc_title: [] });
    expect((await run('alice', '{ doc_title_aggregate { aggregate { count } } }')).data).toEqual({ doc_title_aggregate: { aggregate: { count: 1 } } });
  });

  it('a live query on a view follows commits to the base table', async () => {
    const alice = await h.open('alice', 'subscription { doc_title(order_by: {id: asc}) { id loud } }');
    expect((await alice.next()).data).toEqual({ doc_title: [{ id: 1, loud: 'PLAN' }] });
    await db.sql`UPDATE doc SET title = 'plan b' WHERE id = 1`;
    expect((await alice.next()).data).toEqual({ doc_title: [{ id: 1, loud: 'PLAN B' }] });
    await db.sql`UPDATE doc SET owner = 'alice' WHERE id = 2`;
    expect((await alice.next()).data).toEqual({ doc_title: [{ id: 1, loud: 'PLAN B' }, { id: 2, loud: 'SECRET' }] });
    await db.sql`UPDATE doc SET owner = 'bob' WHERE id = 2`;
    expect((await alice.next()).data).toEqual({ doc_title: [{ id: 1, loud: 'PLAN B' }] });
    await alice.close();
  });

  it('a live query on a view of a view follows the base table and the tables its rule reads', async () => {
    const bob = await h.open('bob', 'subscription { doc_short(order_by: {id: asc}) { id loud } }');
    expect((await bob.next()).data).toEqual({ doc_short: [] });
    await db.sql`INSERT INTO membership VALUES (2, 'bob')`;
    expect((await bob.next()).data).toEqual({ doc_short: [{ id: 2, loud: 'SECRET' }] });
    await db.sql`UPDATE doc SET title = 'public' WHERE id = 2`;
    expect((await bob.next()).data).toEqual({ doc_short: [{ id: 2, loud: 'PUBLIC' }] });
    await bob.close();
  });

  it('a view has no change stream (the log holds rows of tables); its base table does', async () => {
    const fields = Object.keys(h.schema.getSubscriptionType()!.getFields());
    expect(fields).toContain('doc_changes');
    expect(fields).toContain('doc_title');
    expect(fields).not.toContain('doc_title_changes');
    expect(fields).not.toContain('doc_short_changes');
  });
});
