export { loadParser, parseRule } from './parse.ts';
export { analyzeRules, compileRules, CompiledRules, type RuleAnalysis, type TablePolicy, type RuleSet, type CompiledRule, type RuleKind, type Relation } from './compile.ts';
export { checkedRules, planRules, verifyRules } from './verify.ts';
export { callerParams, callerSlots, claimsSlot, fillCaller, identityParams, boundValues, BatchParams, unnestRelation, paramValue, type Binder, type Identity, type Caller } from './bind.ts';
export { coerceParam, isBindableType } from './params.ts';
export { and, or, typeSql, type ParamSource, type Alias } from './render.ts';
export { RuleConfigError, RuleError, formatProblem, formatProblems, type RuleProblem, type RuleSite } from './errors.ts';
export type { Expr, AnalyzedRule, Instance } from './expr.ts';
