// The routing view: for each routing iteration (rows) and digit capsule (columns), the coupling
// coefficients of the primary capsules over the PrimaryCaps grid as a small heat map, with the
// digit's share of all the votes under it. The coefficients come from src/web/routing.ts.

import { el } from './dom.ts';
import type { RoutingMaps } from './routing.ts';

/**
 * A diverging colour map for c - 1/J: blue where a capsule sends this digit less than the uniform
 * share, light grey at the uniform share, red where it sends more (t in [-1, 1]).
 */
const NEG: [number, number, number] = [33, 102, 172];
const MID: [number, number, number] = [244, 244, 246];
const POS: [number, number, number] = [178, 24, 43];

export function colour(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(-1, Number.isFinite(t) ? t : 0));
  const [a, b] = x < 0 ? [MID, NEG] : [MID, POS];
  const f = Math.sqrt(Math.abs(x)); // perceptually: small deviations stay visible
  return [0, 1, 2].map((i) => Math.round(a[i] + f * (b[i] - a[i]))) as [number, number, number];
}

function paint(canvas: HTMLCanvasElement, map: Float64Array, grid: number, scaled: (c: number) => number): void {
  canvas.width = grid;
  canvas.height = grid;
  const g = canvas.getContext('2d')!;
  const image = g.createImageData(grid, grid);
  for (let k = 0; k < grid * grid; k++) {
    const [r, gg, b] = colour(scaled(map[k]));
    image.data.set([r, gg, b, 255], 4 * k);
  }
  g.putImageData(image, 0, 0);
}

export interface RoutingViewData {
  maps: RoutingMaps;
  winner: number;
  /** Number of primary capsule types per grid cell (for the labels). */
  types: number;
}

/** Renders the maps into `root` (replacing its content) and the colour scale into `legend`. */
export function renderRouting(root: HTMLElement, legend: HTMLElement, data: RoutingViewData): void {
  const { maps, winner } = data;
  const J = maps.coupling[0]?.length ?? 0;
  // Colours show c - 1/J (the uniform start), scaled by the largest deviation in the view: routing
  // in a barely trained model moves c by little, a trained one by a lot; the legend gives the range.
  const uniform = 1 / Math.max(J, 1);
  let [above, below] = [1e-4, 1e-4];
  for (const row of maps.coupling) {
    for (const m of row) {
      for (const v of m) {
        above = Math.max(above, v - uniform);
        below = Math.max(below, uniform - v);
      }
    }
  }
  // Red reaches full strength at the largest c in the view, blue at the smallest.
  const scaled = (c: number) => (c >= uniform ? (c - uniform) / above : (c - uniform) / below);
  const r = maps.coupling.length;
  root.replaceChildren();
  // Each cell knows its place in both layouts: iterations as rows (wide screens) or as columns
  // (phones, where ten columns do not fit); styles.css picks one.
  const at = (node: HTMLElement, row: number, col: number): HTMLElement => {
    node.style.setProperty('--row', String(row + 1));
    node.style.setProperty('--col', String(col + 1));
    node.style.setProperty('--prow', String(col + 1));
    node.style.setProperty('--pcol', String(row + 1));
    return node;
  };
  root.style.setProperty('--digits', String(J));
  root.style.setProperty('--iterations', String(r));
  root.append(at(el('span', { className: 'rlabel corner', text: 'digit' }), 0, 0));
  for (let j = 0; j < J; j++) root.append(at(el('span', { className: `chead${j === winner ? ' win' : ''}`, text: String(j) }), 0, j + 1));
  maps.coupling.forEach((row, t) => {
    root.append(at(el('span', { className: 'rlabel', text: `iteration ${t + 1}` }), t + 1, 0));
    row.forEach((map, j) => {
      const canvas = el('canvas', {
        'data-iteration': t + 1,
        'data-digit': j,
        role: 'img',
        'aria-label': `iteration ${t + 1}, digit ${j}: ${(maps.share[t][j] * 100).toFixed(1)}% of the votes`,
      });
      paint(canvas, map, maps.grid, scaled);
      root.append(at(el('figure', { className: j === winner ? 'win' : '' }, canvas, el('figcaption', { text: `${(maps.share[t][j] * 100).toFixed(1)}%` })), t + 1, j + 1));
    });
  });
  const bar = el('canvas', { width: 160, height: 1 });
  const g = bar.getContext('2d')!;
  const image = g.createImageData(160, 1);
  for (let x = 0; x < 160; x++) image.data.set([...colour((x / 159) * 2 - 1), 255], 4 * x);
  g.putImageData(image, 0, 0);
  const fmt = (v: number) => v.toPrecision(3);
  legend.replaceChildren(
    el('span', { className: 'scale' }, el('span', { text: `c = ${fmt(uniform - below)}` }), bar, el('span', { text: fmt(uniform + above) })),
    el('span', { text: `grey: the uniform ${fmt(uniform)}; red: more to that digit; blue: less` }),
  );
}
