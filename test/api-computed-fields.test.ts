import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';
import { compile } from './support/rules.ts';

// Computed fields (Hasura's): SQL functions of the row, and optionally of the caller's claims,
// exposed as fields of the row type, evaluated only over rows the caller may see.
const db = useTestDatabase();
let api: TestGateway;

const TABLES = {
  doc: {
    select: 'SELECT * FROM doc WHERE owner = :sender',
    computedFields: {
      words: { function: 'doc_words' },
      mine_label: { function: 'doc_label', session: true },
      shout: { function: 'doc_shout' },
    },
  },
};

beforeAll(async () => {
  await db.sql.unsafe(`
    CREATE TABLE doc (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
    INSERT INTO doc VALUES (1, 'ann', 'one two three'), (2, 'bo', 'secret');
    CREATE FUNCTION doc_words(d doc) RETURNS int LANGUAGE sql STABLE AS $$ SELECT array_length(regexp_split_to_array(d.body, ' '), 1) $$;
    CREATE FUNCTION doc_label(d doc, session json) RETURNS text LANGUAGE sql STABLE AS $$ SELECT (session ->> 'sub') || ':' || d.id $$;
    -- Raises on bo's row: a field computed before visibility would be an error oracle.
    CREATE FUNCTION doc_shout(d doc) RETURNS text LANGUAGE plpgsql STABLE AS $$
      BEGIN IF d.owner = 'bo' THEN RAISE EXCEPTION 'hidden row reached'; END IF; RETURN upper(d.body); END $$;
    CREATE FUNCTION doc_volatile(d doc) RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT 1 $$;
    CREATE FUNCTION doc_rows(d doc) RETURNS SETOF int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
  `);
  api = await startGateway(db, { tables: TABLES });
});

describe('computed fields', () => {
  it('are fields of the row, computed from it and from the caller claims', async () => {
    const r = await api.gql('ann', '{ doc { id words mine_label shout } }');
    expect(r.errors).toBeUndefined();
    expect(r.data).toEqual({ doc: [{ id: 1, words: 3, mine_label: 'ann:1', shout: 'ONE TWO THREE' }] });
  });

  it('run only over visible rows: a function that raises on a hidden row never does', async () => {
    for (const q of ['{ doc { shout } }', '{ doc(where: {body: {_eq: "secret"}}) { shout } }', '{ doc_aggregate { nodes { shout } } }']) {
      const r = await api.gql('ann', q);
      expect(r.errors, q).toBeUndefined();
    }
    expect((await api.gql('bo', '{ doc_by_pk(id: 1) { shout } }')).data).toEqual({ doc_by_pk: null });
  });

  it('are typed from the function and described in the schema', async () => {
    const r = await api.gql('ann', '{ __type(name: "doc") { fields { name type { name kind } } } }');
    const fields = (r.data!['__type'] as { fields: { name: string; type: { name: string } }[] }).fields;
    expect(fields.find((f) => f.name === 'words')?.type.name).toBe('Int');
    expect(fields.find((f) => f.name === 'mine_label')?.type.name).toBe('String');
  });

  it('a function that is volatile, returns a set, takes another row or is missing stops startup', async () => {
    for (const [fn, message] of [
      ['doc_volatile', /VOLATILE/],
      ['doc_rows', /returns a set/],
      ['doc_nothing', /no function "doc_nothing"/],
      ['doc_label', /must take \(doc\)/],
    ] as const) {
      await expect(compile(db, { doc: { select: 'public', computedFields: { x: { function: fn } } } }), fn).rejects.toThrow(message);
    }
    await expect(compile(db, { doc: { select: 'public', computedFields: { body: { function: 'doc_words' } } } })).rejects.toThrow(/already has a column "body"/);
  });
});
