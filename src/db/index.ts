export { openDatabase, databaseAddress, connect, isConnectionError, LIVE_APPLICATION_NAME, retryOnDisconnect, type Database, type Settings, type Sql } from './connect.ts';
export { startEmbedded, runningEmbedded, freePort, type EmbeddedServer } from './embedded.ts';
export { runSql, runCompiledSql, describeSql, compileSql } from './run.ts';
export { PreparedStatements, preparedStatementsOf } from './prepared.ts';
export { readCatalog, baseTables, column, type Catalog, type Table, type Column, type TypeRef, type ForeignKey, type FunctionInfo } from './catalog.ts';
export { computedFunction, rootFunction } from './functions.ts';
