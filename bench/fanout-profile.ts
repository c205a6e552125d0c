import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Where a place in the code is: the package for dependencies, the path for ours. */
function where(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = path.indexOf('/src/');
  if (src >= 0) return path.slice(src + 1);
  return path || '(native)';
}

/**
 * A V8 CPU profile (.cpuprofile) as text: self time by function and by package/file, top `limit`.
 * Enough to see where a gateway spends its thread without opening DevTools.
 */
export async function summariseProfile(file: string, limit: number): Promise<string> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  const total = [...self.values()].reduce((a, b) => a + b, 0) || 1;
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    if (!us) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const key = `${functionName || '(anonymous)'} ${where(url)}${url ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    const place = functionName === '(idle)' || functionName === '(program)' || functionName === '(garbage collector)' ? functionName : where(url);
    byPlace.set(place, (byPlace.get(place) ?? 0) + us);
  }
  const lines = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([k, us]) => `  ${((us / total) * 100).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  return [
    `CPU profile of the gateway while writing (${file}), ${(total / 1e6).toFixed(1)} s sampled:`,
    'self time by package / file:',
    ...lines(byPlace),
    'self time by function:',
    ...lines(byFunction),
  ].join('\n');
}
