export { openDatabase, connect, isConnectionError, retryOnDisconnect, type Database, type Sql } from './connect.ts';
export { startEmbedded, freePort, type EmbeddedServer } from './embedded.ts';
export { runSql, describeSql, compileSql } from './run.ts';
export { PreparedStatements, preparedStatementsOf } from './prepared.ts';
export { readCatalog, baseTables, column, type Catalog, type Table, type Column, type TypeRef, type ForeignKey, type FunctionInfo } from './catalog.ts';
export { computedFunction, rootFunction } from './functions.ts';
