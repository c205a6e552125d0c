import type { GraphQLFieldResolver } from 'graphql';
import { sql, type SQL } from 'pg-sql2';
import { preparedStatementsOf, type Sql } from '../db/index.ts';
import { RootFieldBatcher } from './batch.ts';
import type { Alias } from '../rules/index.ts';
import type { GraphQLContext } from '../schema/context.ts';
import type { ApiModel, RootFunction, TableModel } from '../schema/model.ts';
import { checkTotalRows } from './cost.ts';
import { mapDatabaseError } from './errors.ts';
import { deleteRows, updateRows, type MutationResult } from './mutate.ts';
import { insertObjects } from './insert.ts';
import { aggregateSql, byPkSql, listSql } from './query.ts';
import { bindValue, callerIndependentScope, pkMatch, scopeFor, tableModel, type Scope } from './scope.ts';
import { Plans } from './plans.ts';
import { PassThrough } from './passthrough.ts';
import { rootField, type SelectedField } from './selection.ts';
import { functionArgs, verifyInputs, uncheckedInputs, type UncheckedInput } from './input.ts';
import { writeWhere } from './where.ts';

export { useMutationTransaction } from './transaction.ts';
export { PassThrough, passThroughFor, passThroughOf, usePassThrough } from './passthrough.ts';
export { checkTotalRows } from './cost.ts';
export { rowJson, listSql, aggregateSql, byPkSql } from './query.ts';
export { whereSql } from './where.ts';
export { insertSql } from './mutate.ts';
export { pkMatch, scopeFor, toText, visibleAnd, type Scope } from './scope.ts';
export { checkedValue, functionArgs, uncheckedInputs, verifyInputs, type UncheckedInput } from './input.ts';
export { rootField, type SelectedField } from './selection.ts';

/** Root fields' SQL kept for recurring operations (plans.ts); each is a few KB of SQL fragments. */
const PLANS_KEPT = 1000;

type Resolver = GraphQLFieldResolver<unknown, GraphQLContext & { tx?: Sql }, Record<string, unknown>>;

/** Root field resolvers, one per operation kind, each made for a table. */
/**
 * `fn(args)` of a root function field, its arguments checked as column values (those only
 * PostgreSQL can check go to `inputs`) and bound: the rows a list or aggregate reads instead of the table.
 */
export function functionCall(scope: Scope, fn: RootFunction, field: SelectedField, inputs: UncheckedInput[]): SQL {
  const values = functionArgs(fn.args, field.args['args'] as Record<string, unknown> | undefined, `${fn.name}.args`, inputs);
  return sql`${sql.identifier(fn.fn.schema, fn.fn.name)}(${sql.join(fn.args.map((p, i) => bindValue(scope, p, values[i])), ', ')})`;
}

export interface Resolvers {
  list(table: string): Resolver;
  byPk(table: string): Resolver;
  aggregate(table: string): Resolver;
  insert(table: string): Resolver;
  insertOne(table: string): Resolver;
  update(table: string): Resolver;
  updateByPk(table: string): Resolver;
  updateMany(table: string): Resolver;
  delete(table: string): Resolver;
  deleteByPk(table: string): Resolver;
  /** A root function (`functions`): its rows as a list, or their aggregate. */
  fn(fn: RootFunction, kind: 'list' | 'aggregate'): Resolver;
  /** Answers whole query operations of list, `_by_pk` and root function list reads as JSON text (passthrough.ts). */
  passThrough: PassThrough;
}

function returningOf(field: SelectedField, name = 'returning'): SelectedField[] {
  return field.children.filter((c) => c.name === name).flatMap((c) => c.children);
}

/** The mutation response object keyed by the caller's aliases. */
function response(field: SelectedField, result: MutationResult): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of field.children) out[c.key] = c.name === 'affected_rows' ? result.affected_rows : result.returning;
  return out;
}

function pkWhere(scope: Scope, model: TableModel, values: Record<string, unknown>): (alias: Alias) => SQL {
  return (alias) => pkMatch(scope, model, alias, values);
}

