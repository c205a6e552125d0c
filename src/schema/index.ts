import type { GraphQLSchema } from 'graphql';
import type { Config } from '../config/index.ts';
import type { Catalog, Sql } from '../db/index.ts';
import type { CompiledRules } from '../rules/index.ts';
import { createResolvers } from '../resolvers/index.ts';
import { buildGraphQLSchema } from './build.ts';
import { buildModel, type ApiModel } from './model.ts';

export type { GraphQLContext } from './context.ts';
export { buildModel, type ApiModel, type TableModel, type Relationship, type ColumnModel } from './model.ts';
export { SCALARS, scalarFor } from './scalars.ts';

export interface SchemaOptions {
  config: Config;
  catalog: Catalog;
  rules: CompiledRules;
  sql: Sql;
}

/** The GraphQL schema for a config: only listed tables, only declared mutations, Hasura's names. */
export function buildSchema(opts: SchemaOptions): GraphQLSchema {
  const api: ApiModel = buildModel(opts.config, opts.catalog, opts.rules);
  return buildGraphQLSchema(api, createResolvers(api, opts.sql));
}
