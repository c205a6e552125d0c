import type { RuleSite } from './errors.ts';

export interface Step {
  table: string;
  to: string;
  site: RuleSite;
}

/**
 * Elementary cycles of the "table's select rules read table" graph, each reported once
 * (rotated to start at its smallest table name so the same cycle is not listed twice).
 */
export function findCycles(edges: Map<string, { to: string; site: RuleSite }[]>): Step[][] {
  const found = new Map<string, Step[]>();
  const walk = (start: string, at: string, path: Step[], onPath: Set<string>): void => {
    for (const edge of edges.get(at) ?? []) {
      const step = { table: at, to: edge.to, site: edge.site };
      if (edge.to === start) {
        const cycle = [...path, step];
        const names = cycle.map((s) => s.table);
        const first = names.indexOf([...names].sort()[0]!);
        const rotated = [...cycle.slice(first), ...cycle.slice(0, first)];
        const key = rotated.map((s) => `${s.table}>${s.to}`).join(',');
        if (!found.has(key)) found.set(key, rotated);
      } else if (!onPath.has(edge.to) && edge.to > start) {
        // Only extend through tables "after" the start: each cycle is found from its smallest table.
        onPath.add(edge.to);
        walk(start, edge.to, [...path, step], onPath);
        onPath.delete(edge.to);
      }
    }
  };
  for (const start of [...edges.keys()].sort()) walk(start, start, [], new Set([start]));
  return [...found.values()];
}
