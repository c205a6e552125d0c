/** Minimal hand-written SVG line charts for `npm run bench:peers` (no dependencies). */

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: [number, number][];
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  logY?: boolean;
  series: Series[];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number) => (v >= 10_000 ? `${Math.round(v / 1000)}k` : v >= 1000 ? `${(v / 1000).toFixed(v % 1000 === 0 ? 0 : 1)}k` : v >= 10 ? String(Math.round(v)) : v >= 1 ? v.toFixed(1) : v.toPrecision(1));

function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
    return out;
  }
  const step = 10 ** Math.floor(Math.log10(Math.max(hi - lo, 1e-9) / 4));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= 6) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.floor(lo / nice) * nice; v <= hi + 1e-9; v += nice) out.push(v);
  return out;
}

/** Several charts side by side in one SVG. */
export function svgCharts(charts: Chart[], caption: string): string {
  const W = 460;
  const H = 320;
  const m = { l: 64, r: 16, t: 36, b: 78 };
  const parts: string[] = [];
  charts.forEach((c, ci) => {
    const ox = ci * W;
    const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!c.logY || y > 0) && (!c.logX || x > 0));
    if (pts.length === 0) return;
    let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
    if (c.logY) [y0, y1] = [10 ** Math.floor(Math.log10(y0)), 10 ** Math.ceil(Math.log10(y1))];
    else [y0, y1] = [0, y1 * 1.1 || 1];
    if (c.logX) [x0, x1] = [10 ** Math.floor(Math.log10(x0)), 10 ** Math.ceil(Math.log10(x1))];
    else if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
    const tx = (x: number) => ox + m.l + ((c.logX ? Math.log10(x) - Math.log10(x0) : x - x0) / (c.logX ? Math.log10(x1) - Math.log10(x0) : x1 - x0)) * (W - m.l - m.r);
    const ty = (y: number) => H - m.b - ((c.logY ? Math.log10(y) - Math.log10(y0) : y - y0) / (c.logY ? Math.log10(y1) - Math.log10(y0) : y1 - y0)) * (H - m.t - m.b);
    parts.push(`<text x="${ox + W / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(c.title)}</text>`);
    parts.push(`<rect x="${ox + m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#999"/>`);
    for (const v of ticks(y0, y1, !!c.logY)) {
      if (v < y0 || v > y1) continue;
      parts.push(`<line x1="${ox + m.l}" x2="${ox + W - m.r}" y1="${ty(v)}" y2="${ty(v)}" stroke="#eee"/>`);
      parts.push(`<text x="${ox + m.l - 4}" y="${ty(v) + 4}" text-anchor="end" font-size="11">${fmt(v)}</text>`);
    }
    const xs = c.logX ? ticks(x0, x1, true) : [...new Set(pts.map((p) => p[0]))].sort((a, b) => a - b);
    for (const v of xs) parts.push(`<text x="${tx(v)}" y="${H - m.b + 16}" text-anchor="middle" font-size="11">${fmt(v)}</text>`);
    parts.push(`<text x="${ox + m.l + (W - m.l - m.r) / 2}" y="${H - m.b + 32}" text-anchor="middle" font-size="12">${esc(c.xLabel)}</text>`);
    parts.push(`<text transform="translate(${ox + 14},${m.t + (H - m.t - m.b) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(c.yLabel)}</text>`);
    c.series.forEach((s, si) => {
      const ok = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!c.logY || y > 0)).sort((a, b) => a[0] - b[0]);
      if (ok.length) {
        parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5,4"' : ''} points="${ok.map(([x, y]) => `${tx(x).toFixed(1)},${ty(y).toFixed(1)}`).join(' ')}"/>`);
        for (const [x, y] of ok) parts.push(`<circle cx="${tx(x).toFixed(1)}" cy="${ty(y).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(s.name)}: ${fmt(x)} → ${y.toFixed(y < 10 ? 2 : 0)}</title></circle>`);
      }
      const lx = ox + m.l + (si % 2) * 190;
      const ly = H - m.b + 48 + Math.floor(si / 2) * 15;
      parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5,4"' : ''}/>`);
      parts.push(`<text x="${lx + 22}" y="${ly}" font-size="11">${esc(s.name)}</text>`);
    });
  });
  const width = W * charts.length;
  const height = H + 22;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
<text x="8" y="${height - 6}" font-size="10" fill="#555">${esc(caption)}</text>
</svg>
`;
}
