import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generate } from '@graphql-codegen/cli';
import { preset as clientPreset } from '@graphql-codegen/client-preset';
import { parse, print, visit, type DocumentNode } from 'graphql';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { useTestDatabase } from './support/db.ts';
import { runRowgate } from './support/cli.ts';

// GraphQL Code Generator's client preset, as a frontend runs it: on the SDL `rowgate schema` prints
// for the demo, with a query, a mutation and subscriptions; then tsc on a file that uses the types.
const db = useTestDatabase();
// `rowgate schema` is a Node process of its own (tsx compiles the CLI), and codegen and tsc run
// twice or three times each: more than the default 60 s on a loaded machine.
vi.setConfig({ testTimeout: 180_000 });
const demoConfig = JSON.parse(readFileSync(new URL('../demo/rowgate.config.json', import.meta.url), 'utf8')) as { auth: unknown; tables: unknown };

let dir: string;
let sdl: string;

const OPERATIONS = `
query Dashboard($limit: Int) {
  account { id name players { level score } }
  document(order_by: {id: asc}, limit: $limit) { id title created_at grp { name } }
}
mutation Retitle($id: Int!, $set: document_set_input!) {
  update_document_by_pk(pk_columns: {id: $id}, _set: $set) { id title }
}
subscription LiveAccounts {
  account { id name players { level } }
}
subscription AccountChanges($after: String) {
  account_changes(after: $after) { op position row { id name } }
}
`;

// Uses each operation's TypedDocumentNode. The @ts-expect-error line proves the types are not
// `any`: were they, the directive would be unused, which tsc reports as an error.
const USAGE = `
import type { ResultOf, VariablesOf } from '@graphql-typed-document-node/core';
import { AccountChangesDocument, DashboardDocument, LiveAccountsDocument, RetitleDocument } from './gql/graphql';

declare const dashboard: ResultOf<typeof DashboardDocument>;
export const name: string = dashboard.account[0]!.name;
export const score: string = dashboard.account[0]!.players[0]!.score;
export const created: string = dashboard.document[0]!.created_at;
export const limit: VariablesOf<typeof DashboardDocument> = { limit: 10 };

export const retitle: VariablesOf<typeof RetitleDocument> = { id: 1, set: { title: 'Plan' } };
declare const retitled: ResultOf<typeof RetitleDocument>;
export const title: string | undefined = retitled.update_document_by_pk?.title;

declare const live: ResultOf<typeof LiveAccountsDocument>;
export const level: number = live.account[0]!.players[0]!.level;
// @ts-expect-error identity is not selected, so it is not in the result type
export const identity = live.account[0]!.identity;

declare const change: ResultOf<typeof AccountChangesDocument>;
export const changed: string | undefined = change.account_changes.row?.name;
export const position: string = change.account_changes.position;
`;

beforeAll(async () => {
  await db.sql.unsafe(readFileSync(new URL('../demo/schema.sql', import.meta.url), 'utf8'));
  dir = mkdtempSync(join(tmpdir(), 'rowgate-codegen-'));
  // The generated code and the usage file import packages: resolve them from the project's.
  symlinkSync(resolve(import.meta.dirname, '../node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, 'rowgate.config.json'), JSON.stringify({ database: { url: db.url }, auth: demoConfig.auth, tables: demoConfig.tables }));
  const run = await runRowgate(dir, ['schema', '--config', 'rowgate.config.json']);
  expect(run.code, run.stderr).toBe(0);
  sdl = run.stdout;
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the client preset on `schema` into `<dir>/<name>/gql/`, with OPERATIONS and USAGE beside it. */
async function codegen(name: string, schema: string): Promise<string> {
  const out = join(dir, name);
  mkdirSync(out);
  writeFileSync(join(out, 'schema.graphql'), schema);
  writeFileSync(join(out, 'operations.graphql'), OPERATIONS);
  writeFileSync(join(out, 'usage.ts'), USAGE);
  await generate(
    {
      cwd: out,
      schema: join(out, 'schema.graphql'),
      documents: [join(out, 'operations.graphql')],
      silent: true,
      generates: {
        [join(out, 'gql') + '/']: {
          preset: clientPreset,
          // The scalars rowgate sends as JSON strings (bigint keeps every digit); others stay unknown.
          config: { scalars: { bigint: 'string', timestamptz: 'string' }, defaultScalarType: 'unknown' },
        },
      },
    },
    true,
  );
  return out;
}

let previous: ts.Program | undefined;

/** tsc's diagnostics for `<out>/usage.ts` and what it imports, strict. */
function typecheck(out: string): string[] {
  // The previous program lends its parsed lib files: each check then reads only what is new.
  const program = (previous = ts.createProgram([join(out, 'usage.ts')], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  }, undefined, previous));
  return ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? d.file.fileName.slice(out.length + 1) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
}

/** The SDL without one field of one type (object or input). */
function withoutField(schema: string, typeName: string, field: string): string {
  const drop = (node: { name: { value: string }; fields?: readonly { name: { value: string } }[] }) =>
    node.name.value === typeName ? { ...node, fields: node.fields?.filter((f) => f.name.value !== field) } : undefined;
  const edited: DocumentNode = visit(parse(schema), { ObjectTypeDefinition: drop, InputObjectTypeDefinition: drop });
  const printed = print(edited);
  expect(printed.length, `${typeName}.${field} was in the schema`).toBeLessThan(print(parse(schema)).length);
  return printed;
}

describe('graphql-codegen client preset on `rowgate schema`', () => {
  it('prints the SDL with subscriptions, and the generated types type-check in use', async () => {
    expect(sdl).toContain('type Subscription {');
    const out = await codegen('served', sdl);
    const generated = readFileSync(join(out, 'gql/graphql.ts'), 'utf8');
    expect(generated).toContain('export const LiveAccountsDocument');
    expect(generated).toContain('export type AccountChangesSubscription');
    expect(typecheck(out)).toEqual([]);
  });

  it('a schema that lost an input field the code passes fails to type-check', async () => {
    const out = await codegen('no-title-input', withoutField(sdl, 'document_set_input', 'title'));
    const errors = typecheck(out);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.join('\n')).toMatch(/usage\.ts: .*'title'/);
  });

  it('a schema that lost a selected field is refused by codegen', async () => {
    await expect(codegen('no-level', withoutField(sdl, 'player', 'level'))).rejects.toThrow(/level/);
  });
});
