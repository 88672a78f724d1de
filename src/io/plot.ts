// Line charts as standalone SVG (pure, no dependencies) for training curves: loss, accuracy, test
// error against step or epoch. Non-finite points (a diverged loss) and, on a log axis, non-positive
// ones are left out and break the line rather than poisoning the output with NaN coordinates.

export interface ChartSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** Any SVG colour; by default the next of a colour-blind-safe palette. */
  color?: string;
}

export interface LineChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  series: readonly ChartSeries[];
  /** Logarithmic y axis (base 10): points with y <= 0 are skipped. */
  logY?: boolean;
  width?: number;
  height?: number;
}

/** Okabe-Ito colours: distinguishable with the common colour-vision deficiencies. */
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];
const MARGIN = { left: 64, right: 28, top: 40, bottom: 48 }; // right: room for half of the last x label

/**
 * Tick values at multiples of a 1, 2 or 5 x 10^k step, from at or below `min` to at or above `max`,
 * about `target` of them. A degenerate range (min == max) is widened so the axis still has a scale.
 */
export function niceTicks(min: number, max: number, target = 6): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max) || min > max) throw new RangeError(`niceTicks: bad range [${min}, ${max}]`);
  if (min === max) {
    const d = min === 0 ? 1 : Math.abs(min) * 0.1;
    [min, max] = min === 0 ? [0, 1] : [min - d, max + d];
  }
  const raw = (max - min) / Math.max(1, target);
  const e = Math.floor(Math.log10(raw));
  const norm = raw / 10 ** e;
  const [m, exp] = norm <= 1 ? [1, e] : norm <= 2 ? [2, e] : norm <= 5 ? [5, e] : [1, e + 1];
  // Each tick is an integer k times m x 10^exp, computed so that 0.1 steps give 0.3, not 0.30000000000000004.
  const at = (k: number) => (exp >= 0 ? k * m * 10 ** exp : (k * m) / 10 ** -exp);
  const step = at(1);
  const eps = 1e-9; // min / step can land a hair off an integer; do not add a needless tick for that
  const ticks: number[] = [];
  for (let k = Math.floor(min / step + eps); k <= Math.ceil(max / step - eps); k++) ticks.push(at(k));
  return ticks;
}

/** Ticks for a log axis covering [min, max] (both > 0): powers of ten, with 2 and 5 x 10^k when the range spans few decades. */
export function logTicks(min: number, max: number): number[] {
  if (!(min > 0) || !(max >= min) || !Number.isFinite(max)) throw new RangeError(`logTicks: bad range [${min}, ${max}]`);
  let lo = Math.floor(Math.log10(min) + 1e-12);
  let hi = Math.ceil(Math.log10(max) - 1e-12);
  if (hi === lo) hi++;
  const every = Math.ceil((hi - lo) / 8); // at most ~8 labelled decades
  lo = Math.floor(lo / every) * every;
  hi = Math.ceil(hi / every) * every;
  const ticks: number[] = [];
  for (let k = lo; k <= hi; k += every) {
    ticks.push(Number(`1e${k}`)); // parsed, so exact: 10 ** -3 is not always 0.001
    if (hi - lo <= 2 && k < hi) ticks.push(Number(`2e${k}`), Number(`5e${k}`));
  }
  return ticks;
}

/** A tick label: fixed decimals matching the step, exponent form for very large or small values. */
export function formatTick(v: number, step: number): string {
  if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(step) < 1e-4)) return Number(v.toPrecision(6)).toExponential();
  const decimals = Math.max(0, -Math.floor(Math.log10(Math.abs(step)) + 1e-9));
  return v.toFixed(decimals);
}

