import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO } from './harness.js';

/** A V8 .cpuprofile, as `node --cpu-prof` writes it. */
interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  gcMs: number;
  /** Self time by function, highest first. */
  top: Array<{ ms: number; pct: number; fn: string }>;
  /** Self time by area (file or package), highest first. */
  byArea: Array<{ ms: number; pct: number; area: string }>;
}

function area(url: string): string {
  if (!url) return '(native/V8)';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + 'node_modules/'.length).split('/');
    return `npm:${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (path.startsWith('node:')) return path;
  if (path.startsWith(REPO)) return relative(REPO, path);
  return path;
}

/** Self time per function and per file/package: where the connector's CPU went. */
export function summarizeProfile(file: string, topN = 20): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let gc = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!);
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    total += dt;
    if (!n) continue;
    const name = n.callFrame.functionName;
    if (name === '(idle)') {
      idle += dt;
      continue;
    }
    if (name === '(garbage collector)') gc += dt;
    const a = area(n.callFrame.url);
    const k = `${name || '(anonymous)'} ${a}:${n.callFrame.lineNumber + 1}`;
    self.set(k, (self.get(k) ?? 0) + dt);
    areas.set(a, (areas.get(a) ?? 0) + dt);
  }
  const busy = Math.max(1, total - idle);
  const sorted = <T extends string>(m: Map<string, number>, key: T) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([k, ms]) => ({ ms: Math.round(ms), pct: Math.round((ms / busy) * 1000) / 10, [key]: k }) as { ms: number; pct: number } & Record<T, string>);
  return { file, totalMs: Math.round(total), idleMs: Math.round(idle), gcMs: Math.round(gc), top: sorted(self, 'fn'), byArea: sorted(areas, 'area') };
}

export function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f));
  } catch {
    return [];
  }
}

export function renderProfile(s: ProfileSummary, topN = 12): string {
  const lines = [`  profile ${s.file}: ${s.totalMs} ms sampled, ${s.idleMs} ms idle, ${s.gcMs} ms GC; self time of the busy part:`];
  for (const a of s.byArea.slice(0, 8)) lines.push(`    ${String(a.pct).padStart(5)}%  ${String(a.ms).padStart(6)} ms  ${a.area}`);
  lines.push('  top functions:');
  for (const f of s.top.slice(0, topN)) lines.push(`    ${String(f.pct).padStart(5)}%  ${String(f.ms).padStart(6)} ms  ${f.fn}`);
  return lines.join('\n');
}
