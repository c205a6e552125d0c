import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/index.ts';
import { buildModel } from '../src/schema/index.ts';
import { plural } from '../src/schema/naming.ts';
import { useTestDatabase } from './support/db.ts';
import { compile } from './support/rules.ts';

const db = useTestDatabase();

describe('relationship names', () => {
  it('plural of a table name: English plurals, already plural names unchanged', () => {
    expect(plural('todo')).toBe('todos');
    expect(plural('todos')).toBe('todos');
    expect(plural('project_members')).toBe('project_members');
    expect(plural('company')).toBe('companies');
    expect(plural('person')).toBe('people');
    expect(plural('project_person')).toBe('project_people');
    expect(plural('address')).toBe('addresses');
  });

  describe('in the model of a real catalog', () => {
    const tables = { company: { select: 'public' }, person: { select: 'public' }, todo: { select: 'public' }, todos: { select: 'public' }, project_members: { select: 'public' } };
    beforeAll(async () => {
      await db.sql.unsafe(`
        CREATE TABLE company (id int PRIMARY KEY);
        CREATE TABLE person (id int PRIMARY KEY, company_id int REFERENCES company);
        CREATE TABLE todo (id int PRIMARY KEY, person_id int REFERENCES person);
        CREATE TABLE todos (id int PRIMARY KEY, company_id int REFERENCES company);
        CREATE TABLE project_members (id int PRIMARY KEY, person_id int REFERENCES person);
      `);
    });

    it('array relationships are named as the plural of the referencing table', async () => {
      const api = buildModel(parseConfig({ tables }, {}), await db.catalog(), await compile(db, tables));
      const names = (t: string) => api.tables.get(t)!.relationships.map((r) => `${r.kind} ${r.name} → ${r.target}`).sort();
      expect(names('company')).toEqual(['array people → person', 'array todos → todos']);
      expect(names('person')).toEqual(['array project_members → project_members', 'array todos → todo', 'object company → company']);
      expect(names('todos')).toEqual(['object company → company']);
      expect(names('project_members')).toEqual(['object person → person']);
    });
  });
});
