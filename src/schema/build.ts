import SchemaBuilder from '@pothos/core';
import type { GraphQLSchema } from 'graphql';
import type { GraphQLContext } from './context.ts';
import { nestedInsert, type ApiModel, type ColumnModel, type RootFunction, type TableModel } from './model.ts';
import { AGGREGATE_FUNCTIONS } from './aggregates.ts';
import { castsToString, OPERATORS, STRING_SCALAR, type Operator } from './operators.ts';
import { SCALARS } from './scalars.ts';
import { rootField, type Resolvers } from '../resolvers/index.ts';
import type { LiveEngine, LiveKind } from '../live/index.ts';

type Row = Record<string, unknown>;
type Text = { Input: string; Output: string };
type Json = { Input: unknown; Output: unknown };
interface Types {
  Context: GraphQLContext;
  DefaultFieldNullability: false;
  DefaultInputFieldRequiredness: false;
  Scalars: { bigint: Text; numeric: Text; uuid: Text; timestamptz: Text; timestamp: Text; date: Text; jsonb: Json; json: Json };
}
type Builder = PothosSchemaTypes.SchemaBuilder<PothosSchemaTypes.ExtendDefaultTypes<Types>>;
// Types are created from the catalog at run time, so their names are not known to the compiler:
// refs are handled through this loose alias, and field shapes are checked by graphql-js at build.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyRef = any;

const VALID_NAME = /^[_A-Za-z][_0-9A-Za-z]*$/;

/** Every resolver reads its value from the parent's JSON under its response key (its alias). */
const fromParent = (parent: unknown, _args: unknown, _ctx: unknown, info: { path: { key: string | number } }) =>
  (parent as Row)[info.path.key as string];

interface TableRefs {
  object: AnyRef;
  aggregate: AnyRef;
  aggregateFields: AnyRef;
  boolExp: AnyRef;
  orderBy: AnyRef;
  aggregateOrderBy: AnyRef;
  selectColumn: AnyRef;
  insertInput: AnyRef;
  setInput: AnyRef;
  incInput: AnyRef;
  pkInput: AnyRef;
  onConflict: AnyRef;
  constraint: AnyRef;
  updateColumn: AnyRef;
  mutationResponse: AnyRef;
  change: AnyRef;
  streamCursor: AnyRef;
  streamCursorValue: AnyRef;
  /** `t_<fn>_fields` per aggregate function that applies to some column of the table. */
  summary: Map<string, AnyRef>;
  /** `t_<fn>_order_by` per aggregate function, for ordering a parent by this table's aggregate. */
  summaryOrderBy: Map<string, AnyRef>;
}

/**
 * The GraphQL schema of the API model, with Hasura's names and shapes (docs/api.md), so frontends
 * and codegen written for Hasura work unchanged on the operations rowgate supports.
 */
