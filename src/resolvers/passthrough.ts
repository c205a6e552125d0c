import {
  getArgumentValues,
  getOperationAST,
  getVariableValues,
  Kind,
  type ExecutionArgs,
  type ExecutionResult,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLFieldResolver,
  type GraphQLSchema,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';
import { sql, type SQL } from 'pg-sql2';
import { compileSql, runCompiledSql, type PreparedStatements, type Sql } from '../db/index.ts';
import { fillCaller } from '../rules/index.ts';
import type { GraphQLContext } from '../schema/context.ts';
import type { ApiModel, TableModel } from '../schema/model.ts';
import { uncheckedInputs, verifyInputs, type UncheckedInput } from './input.ts';
import { NodeIds } from './plans.ts';
import { textAnswerable } from './query.ts';
import { callerIndependentScope, tableModel, type Scope } from './scope.ts';
import { collect, selectedField, type Env, type SelectedField } from './selection.ts';

/**
 * Queries answered with the JSON text PostgreSQL writes, passed through to the response: no
 * postgres.js JSON parse, no graphql-js walk of the answer, no JSON.stringify. It applies when the
 * whole operation is reads whose answers need no resolver work (root lists, `_by_pk` and root
 * function lists of fields `textAnswerable` accepts, `__typename` anywhere); the SQL is the
 * resolvers' own except that each object is built as compact text (`Scope.jsonText`), so the
 * visibility and the fence are theirs. Anything else — another kind of field, variables that do not coerce, a
 * failing statement or input, an answer that may exceed `maxTotalRows` — runs the ordinary way
 * (graphql-js execution), which gives the errors and partial results as before: the pass-through
 * only ever answers what would have been answered without any error. test/api-passthrough.test.ts
 * compares both paths byte for byte.
 */

/** How a root field's resolver reads: its table and the SQL of its answer. */
export interface RootRead {
  table: string;
  build: (scope: Scope, model: TableModel, field: SelectedField, inputs: UncheckedInput[]) => SQL;
}

type Resolver = GraphQLFieldResolver<unknown, GraphQLContext, Record<string, unknown>>;

/** One operation's statement (its caller values as slots) and how its answer is put together. */
interface Plan {
  compiled: { text: string; values: unknown[] } | null;
  /** Per response key: JSON text of its own (`__typename`), or the index of its statement column. */
  parts: { key: string; text: string | null; column: number }[];
  inputs: UncheckedInput[];
}

/** Operations the pass-through cannot answer are remembered as such, so they cost one lookup. */
const ORDINARY = 'ordinary';

/** Variables longer than this (as JSON) are not worth a key: such requests run the ordinary way. */
const MAX_KEY_VARIABLES = 4096;

export class PassThrough {
  private readonly reads = new WeakMap<Resolver, RootRead>();
  private readonly plans: LRUCache<string, Plan | typeof ORDINARY>;
  private readonly ids = new NodeIds();
  /** Operations answered as passed-through text, and those run the ordinary way. */
  passed = 0;
  ordinary = 0;

  constructor(
    private readonly api: ApiModel,
    private readonly db: Sql,
    private readonly prepared: PreparedStatements,
    max: number,
  ) {
    this.plans = new LRUCache({ max });
  }

  /** Tells the pass-through that `resolver` (a root field's) reads as `read`. */
  register(resolver: Resolver, read: RootRead): Resolver {
    this.reads.set(resolver, read);
    return resolver;
  }

  /** The operation's response, or null when it must run the ordinary way. */
  async run(args: ExecutionArgs): Promise<ExecutionResult | null> {
    const ctx = args.contextValue as Partial<GraphQLContext> & { tx?: unknown };
    const plan = ctx.caller && !ctx.tx ? this.plan(args, ctx.caller.admin) : ORDINARY;
    if (plan === ORDINARY) {
      this.ordinary++;
      return null;
    }
    const identity = ctx.caller!.identity;
    let row: Record<string, string | null> = {};
    try {
      await verifyInputs(this.db, plan.inputs);
      if (plan.compiled) [row = {}] = await runCompiledSql<Record<string, string | null>>(this.db, plan.compiled, this.prepared, (values) => fillCaller(values, identity));
    } catch {
      // The ordinary way raises the same error and gives every other field its answer.
      this.ordinary++;
      return null;
    }
    const texts = plan.parts.map((p) => p.text ?? row[`r${p.column}`] ?? 'null');
    if (objectsAtLeast(texts, this.api.maxTotalRows + 1)) {
      // Maybe too many rows (a `{` inside a string counts too): the ordinary way counts exactly.
      this.ordinary++;
      return null;
    }
    this.passed++;
    return passedResult(`{"data":{${plan.parts.map((p, i) => `${JSON.stringify(p.key)}:${texts[i]}`).join(',')}}}`);
  }

  private plan(args: ExecutionArgs, admin: boolean): Plan | typeof ORDINARY {
    const variables = JSON.stringify(args.variableValues ?? {});
    if (variables.length > MAX_KEY_VARIABLES) return ORDINARY;
    const key = `${admin ? 'admin' : 'caller'}|${this.ids.of(args.document)}|${args.operationName ?? ''}|${variables}`;
    let plan = this.plans.get(key);
    if (plan === undefined) {
      plan = this.build(args, admin);
      this.plans.set(key, plan);
    }
    return plan;
  }

  private build(args: ExecutionArgs, admin: boolean): Plan | typeof ORDINARY {
    const { schema, document } = args;
    const operation = getOperationAST(document, args.operationName);
    const queryType = schema.getQueryType();
    if (!operation || operation.operation !== 'query' || !queryType) return ORDINARY;
    const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], (args.variableValues ?? {}) as Record<string, unknown>);
    if (coerced.errors) return ORDINARY;
    const fragments: Record<string, FragmentDefinitionNode> = {};
    for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments[d.name.value] = d;
    const env: Env = { fragments, variables: coerced.coerced, typenames: true };
    const roots = new Map<string, FieldNode[]>();
    collect(operation.selectionSet, env, roots, new Set());

    const scope: Scope = { ...callerIndependentScope(this.api, admin), jsonText: true };
    const parts: Plan['parts'] = [];
    const columns: SQL[] = [];
    const inputs: UncheckedInput[] = [];
    try {
      for (const [key, nodes] of roots) {
        const name = nodes[0]!.name.value;
        if (name === '__typename') {
          parts.push({ key, text: JSON.stringify(queryType.name), column: -1 });
          continue;
        }
        const def = queryType.getFields()[name];
        const read = def?.resolve ? this.reads.get(def.resolve as Resolver) : undefined;
        if (!def || !read) return ORDINARY;
        const field = selectedField(key, nodes, def.type, getArgumentValues(def, nodes[0]!, env.variables), env);
        const model = tableModel(scope, read.table);
        if (!textAnswerable(scope, model, field.children)) return ORDINARY;
        const own = uncheckedInputs(this.api, model, field);
        columns.push(sql`${read.build(scope, model, field, own)} AS ${sql.identifier(`r${columns.length}`)}`);
        parts.push({ key, text: null, column: columns.length - 1 });
        inputs.push(...own);
      }
    } catch {
      // A bad argument: the ordinary way reports it.
      return ORDINARY;
    }
    // Every column is text (objects built as text), which postgres.js hands over as it is.
    return { compiled: columns.length ? compileSql(sql`SELECT ${sql.join(columns, ', ')}`) : null, parts, inputs };
  }
}

