/** Which rule of the config a problem is in. */
export interface RuleSite {
  table: string;
  /** `select`, `insert.check`, `update.filter`, `update.check` or `delete`. */
  kind: string;
  /** 1-based, as a user counts the rules in the list. */
  index: number;
  text: string;
}

/** One problem in one rule (or, with no site, in the rule set as a whole, e.g. a cycle). */
export interface RuleProblem {
  site: RuleSite | null;
  /** 0-based character offset into the rule text, or null when the fault has no single place. */
  position: number | null;
  message: string;
  hint: string;
}

export class RuleError extends Error {
  constructor(
    message: string,
    readonly position: number | null,
    readonly hint: string,
  ) {
    super(message);
  }
}

/** Thrown when any rule is invalid; carries every problem so all are reported at once. */
export class RuleConfigError extends Error {
  readonly code = 'RULES_INVALID';
  constructor(readonly problems: RuleProblem[]) {
    super(formatProblems(problems));
  }
}

/** 1-based line and column of a 0-based offset; the column counts characters (code points), not bytes or UTF-16 units. */
export function lineAndColumn(text: string, position: number): { line: number; column: number } {
  const before = text.slice(0, position).split('\n');
  return { line: before.length, column: [...(before.at(-1) ?? '')].length + 1 };
}

export function formatProblem(problem: RuleProblem): string {
  const { site, position } = problem;
  if (!site) return `${problem.message}\n  ${problem.hint}`;
  const where = `tables.${site.table}.${site.kind}[${site.index}]`;
  if (position === null) return `${where}: ${problem.message}\n  ${indent(site.text)}\n  ${problem.hint}`;
  const { line, column } = lineAndColumn(site.text, position);
  const lineText = site.text.split('\n')[line - 1] ?? '';
  // Tabs are kept so the caret lines up under a tab-indented rule.
  const caret = `${[...lineText].slice(0, column - 1).map((c) => (c === '\t' ? '\t' : ' ')).join('')}^`;
  return `${where}, line ${line}, column ${column}: ${problem.message}\n  ${lineText}\n  ${caret}\n  ${problem.hint}`;
}

export function formatProblems(problems: RuleProblem[]): string {
  const head = problems.length === 1 ? '1 problem in the rules' : `${problems.length} problems in the rules`;
  return `${head}:\n\n${problems.map(formatProblem).join('\n\n')}`;
}

function indent(text: string): string {
  return text.split('\n').join('\n  ');
}