export function buildGraphQLSchema(api: ApiModel, resolvers: Resolvers, live: LiveEngine | null = null): GraphQLSchema {
  const builder = new SchemaBuilder<Types>({ defaultFieldNullability: false }) as unknown as Builder;
  for (const scalar of SCALARS) builder.addScalarType(scalar.name as never, scalar);

  const orderBy = builder.enumType('order_by', {
    description: 'column ordering options',
    values: {
      asc: { description: 'in ascending order, nulls last' },
      asc_nulls_first: { description: 'in ascending order, nulls first' },
      asc_nulls_last: { description: 'in ascending order, nulls last' },
      desc: { description: 'in descending order, nulls first' },
      desc_nulls_first: { description: 'in descending order, nulls first' },
      desc_nulls_last: { description: 'in descending order, nulls last' },
    } as const,
  });

  const changeOp = live
    ? builder.enumType('change_op', {
        description: 'what happened to a row, as the subscriber sees it',
        values: { INSERT: { description: 'the row entered the view' }, UPDATE: { description: 'the row changed and stays in view' }, DELETE: { description: 'the row left the view' } } as const,
      })
    : null;
  const cursorOrdering = live
    ? builder.enumType('cursor_ordering', { description: 'ordering argument of a cursor', values: { ASC: { description: 'ascending ordering of the cursor' }, DESC: { description: 'descending ordering of the cursor' } } as const })
    : null;

  const comparisons = new Map<string, AnyRef>();
  const comparisonFor = (col: ColumnModel): AnyRef => {
    const scalar = col.scalar.name;
    const name = col.scalar.list ? `${scalar}_array_comparison_exp` : `${scalar}_comparison_exp`;
    let ref = comparisons.get(name);
    if (ref) return ref;
    const operand = (t: AnyRef, input: Operator['input']) =>
      input === 'scalar' || input === 'String' || input === 'jsonb'
        ? t.field({ type: input === 'scalar' ? scalar : input })
        : t.field({ type: [input === 'scalars' ? scalar : 'String'], required: { list: false, items: true } });
    // `_cast: {String: String_comparison_exp}` compares the column's text form (Hasura's <type>_cast_exp).
    const cast = castsToString(col.scalar)
      ? builder.inputType(`${scalar}_cast_exp`, { fields: (t: AnyRef) => ({ String: t.field({ type: comparisonFor({ ...col, scalar: STRING_SCALAR }) }) }) })
      : null;
    ref = builder.inputType(name, {
      description: `Boolean expression to compare columns of type "${scalar}${col.scalar.list ? '[]' : ''}". All fields are combined with logical 'AND'.`,
      fields: (t: AnyRef) => ({
        _is_null: t.boolean(),
        ...(cast ? { _cast: t.field({ type: cast }) } : {}),
        ...Object.fromEntries(OPERATORS.filter((o) => o.applies(col.scalar)).map((o) => [o.name, operand(t, o.input)])),
      }),
    });
    comparisons.set(name, ref);
    return ref;
  };

  const refs = new Map<string, TableRefs>();
  const tables = [...api.tables.values()].filter((m) => {
    if (!VALID_NAME.test(m.name)) throw new Error(`table "${m.name}" has no valid GraphQL name; rename it or leave it out of "tables"`);
    return true;
  });
  // What callers read, filter, sort and aggregate on: the readable columns; writes take any column
  // their rule lists (a write-only column such as a password hash is not readable).
  const columnsOf = (m: TableModel) => m.readable.filter((c) => VALID_NAME.test(c.name));
  const writableOf = (m: TableModel) => m.columns.filter((c) => VALID_NAME.test(c.name));
  // `_by_pk` fields take the key as arguments: only when every key column is readable, or probing
  // keys would reveal the values of an unreadable column.
  const keyed = (m: TableModel) => m.primaryKey.length > 0 && m.primaryKey.every((k) => m.readable.includes(k));

  // Create every ref first: types refer to each other (relationships, nested filters) in cycles.
  for (const m of tables) {
    const t = m.name;
    const cols = columnsOf(m);
    const ordered = cols.filter((c) => c.scalar.ordered && !c.scalar.list);
    const summarized = AGGREGATE_FUNCTIONS.filter((a) => cols.some((c) => a.applies(c.scalar)));
    const enumOf = (names: string[], what: string) =>
      names.length ? Object.fromEntries(names.map((n) => [n, { description: `${what} "${n}"` }])) : null;
    const selectValues = enumOf(cols.map((c) => c.name), 'column');
    const insert = m.policy.insert;
    const update = m.policy.update;
    const updateValues = enumOf(update ? update.columns.filter((c) => VALID_NAME.test(c)) : [], 'column');
    const constraintValues = enumOf(m.table.uniques.map((u) => u.name).filter((n) => VALID_NAME.test(n)), 'unique or primary key constraint');
    refs.set(t, {
      object: builder.objectRef<Row>(t),
      aggregate: builder.objectRef<Row>(`${t}_aggregate`),
      aggregateFields: builder.objectRef<Row>(`${t}_aggregate_fields`),
      boolExp: builder.inputRef<Row>(`${t}_bool_exp`),
      orderBy: builder.inputRef<Row>(`${t}_order_by`),
      aggregateOrderBy: builder.inputRef<Row>(`${t}_aggregate_order_by`),
      selectColumn: selectValues ? builder.enumType(`${t}_select_column`, { values: selectValues }) : null,
      insertInput: insert ? builder.inputRef<Row>(`${t}_insert_input`) : null,
      setInput: update ? builder.inputRef<Row>(`${t}_set_input`) : null,
      incInput: update && writableOf(m).some((c) => c.scalar.numeric && !c.scalar.list && update.columns.includes(c.name)) ? builder.inputRef<Row>(`${t}_inc_input`) : null,
      pkInput: keyed(m) ? builder.inputRef<Row>(`${t}_pk_columns_input`) : null,
      onConflict: insert && constraintValues ? builder.inputRef<Row>(`${t}_on_conflict`) : null,
      constraint: insert && constraintValues ? builder.enumType(`${t}_constraint`, { values: constraintValues }) : null,
      updateColumn: insert && constraintValues ? builder.enumType(`${t}_update_column`, { values: updateValues ?? { _PLACEHOLDER: { description: 'no column can be updated' } } }) : null,
      mutationResponse: insert || update || m.policy.delete ? builder.objectRef<Row>(`${t}_mutation_response`) : null,
      change: live ? builder.objectRef<Row>(`${t}_change`) : null,
      streamCursor: live && ordered.length ? builder.inputRef<Row>(`${t}_stream_cursor_input`) : null,
      streamCursorValue: live && ordered.length ? builder.inputRef<Row>(`${t}_stream_cursor_value_input`) : null,
      summary: new Map(summarized.map((a) => [a.name, builder.objectRef<Row>(`${t}_${a.name}_fields`)])),
      summaryOrderBy: new Map(summarized.map((a) => [a.name, builder.inputRef<Row>(`${t}_${a.name}_order_by`)])),
    });
  }
  const refsOf = (t: string) => refs.get(t)!;

  // `<target>_obj_rel_insert_input` / `<target>_arr_rel_insert_input`, made once per table when used.
  const relInsertInputs = new Map<string, AnyRef>();
  const relInsertInput = (target: string, kind: 'object' | 'array'): AnyRef => {
    const name = `${target}_${kind === 'object' ? 'obj' : 'arr'}_rel_insert_input`;
    let ref = relInsertInputs.get(name);
    if (ref) return ref;
    const r = refsOf(target);
    ref = builder.inputType(name, {
      description: `input type for inserting ${kind === 'object' ? 'object' : 'array'} relation for remote table "${target}"`,
      fields: (f: AnyRef) => ({
        data: kind === 'object' ? f.field({ type: r.insertInput, required: true }) : f.field({ type: [r.insertInput], required: { list: true, items: true } }),
        ...(r.onConflict ? { on_conflict: f.field({ type: r.onConflict, description: 'upsert condition' }) } : {}),
      }),
    });
    relInsertInputs.set(name, ref);
    return ref;
  };

  const listArgs = (t: AnyRef, target: string) => ({
    ...(refsOf(target).selectColumn
      ? { distinct_on: t.arg({ type: [refsOf(target).selectColumn], required: { list: false, items: true }, description: 'distinct select on columns' }) }
      : {}),
    where: t.arg({ type: refsOf(target).boolExp, description: 'filter the rows returned' }),
    order_by: t.arg({ type: [refsOf(target).orderBy], required: { list: false, items: true }, description: 'sort the rows by one or more columns' }),
    limit: t.arg.int({ description: 'limit the number of rows returned' }),
    offset: t.arg.int({ description: 'skip the first n rows. Use only with order_by' }),
  });

  for (const m of tables) {
    const t = m.name;
    const r = refsOf(t);
    const cols = columnsOf(m);
    const colType = (c: ColumnModel) => (c.scalar.list ? [c.scalar.name] : c.scalar.name);
    const colNullable = (c: ColumnModel) => (c.scalar.list ? { list: c.nullable, items: true } : c.nullable);

    r.object.implement({
      description: `columns and relationships of "${t}"`,
      fields: (f: AnyRef) => {
        const fields: Record<string, unknown> = {};
        // json/jsonb columns take Hasura's `path` argument: the value at that path, or null.
        const json = (c: ColumnModel) => !c.scalar.list && (c.scalar.name === 'json' || c.scalar.name === 'jsonb');
        for (const c of cols) {
          const args = json(c) ? { path: f.arg.string({ description: 'JSON select path' }) } : {};
          fields[c.name] = f.field({ type: colType(c), nullable: json(c) ? true : colNullable(c), args, resolve: fromParent });
        }
        for (const c of m.computed.filter((x) => VALID_NAME.test(x.name))) {
          fields[c.name] = f.field({ type: c.scalar.list ? [c.scalar.name] : c.scalar.name, nullable: c.scalar.list ? { list: true, items: true } : true, description: `computed by ${c.fn.name}()`, resolve: fromParent });
        }
        for (const rel of m.relationships) {
          const target = refsOf(rel.target);
          if (rel.kind === 'object') {
            // Nullable even over a NOT NULL foreign key: the related row may be hidden from the caller.
            fields[rel.name] = f.field({ type: target.object, nullable: true, description: 'An object relationship', resolve: fromParent });
          } else {
            fields[rel.name] = f.field({ type: [target.object], args: listArgs(f, rel.target), description: 'An array relationship', resolve: fromParent });
            fields[`${rel.name}_aggregate`] = f.field({ type: target.aggregate, args: listArgs(f, rel.target), description: 'An aggregate relationship', resolve: fromParent });
          }
        }
        return fields;
      },
    });

    r.aggregate.implement({
      description: `aggregated selection of "${t}"`,
      fields: (f: AnyRef) => ({
        aggregate: f.field({ type: r.aggregateFields, nullable: true, resolve: fromParent }),
        nodes: f.field({ type: [r.object], resolve: fromParent }),
      }),
    });
    r.aggregateFields.implement({
      description: `aggregate fields of "${t}"`,
      fields: (f: AnyRef) => ({
        count: f.int({
          args: {
            ...(r.selectColumn ? { columns: f.arg({ type: [r.selectColumn], required: { list: false, items: true } }) } : {}),
            distinct: f.arg.boolean(),
          },
          resolve: fromParent,
        }),
        ...Object.fromEntries([...r.summary].map(([k, ref]) => [k, f.field({ type: ref, nullable: true, resolve: fromParent })])),
      }),
    });
    for (const a of AGGREGATE_FUNCTIONS) {
      const picked = cols.filter((c) => a.applies(c.scalar));
      r.summary.get(a.name)?.implement({
        description: `aggregate ${a.name} on columns of "${t}"`,
        fields: (f: AnyRef) => Object.fromEntries(picked.map((c) => [c.name, f.field({ type: a.result(c.scalar), nullable: true, resolve: fromParent })])),
      });
      r.summaryOrderBy.get(a.name)?.implement({
        description: `order by ${a.name}() on columns of table "${t}"`,
        fields: (f: AnyRef) => Object.fromEntries(picked.map((c) => [c.name, f.field({ type: orderBy })])),
      });
    }

    r.boolExp.implement({
      description: `Boolean expression to filter rows from the table "${t}". All fields are combined with a logical 'AND'.`,
      fields: (f: AnyRef) => {
        const fields: Record<string, unknown> = {
          _and: f.field({ type: [r.boolExp], required: { list: false, items: true } }),
          _or: f.field({ type: [r.boolExp], required: { list: false, items: true } }),
          _not: f.field({ type: r.boolExp }),
        };
        for (const c of cols) fields[c.name] = f.field({ type: comparisonFor(c) });
        for (const rel of m.relationships) fields[rel.name] = f.field({ type: refsOf(rel.target).boolExp });
        return fields;
      },
    });

    r.orderBy.implement({
      description: `Ordering options when selecting data from "${t}".`,
      fields: (f: AnyRef) => {
        const fields: Record<string, unknown> = {};
        for (const c of cols) if (!c.scalar.list) fields[c.name] = f.field({ type: orderBy });
        for (const rel of m.relationships) {
          if (rel.kind === 'object') fields[rel.name] = f.field({ type: refsOf(rel.target).orderBy });
          else fields[`${rel.name}_aggregate`] = f.field({ type: refsOf(rel.target).aggregateOrderBy });
        }
        return fields;
      },
    });
    r.aggregateOrderBy.implement({
      description: `order by aggregate values of table "${t}"`,
      fields: (f: AnyRef) => ({
        count: f.field({ type: orderBy }),
        ...Object.fromEntries([...r.summaryOrderBy].map(([k, ref]) => [k, f.field({ type: ref })])),
      }),
    });

    r.change?.implement({
      description: `a change to a row of "${t}" that the subscriber may see`,
      fields: (f: AnyRef) => ({
        op: f.field({ type: changeOp, resolve: fromParent }),
        position: f.string({ description: 'opaque and ordered: pass it as `after` to resume after this event', resolve: fromParent }),
        row: f.field({ type: r.object, nullable: true, description: 'the row after the change (null for DELETE)', resolve: fromParent }),
        old: f.field({ type: r.object, nullable: true, description: 'the row before the change, as the subscriber last could see it (null for INSERT)', resolve: fromParent }),
      }),
    });
    r.streamCursorValue?.implement({
      description: `initial value of the column from where the streaming should start`,
      fields: (f: AnyRef) => Object.fromEntries(cols.filter((c) => c.scalar.ordered && !c.scalar.list).map((c) => [c.name, f.field({ type: c.scalar.name })])),
    });
    r.streamCursor?.implement({
      description: `Streaming cursor of the table "${t}"`,
      fields: (f: AnyRef) => ({
        initial_value: f.field({ type: r.streamCursorValue, required: true, description: 'Stream column input with initial value' }),
        ordering: f.field({ type: cursorOrdering, description: 'cursor ordering' }),
      }),
    });

    const insert = m.policy.insert;
    if (insert && r.insertInput) {
      const allowed = writableOf(m).filter((c) => insert.columns.includes(c.name));
      // Nested inserts (Hasura's): a relationship whose target may be inserted into.
      const nested = m.relationships.filter((rel) => nestedInsert(api, m, rel));
      r.insertInput.implement({
        description: `input type for inserting data into table "${t}"`,
        fields: (f: AnyRef) => ({
          ...Object.fromEntries(allowed.map((c) => [c.name, f.field({ type: colType(c) })])),
          ...Object.fromEntries(nested.map((rel) => [rel.name, f.field({ type: relInsertInput(rel.target, rel.kind) })])),
        }),
      });
    }
    const update = m.policy.update;
    if (update && r.setInput) {
      const allowed = writableOf(m).filter((c) => update.columns.includes(c.name));
      r.setInput.implement({
        description: `input type for updating data in table "${t}"`,
        fields: (f: AnyRef) => Object.fromEntries(allowed.map((c) => [c.name, f.field({ type: colType(c) })])),
      });
      r.incInput?.implement({
        description: `input type for incrementing numeric columns in table "${t}"`,
        fields: (f: AnyRef) => Object.fromEntries(allowed.filter((c) => c.scalar.numeric && !c.scalar.list).map((c) => [c.name, f.field({ type: c.scalar.name })])),
      });
    }
    r.pkInput?.implement({
      description: `primary key columns input for table: ${t}`,
      fields: (f: AnyRef) => Object.fromEntries(m.primaryKey.map((c) => [c.name, f.field({ type: c.scalar.name, required: true })])),
    });
    r.onConflict?.implement({
      description: `on_conflict condition type for table "${t}"`,
      fields: (f: AnyRef) => ({
        constraint: f.field({ type: r.constraint, required: true }),
        update_columns: f.field({ type: [r.updateColumn], required: true, defaultValue: [] }),
        where: f.field({ type: r.boolExp }),
      }),
    });
    r.mutationResponse?.implement({
      description: `response of any mutation on the table "${t}"`,
      fields: (f: AnyRef) => ({
        affected_rows: f.int({ description: 'number of rows affected by the mutation', resolve: fromParent }),
        returning: f.field({ type: [r.object], description: 'data from the rows affected by the mutation', resolve: fromParent }),
      }),
    });
  }

  const pkArgs = (f: AnyRef, m: TableModel) => Object.fromEntries(m.primaryKey.map((c) => [c.name, f.arg({ type: c.scalar.name, required: true })]));

  // Hasura's tracked functions: `fn(args: fn_args, where, …)` and `fn_aggregate`, over the rows
  // of its table that the caller may see (the table's select rules judge each returned row).
  const functions = api.functions.filter((fn) => VALID_NAME.test(fn.name));
  const fnArgs = new Map(
    functions.filter((fn) => fn.args.length).map((fn) => [fn.name, builder.inputType(`${fn.name}_args`, {
      description: `input arguments for function "${fn.name}"`,
      fields: (f: AnyRef) => Object.fromEntries(fn.args.map((a) => [a.name, f.field({ type: a.scalar.list ? [a.scalar.name] : a.scalar.name, required: a.scalar.list ? { list: false, items: false } : false })])),
    })]),
  );

  builder.queryType({
    name: api.rootTypes.query,
    fields: (f: AnyRef) => {
      const fields: Record<string, AnyRef> = {};
      for (const fn of functions) {
        const r = refsOf(fn.table);
        const args = { ...(fnArgs.has(fn.name) ? { args: f.arg({ type: fnArgs.get(fn.name), required: true, description: `input parameters for function "${fn.name}"` }) } : {}), ...listArgs(f, fn.table) };
        fields[fn.name] = f.field({ type: [r.object], args, description: `execute function "${fn.name}" which returns "${fn.table}"`, resolve: resolvers.fn(fn, 'list') });
        fields[`${fn.name}_aggregate`] = f.field({ type: r.aggregate, args, description: `execute function "${fn.name}" and query aggregates on result of table type "${fn.table}"`, resolve: resolvers.fn(fn, 'aggregate') });
      }
      for (const m of tables) {
        const r = refsOf(m.name);
        fields[m.name] = f.field({ type: [r.object], args: listArgs(f, m.name), description: `fetch data from the table: "${m.name}"`, resolve: resolvers.list(m.name) });
        fields[`${m.name}_aggregate`] = f.field({ type: r.aggregate, args: listArgs(f, m.name), description: `fetch aggregated fields from the table: "${m.name}"`, resolve: resolvers.aggregate(m.name) });
        if (keyed(m)) {
          fields[`${m.name}_by_pk`] = f.field({ type: r.object, nullable: true, args: pkArgs(f, m), description: `fetch data from the table: "${m.name}" using primary key columns`, resolve: resolvers.byPk(m.name) });
        }
      }
      return fields;
    },
  });

  const mutable = tables.filter((m) => m.policy.insert || m.policy.update || m.policy.delete);
  if (mutable.length) {
    builder.mutationType({
      name: api.rootTypes.mutation,
      fields: (f: AnyRef) => {
        const fields: Record<string, AnyRef> = {};
        for (const m of mutable) {
          const r = refsOf(m.name);
          if (m.policy.insert) {
            const conflict = r.onConflict ? { on_conflict: f.arg({ type: r.onConflict, description: 'upsert condition' }) } : {};
            fields[`insert_${m.name}`] = f.field({
              type: r.mutationResponse,
              nullable: true,
              description: `insert data into the table: "${m.name}"`,
              args: { objects: f.arg({ type: [r.insertInput], required: { list: true, items: true } }), ...conflict },
              resolve: resolvers.insert(m.name),
            });
            fields[`insert_${m.name}_one`] = f.field({
              type: r.object,
              nullable: true,
              description: `insert a single row into the table: "${m.name}"`,
              args: { object: f.arg({ type: r.insertInput, required: true }), ...conflict },
              resolve: resolvers.insertOne(m.name),
            });
          }
          if (m.policy.update) {
            const inc = r.incInput ? { _inc: f.arg({ type: r.incInput, description: 'increments the numeric columns with given value of the filtered values' }) } : {};
            fields[`update_${m.name}`] = f.field({
              type: r.mutationResponse,
              nullable: true,
              description: `update data of the table: "${m.name}"`,
              args: { where: f.arg({ type: r.boolExp, required: true }), _set: f.arg({ type: r.setInput }), ...inc },
              resolve: resolvers.update(m.name),
            });
            // Hasura's update_t_many: several (where, _set, _inc) updates, in order, in one transaction.
            const updates = builder.inputType(`${m.name}_updates`, {
              fields: (t: AnyRef) => ({ where: t.field({ type: r.boolExp, required: true, description: 'filter the rows which have to be updated' }), _set: t.field({ type: r.setInput }), ...(r.incInput ? { _inc: t.field({ type: r.incInput }) } : {}) }),
            });
            fields[`update_${m.name}_many`] = f.field({
              type: [r.mutationResponse],
              nullable: { list: true, items: true },
              description: `update multiples rows of table: "${m.name}"`,
              args: { updates: f.arg({ type: [updates], required: { list: true, items: true } }) },
              resolve: resolvers.updateMany(m.name),
            });
            if (r.pkInput) {
              fields[`update_${m.name}_by_pk`] = f.field({
                type: r.object,
                nullable: true,
                description: `update single row of the table: "${m.name}"`,
                args: { pk_columns: f.arg({ type: r.pkInput, required: true }), _set: f.arg({ type: r.setInput }), ...inc },
                resolve: resolvers.updateByPk(m.name),
              });
            }
          }
          if (m.policy.delete) {
            fields[`delete_${m.name}`] = f.field({
              type: r.mutationResponse,
              nullable: true,
              description: `delete data from the table: "${m.name}"`,
              args: { where: f.arg({ type: r.boolExp, required: true }) },
              resolve: resolvers.delete(m.name),
            });
            if (keyed(m)) {
              fields[`delete_${m.name}_by_pk`] = f.field({
                type: r.object,
                nullable: true,
                description: `delete single row from the table: "${m.name}"`,
                args: pkArgs(f, m),
                resolve: resolvers.deleteByPk(m.name),
              });
            }
          }
        }
        return fields;
      },
    });
  }

  if (live) {
    const subscribe = (kind: LiveKind | 'changes' | 'stream', model: TableModel) =>
      async (_parent: unknown, args: Record<string, unknown>, ctx: GraphQLContext, info: Parameters<typeof rootField>[0]) => {
        // A reconnecting SSE client's Last-Event-ID is where its change stream got to: it wins over `after`.
        const resume = kind === 'changes' && ctx.lastEventId !== undefined ? { ...args, after: ctx.lastEventId } : args;
        const field = rootField(info, resume);
        await live.checkInputs(model, field);
        if (kind === 'changes') return live.subscribeChanges(ctx.caller, model, field);
        if (kind === 'stream') return live.subscribeStream(ctx.caller, model, field);
        return live.subscribeLive(ctx.caller, kind, model, field);
      };
    // A root function as a live query (Hasura's function subscriptions): its rows, judged by its table's rules.
    const subscribeFn = (fn: RootFunction, kind: 'list' | 'aggregate') =>
      async (_parent: unknown, args: Record<string, unknown>, ctx: GraphQLContext, info: Parameters<typeof rootField>[0]) => {
        const model = api.tables.get(fn.table)!;
        const field = rootField(info, args);
        await live.checkInputs(model, field, fn);
        return live.subscribeLive(ctx.caller, kind, model, field, fn);
      };
    const payload = (value: unknown) => value;
    builder.subscriptionType({
      name: api.rootTypes.subscription,
      fields: (f: AnyRef) => {
        const fields: Record<string, AnyRef> = {};
        for (const m of tables) {
          const r = refsOf(m.name);
          fields[m.name] = f.field({ type: [r.object], args: listArgs(f, m.name), description: `live query on the table: "${m.name}"`, subscribe: subscribe('list', m), resolve: payload });
          fields[`${m.name}_aggregate`] = f.field({ type: r.aggregate, args: listArgs(f, m.name), description: `live aggregate on the table: "${m.name}"`, subscribe: subscribe('aggregate', m), resolve: payload });
          if (keyed(m)) {
            fields[`${m.name}_by_pk`] = f.field({ type: r.object, nullable: true, args: pkArgs(f, m), description: `live row of the table: "${m.name}" by primary key`, subscribe: subscribe('byPk', m), resolve: payload });
          }
          if (r.streamCursor) {
            fields[`${m.name}_stream`] = f.field({
              type: [r.object],
              description: `fetch data from the table in a streaming manner: "${m.name}"`,
              args: {
                batch_size: f.arg.int({ required: true, description: 'maximum number of rows returned in a single batch' }),
                cursor: f.arg({ type: [r.streamCursor], required: { list: true, items: false }, description: 'cursor to stream the results returned by the query' }),
                where: f.arg({ type: r.boolExp, description: 'filter the rows returned' }),
              },
              subscribe: subscribe('stream', m),
              resolve: payload,
            });
          }
          // The change log holds rows of tables: a view's changes would be its base tables' rows.
          if (m.table.kind !== 'view') fields[`${m.name}_changes`] = f.field({
            type: r.change,
            description: `one event per committed change of "${m.name}" that the subscriber may see; resume with after`,
            args: { where: f.arg({ type: r.boolExp, description: 'filter the changed rows (old and new images)' }), after: f.arg.string({ description: 'resume after this position' }) },
            subscribe: subscribe('changes', m),
            resolve: payload,
          });
        }
        for (const fn of functions) {
          const r = refsOf(fn.table);
          const args = { ...(fnArgs.has(fn.name) ? { args: f.arg({ type: fnArgs.get(fn.name), required: true, description: `input parameters for function "${fn.name}"` }) } : {}), ...listArgs(f, fn.table) };
          fields[fn.name] = f.field({ type: [r.object], args, description: `live query on function "${fn.name}" which returns "${fn.table}"`, subscribe: subscribeFn(fn, 'list'), resolve: payload });
          fields[`${fn.name}_aggregate`] = f.field({ type: r.aggregate, args, description: `live aggregate on function "${fn.name}" which returns "${fn.table}"`, subscribe: subscribeFn(fn, 'aggregate'), resolve: payload });
        }
        return fields;
      },
    });
  }

  return builder.toSchema({ sortSchema: false });
}