/** Whether the texts hold at least `n` `{` (objects, and any `{` inside strings). */
function objectsAtLeast(texts: string[], n: number): boolean {
  let count = 0;
  for (const text of texts) {
    for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) if (++count >= n) return true;
  }
  return false;
}

/**
 * An execution result whose JSON is `text`: yoga's result processors send a result's own
 * `stringify` (so the text goes out as it is), and anything that reads `data` (the WebSocket
 * transport, which serializes the whole message) gets it parsed on first use.
 */
function passedResult(text: string): ExecutionResult {
  const result = {} as ExecutionResult;
  let data: ExecutionResult['data'];
  Object.defineProperty(result, 'data', { enumerable: true, get: () => (data ??= (JSON.parse(text) as ExecutionResult).data) });
  Object.defineProperty(result, 'stringify', { value: () => text });
  return result;
}

const bySchema = new WeakMap<GraphQLSchema, PassThrough>();

/** Makes `passThrough` answer the operations run on `schema`. */
export function passThroughFor(schema: GraphQLSchema, passThrough: PassThrough): void {
  bySchema.set(schema, passThrough);
}

/** The pass-through serving `schema` (for its counts), if any. */
export function passThroughOf(schema: GraphQLSchema): PassThrough | undefined {
  return bySchema.get(schema);
}

/**
 * Runs each operation through its schema's pass-through first and the ordinary execution when that
 * declines. Placed before the per-caller limit, which wraps it like any execution.
 */
export function usePassThrough(): Plugin {
  return {
    onExecute({ executeFn, setExecuteFn }) {
      setExecuteFn(async (execArgs) => {
        const passThrough = bySchema.get(execArgs.schema);
        return (passThrough ? await passThrough.run(execArgs) : null) ?? executeFn(execArgs);
      });
    },
  };
}
