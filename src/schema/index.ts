import type { GraphQLSchema } from 'graphql';
import type { Config } from '../config/index.ts';
import type { Catalog, Sql } from '../db/index.ts';
import type { CompiledRules } from '../rules/index.ts';
import { createResolvers, passThroughFor } from '../resolvers/index.ts';
import { buildGraphQLSchema } from './build.ts';
import { LiveEngine, type ChangeSource, type LiveStats } from '../live/index.ts';
import { buildModel, type ApiModel } from './model.ts';

export type { GraphQLContext } from './context.ts';
export { buildModel, type ApiModel, type TableModel, type Relationship, type ColumnModel, type RootFunction } from './model.ts';
export { SCALARS, scalarFor } from './scalars.ts';

export interface SchemaOptions {
  config: Config;
  catalog: Catalog;
  rules: CompiledRules;
  sql: Sql;
  /** The live engine's own pool (database.livePoolSize), apart from the queries' `sql`; default `sql`. */
  liveSql?: Sql;
  /** The change feed; without it the schema has no Subscription type. */
  changes?: ChangeSource | null;
  /** The live engine's counts to go on with (a reload passes the previous engine's). */
  liveStats?: LiveStats;
}

export interface BuiltSchema {
  schema: GraphQLSchema;
  /** The live engine behind the subscriptions, when there is a change feed. */
  live: LiveEngine | null;
}

/** The GraphQL schema for a config: only listed tables, only declared mutations, Hasura's names. */
export function buildSchema(opts: SchemaOptions): GraphQLSchema {
  return buildApi(opts).schema;
}

/** As buildSchema, with the live engine serving its subscriptions (when `changes` is given). */
export function buildApi(opts: SchemaOptions): BuiltSchema {
  const api: ApiModel = buildModel(opts.config, opts.catalog, opts.rules);
  const live = opts.changes ? new LiveEngine(api, opts.liveSql ?? opts.sql, opts.changes, opts.config.limits.subscribersPerStatement, opts.liveStats) : null;
  try {
    const resolvers = createResolvers(api, opts.sql);
    const schema = buildGraphQLSchema(api, resolvers, live);
    passThroughFor(schema, resolvers.passThrough);
    return { schema, live };
  } catch (err) {
    // The engine already follows the change feed; a schema that failed to build must not leave it there.
    live?.close();
    throw err;
  }
}
