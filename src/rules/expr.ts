import type { TypeRef } from '../db/index.ts';

/**
 * The compiler's own expression tree. Every rule condition is translated into it from
 * PostgreSQL's AST, node kind by node kind, so only constructs we understand can ever
 * reach the SQL we emit: anything else was rejected during the translation.
 */
export type Expr =
  | { k: 'col'; inst: number; column: string }
  | { k: 'param'; name: string; type: TypeRef }
  | { k: 'literal'; value: string | number | boolean | null; numeric?: true }
  | { k: 'op'; op: string; left: Expr | null; right: Expr }
  | { k: 'bool'; op: 'AND' | 'OR' | 'NOT'; args: Expr[] }
  | { k: 'in'; negated: boolean; left: Expr; list: Expr[] }
  | { k: 'distinct'; negated: boolean; left: Expr; right: Expr }
  | { k: 'between'; negated: boolean; symmetric: boolean; arg: Expr; low: Expr; high: Expr }
  | { k: 'nulltest'; negated: boolean; arg: Expr }
  | { k: 'booltest'; test: BoolTest; arg: Expr }
  | { k: 'cast'; arg: Expr; type: TypeRef; typmods: number[] }
  | { k: 'func'; schema: string; name: string; args: Expr[] }
  | { k: 'coalesce'; args: Expr[] }
  | { k: 'keyword'; text: SqlKeyword };

export type BoolTest = 'IS TRUE' | 'IS NOT TRUE' | 'IS FALSE' | 'IS NOT FALSE' | 'IS UNKNOWN' | 'IS NOT UNKNOWN';
export type SqlKeyword = 'CURRENT_DATE' | 'CURRENT_TIMESTAMP' | 'LOCALTIMESTAMP' | 'CURRENT_TIME' | 'LOCALTIME';

/** One table in a rule's FROM. */
export interface Instance {
  table: string;
  /** Name the rule used for it (alias or table name); for messages and snapshots only. */
  name: string;
}

/** A rule after translation: which table instances it joins, which one it returns, and one condition. */
export interface AnalyzedRule {
  instances: Instance[];
  target: number;
  /** AND of every ON condition and the WHERE clause; null when the rule has none. */
  condition: Expr | null;
}