export function createResolvers(api: ApiModel, db: Sql): Resolvers {
  // A read's SQL text depends on the operation, never on the caller (whose values are bound), so a
  // recurring operation is planned once per connection instead of on every request.
  const batcher = new RootFieldBatcher(preparedStatementsOf(db, api.preparedStatements));
  const plans = new Plans(PLANS_KEPT);
  const passThrough = new PassThrough(api, db, preparedStatementsOf(db, api.preparedStatements), PLANS_KEPT);
  /** Runs one root field's SQL (with the operation's other root fields); PostgreSQL builds the JSON answer. */
  const query =
    (table: string, build: (scope: Scope, model: TableModel, field: SelectedField, inputs: UncheckedInput[]) => SQL): Resolver =>
    async (_parent, args, ctx, info) => {
      const { admin, identity } = ctx.caller;
      const scope = callerIndependentScope(api, admin);
      const model = tableModel(scope, table);
      let result: unknown;
      try {
        const plan = plans.get(info, admin, () => {
          const field = rootField(info, args);
          const inputs = uncheckedInputs(api, model, field);
          return { value: build(scope, model, field, inputs), inputs };
        });
        await verifyInputs(ctx.tx ?? db, plan.inputs);
        // In a mutation's transaction a failed shared statement would abort it: one field at a time.
        result = ctx.tx ? await batcher.one(ctx.tx, plan.value, identity) : await batcher.run(ctx, db, plan.value, identity);
      } catch (err) {
        return mapDatabaseError(err);
      }
      checkTotalRows(result, api.maxTotalRows);
      return result;
    };

  /** Mutations run in the operation's transaction (see useMutationTransaction), else in their own. */
  const mutation =
    (table: string, run: (tx: Sql, model: TableModel, field: SelectedField, ctx: GraphQLContext, args: Record<string, unknown>) => Promise<unknown>): Resolver =>
    async (_parent, args, ctx, info) => {
      const model = tableModel(scopeFor(api, ctx.caller), table);
      const field = rootField(info, args);
      try {
        await verifyInputs(ctx.tx ?? db, uncheckedInputs(api, model, field));
        if (ctx.tx) return await run(ctx.tx, model, field, ctx, args);
        return await db.begin((tx) => run(tx as unknown as Sql, model, field, ctx, args));
      } catch (err) {
        return mapDatabaseError(err);
      }
    };

  /** A read whose SQL the pass-through may build as text (its selection permitting). */
  const passable = (table: string, build: (scope: Scope, model: TableModel, field: SelectedField, inputs: UncheckedInput[]) => SQL): Resolver =>
    passThrough.register(query(table, build), { table, build });

  return {
    passThrough,
    list: (table) => passable(table, (scope, model, field) => listSql(scope, model, field)),
    aggregate: (table) => query(table, (scope, model, field) => aggregateSql(scope, model, field)),
    byPk: (table) => passable(table, (scope, model, field) => byPkSql(scope, model, field)),
    insert: (table) =>
      mutation(table, async (tx, model, field, ctx, args) =>
        response(field, await insertObjects(tx, scopeFor(api, ctx.caller), ctx.caller, model, args['objects'] as Record<string, unknown>[], args['on_conflict'] as Record<string, unknown> | undefined, returningOf(field))),
      ),
    insertOne: (table) =>
      mutation(table, async (tx, model, field, ctx, args) => {
        const result = await insertObjects(tx, scopeFor(api, ctx.caller), ctx.caller, model, [args['object'] as Record<string, unknown>], args['on_conflict'] as Record<string, unknown> | undefined, field.children);
        return result.returning[0] ?? null;
      }),
    update: (table) =>
      mutation(table, async (tx, model, field, ctx, args) => {
        const scope = scopeFor(api, ctx.caller);
        const where = writeWhere(scope, model, args['where'] as Record<string, unknown>);
        return response(field, await updateRows(tx, scope, ctx.caller, model, where, args['_set'] as Record<string, unknown>, args['_inc'] as Record<string, unknown>, returningOf(field)));
      }),
    updateMany: (table) =>
      mutation(table, async (tx, model, field, ctx, args) => {
        const scope = scopeFor(api, ctx.caller);
        const out: Record<string, unknown>[] = [];
        // In order: a later update sees what an earlier one wrote, as in Hasura.
        for (const u of args['updates'] as Record<string, unknown>[]) {
          const where = writeWhere(scope, model, u['where'] as Record<string, unknown>);
          out.push(response(field, await updateRows(tx, scope, ctx.caller, model, where, u['_set'] as Record<string, unknown>, u['_inc'] as Record<string, unknown>, returningOf(field))));
        }
        return out;
      }),
    updateByPk: (table) =>
      mutation(table, async (tx, model, field, ctx, args) => {
        const scope = scopeFor(api, ctx.caller);
        const where = pkWhere(scope, model, args['pk_columns'] as Record<string, unknown>);
        const result = await updateRows(tx, scope, ctx.caller, model, where, args['_set'] as Record<string, unknown>, args['_inc'] as Record<string, unknown>, field.children);
        return result.returning[0] ?? null;
      }),
    delete: (table) =>
      mutation(table, async (tx, model, field, ctx, args) => {
        const scope = scopeFor(api, ctx.caller);
        const where = writeWhere(scope, model, args['where'] as Record<string, unknown>);
        return response(field, await deleteRows(tx, scope, model, where, returningOf(field)));
      }),
    deleteByPk: (table) =>
      mutation(table, async (tx, model, field, ctx, args) => {
        const scope = scopeFor(api, ctx.caller);
        const result = await deleteRows(tx, scope, model, pkWhere(scope, model, args), field.children);
        return result.returning[0] ?? null;
      }),
    fn: (fn, kind) => {
      const build = (scope: Scope, model: TableModel, field: SelectedField, inputs: UncheckedInput[]) => {
        const call = functionCall(scope, fn, field, inputs);
        return kind === 'list' ? listSql(scope, model, field, null, call) : aggregateSql(scope, model, field, null, call);
      };
      return kind === 'list' ? passable(fn.table, build) : query(fn.table, build);
    },
  };
}