/** A complete SVG document: title, axes with nice ticks and grid lines, one line per series, legend. */
export function lineChartSvg(options: LineChartOptions): string {
  const { title = '', xLabel = '', yLabel = '', series, logY = false, width = 640, height = 400 } = options;
  if (!(width >= MARGIN.left + MARGIN.right + 40 && height >= MARGIN.top + MARGIN.bottom + 40)) {
    throw new RangeError(`lineChartSvg: ${width}x${height} is too small for a chart`);
  }
  const usable = (x: number, y: number) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);

  // Data range over usable points only.
  let [xMin, xMax, yMin, yMax] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const s of series) {
    for (const [x, y] of s.points) {
      if (!usable(x, y)) continue;
      [xMin, xMax, yMin, yMax] = [Math.min(xMin, x), Math.max(xMax, x), Math.min(yMin, y), Math.max(yMax, y)];
    }
  }
  const empty = xMin > xMax;
  if (empty) [xMin, xMax, yMin, yMax] = [0, 1, logY ? 1 : 0, logY ? 10 : 1];
  const xTicks = niceTicks(xMin, xMax);
  const yTicks = logY ? logTicks(yMin, yMax) : niceTicks(yMin, yMax);

  const [left, right, top, bottom] = [MARGIN.left, width - MARGIN.right, MARGIN.top, height - MARGIN.bottom];
  const t = logY ? Math.log10 : (v: number) => v;
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [ty0, ty1] = [t(yTicks[0]), t(yTicks[yTicks.length - 1])];
  const px = (x: number) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const py = (y: number) => bottom - ((t(y) - ty0) / (ty1 - ty0)) * (bottom - top);

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  if (title) out.push(`<text class="title" x="${num(width / 2)}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);

  // Grid lines and tick labels; a grid line and its label share the same coordinate.
  const xStep = xTicks.length > 1 ? xTicks[1] - xTicks[0] : 1;
  for (const v of xTicks) {
    const x = num(px(v));
    out.push(`<line class="grid-x" x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="#e6e6e6"/>`);
    out.push(`<text class="tick-x" x="${x}" y="${bottom + 16}" text-anchor="middle">${formatTick(v, xStep)}</text>`);
  }
  const yStep = yTicks.length > 1 ? yTicks[1] - yTicks[0] : 1;
  for (const v of yTicks) {
    const y = num(py(v));
    out.push(`<line class="grid-y" x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e6e6e6"/>`);
    out.push(`<text class="tick-y" x="${left - 6}" y="${num(py(v) + 4)}" text-anchor="end">${formatTick(v, logY ? v : yStep)}</text>`);
  }
  out.push(`<rect class="frame" x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#444"/>`);
  if (xLabel) out.push(`<text class="x-label" x="${num((left + right) / 2)}" y="${height - 10}" text-anchor="middle">${esc(xLabel)}</text>`);
  if (yLabel) {
    const [lx, ly] = [16, num((top + bottom) / 2)];
    out.push(`<text class="y-label" x="${lx}" y="${ly}" text-anchor="middle" transform="rotate(-90 ${lx} ${ly})">${esc(yLabel)}</text>`);
  }

  // Each series: one path whose unusable points start a new subpath (a gap); lone points get a dot
  // since a one-point subpath draws nothing.
  series.forEach((s, i) => {
    const color = esc(s.color ?? PALETTE[i % PALETTE.length]);
    const runs: Array<Array<[number, number]>> = [[]];
    for (const [x, y] of s.points) {
      if (usable(x, y)) runs[runs.length - 1].push([px(x), py(y)]);
      else if (runs[runs.length - 1].length > 0) runs.push([]);
    }
    const d = runs.filter((r) => r.length > 1).map((r) => r.map(([x, y], k) => `${k ? 'L' : 'M'}${num(x)} ${num(y)}`).join(' ')).join(' ');
    if (d) out.push(`<path class="series" data-series="${i}" d="${d}" fill="none" stroke="${color}" stroke-width="1.8" stroke-linejoin="round"/>`);
    for (const r of runs) {
      if (r.length === 1) out.push(`<circle class="point" data-series="${i}" cx="${num(r[0][0])}" cy="${num(r[0][1])}" r="2.5" fill="${color}"/>`);
    }
  });
  if (empty) out.push(`<text class="no-data" x="${num((left + right) / 2)}" y="${num((top + bottom) / 2)}" text-anchor="middle" fill="#888" font-size="14">no data</text>`);

  // Legend, top right inside the plot; text width estimated (~7 px a character at 12 px) since SVG cannot measure here.
  if (series.length > 0) {
    const boxW = 36 + 7 * Math.max(...series.map((s) => s.name.length));
    const boxH = 8 + 18 * series.length;
    const bx = right - boxW - 8;
    out.push(`<g class="legend"><rect x="${num(bx)}" y="${top + 8}" width="${boxW}" height="${boxH}" fill="white" fill-opacity="0.85" stroke="#ccc"/>`);
    series.forEach((s, i) => {
      const y = top + 8 + 4 + 18 * i + 9;
      const color = esc(s.color ?? PALETTE[i % PALETTE.length]);
      out.push(`<line x1="${num(bx + 6)}" y1="${y}" x2="${num(bx + 24)}" y2="${y}" stroke="${color}" stroke-width="2.5"/>`);
      out.push(`<text x="${num(bx + 30)}" y="${y + 4}">${esc(s.name)}</text>`);
    });
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** A coordinate with at most 2 decimals (sub-pixel precision is invisible and bloats the file). */
const num = (v: number) => String(Math.round(v * 100) / 100);

/** Escapes text and attribute values (series names and titles come from users). */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
