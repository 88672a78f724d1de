// Live line charts for the Train tab, as SVG text: the tick rules of src/io/plot.ts (niceTicks,
// logTicks, formatTick), in the page's colours, scaled to their container, with the legend left to
// the HTML around them (so it never hides the newest points, which is where a rising accuracy
// curve goes). Pure: no DOM.

import { formatTick, logTicks, niceTicks } from '../io/plot.ts';

export interface LiveSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  color: string;
  width?: number;
  /** Draw a dot at every point (sparse series: test accuracy). */
  dots?: boolean;
}

export interface LiveChartOptions {
  series: readonly LiveSeries[];
  xLabel: string;
  yLabel: string;
  /** Fixed y range (e.g. [0, 100] for accuracy); default: the data's. */
  yRange?: [number, number];
  logY?: boolean;
  width?: number;
  height?: number;
}

const M = { left: 52, right: 14, top: 12, bottom: 38 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
const r2 = (v: number) => Math.round(v * 100) / 100;

export function liveChartSvg(options: LiveChartOptions): string {
  const { series, xLabel, yLabel, logY = false, width = 640, height = 280 } = options;
  const ok = (x: number, y: number) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const s of series) {
    for (const [x, y] of s.points) {
      if (!ok(x, y)) continue;
      [x0, x1, y0, y1] = [Math.min(x0, x), Math.max(x1, x), Math.min(y0, y), Math.max(y1, y)];
    }
  }
  const empty = x0 > x1;
  if (empty) [x0, x1, y0, y1] = [0, 10, logY ? 0.1 : 0, logY ? 1 : 1];
  if (x0 === x1) x1 = x0 + 1;
  if (options.yRange) [y0, y1] = options.yRange;
  const xTicks = niceTicks(Math.min(0, x0), x1, 6);
  const yTicks = logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5);
  const t = logY ? Math.log10 : (v: number) => v;
  const [xa, xb] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [ya, yb] = [t(yTicks[0]), t(yTicks[yTicks.length - 1])];
  const [L, R, T, B] = [M.left, width - M.right, M.top, height - M.bottom];
  const px = (x: number) => L + ((x - xa) / (xb - xa)) * (R - L);
  const py = (y: number) => B - ((t(y) - ya) / (yb - ya)) * (B - T);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(yLabel)} against ${esc(xLabel)}" font-family="system-ui, sans-serif" font-size="12">`);
  const xStep = xTicks.length > 1 ? xTicks[1] - xTicks[0] : 1;
  const yStep = yTicks.length > 1 ? yTicks[1] - yTicks[0] : 1;
  for (const v of xTicks) {
    const x = r2(px(v));
    out.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${B}" stroke="#eceef4"/>`);
    out.push(`<text x="${x}" y="${B + 16}" text-anchor="middle" fill="#5d6275">${formatTick(v, xStep)}</text>`);
  }
  for (const v of yTicks) {
    const y = r2(py(v));
    out.push(`<line x1="${L}" y1="${y}" x2="${R}" y2="${y}" stroke="#eceef4"/>`);
    out.push(`<text x="${L - 6}" y="${r2(y + 4)}" text-anchor="end" fill="#5d6275">${formatTick(v, logY ? v : yStep)}</text>`);
  }
  out.push(`<line x1="${L}" y1="${B}" x2="${R}" y2="${B}" stroke="#9aa0b8"/><line x1="${L}" y1="${T}" x2="${L}" y2="${B}" stroke="#9aa0b8"/>`);
  out.push(`<text x="${r2((L + R) / 2)}" y="${height - 4}" text-anchor="middle" fill="#5d6275">${esc(xLabel)}</text>`);
  out.push(`<text x="14" y="${r2((T + B) / 2)}" text-anchor="middle" fill="#5d6275" transform="rotate(-90 14 ${r2((T + B) / 2)})">${esc(yLabel)}</text>`);
  const clampY = (y: number) => Math.min(B, Math.max(T, y));
  for (const s of series) {
    const runs: string[][] = [[]];
    for (const [x, y] of s.points) {
      if (ok(x, y)) runs[runs.length - 1].push(`${r2(px(x))} ${r2(clampY(py(y)))}`);
      else if (runs[runs.length - 1].length > 0) runs.push([]);
    }
    const d = runs.filter((r) => r.length > 1).map((r) => `M${r.join(' L')}`).join(' ');
    if (d) out.push(`<path d="${d}" fill="none" stroke="${esc(s.color)}" stroke-width="${s.width ?? 2}" stroke-linejoin="round" stroke-linecap="round"/>`);
    for (const r of runs) {
      if (s.dots || r.length === 1) {
        for (const p of r) {
          const [x, y] = p.split(' ');
          out.push(`<circle cx="${x}" cy="${y}" r="3.5" fill="${esc(s.color)}" stroke="white" stroke-width="1.5"/>`);
        }
      }
    }
  }
  if (empty) out.push(`<text x="${r2((L + R) / 2)}" y="${r2((T + B) / 2)}" text-anchor="middle" fill="#9aa0b8" font-size="14">the curve appears when training starts</text>`);
  out.push('</svg>');
  return out.join('');
}

/** The legend as HTML (swatches and names), to put above a chart. */
export function legendHtml(series: readonly Pick<LiveSeries, 'name' | 'color' | 'dots'>[]): string {
  return series
    .map((s) => `<span class="key"><span class="swatch${s.dots ? ' dot' : ''}" style="background:${esc(s.color)}"></span>${esc(s.name)}</span>`)
    .join('');
}
