// 2-D max pooling with a k x k window and stride k, TensorFlow's 'SAME' padding, f64 reference,
// forward and backward (the official baseline CNN's pooling: tensorflow/models research/capsules
// models/conv_model.py, max_pool2d(kernel_size=2, stride=2, padding='SAME')).
//
// Layouts (row-major): x [B, C, H, W] -> out [B, C, OH, OW], OH = ceil(H / k), OW = ceil(W / k).
// 'SAME' pads OH*k - H rows in all, floor of half of them on top (none for k = 2); padded positions
// never win (TensorFlow pads with -infinity). Window (oy, ox) covers rows oy*k - top .. + k - 1 and
// columns ox*k - left .. + k - 1 that lie inside the image.
// The winner of a window is its first NaN if it holds one (as the kernel: a NaN must reach the
// training monitor), else its first largest value in row-major order (ties: the earliest); the
// backward pass sends dout to that one position only (the windows do not overlap: stride = size).

import { checkDim, checkLength, checkShape, numel } from './util.ts';

export interface PoolGeometry {
  B: number; C: number; H: number; W: number;
  k: number; OH: number; OW: number; top: number; left: number;
}

export function maxPoolGeometry(xShape: readonly number[], k: number): PoolGeometry {
  checkShape(xShape, 4, 'maxPool2d x [B, C, H, W]');
  checkDim(k, 'maxPool2d size');
  const [B, C, H, W] = xShape;
  const OH = Math.ceil(H / k);
  const OW = Math.ceil(W / k);
  return { B, C, H, W, k, OH, OW, top: Math.floor((OH * k - H) / 2), left: Math.floor((OW * k - W) / 2) };
}

/** Index into x (flat) of the winner of window (plane, oy, ox). */
function winner(x: ArrayLike<number>, g: PoolGeometry, plane: number, oy: number, ox: number): number {
  let best = -1;
  for (let dy = 0; dy < g.k; dy++) {
    const y = oy * g.k - g.top + dy;
    if (y < 0 || y >= g.H) continue;
    for (let dx = 0; dx < g.k; dx++) {
      const xx = ox * g.k - g.left + dx;
      if (xx < 0 || xx >= g.W) continue;
      const i = (plane * g.H + y) * g.W + xx;
      if (best >= 0 && Number.isNaN(x[best])) continue;
      if (best < 0 || Number.isNaN(x[i]) || x[i] > x[best]) best = i;
    }
  }
  return best;
}

export function maxPool2dForward(x: ArrayLike<number>, xShape: readonly number[], k: number): { out: Float64Array; outShape: number[] } {
  const g = maxPoolGeometry(xShape, k);
  checkLength(x, numel(xShape), 'maxPool2d x');
  const out = new Float64Array(g.B * g.C * g.OH * g.OW);
  for (let plane = 0; plane < g.B * g.C; plane++) {
    for (let oy = 0; oy < g.OH; oy++) {
      for (let ox = 0; ox < g.OW; ox++) out[(plane * g.OH + oy) * g.OW + ox] = x[winner(x, g, plane, oy, ox)];
    }
  }
  return { out, outShape: [g.B, g.C, g.OH, g.OW] };
}

/** dx [B, C, H, W] from dout [B, C, OH, OW]: each window's gradient goes to its winner in x. */
export function maxPool2dBackward(x: ArrayLike<number>, xShape: readonly number[], k: number, dout: ArrayLike<number>): Float64Array {
  const g = maxPoolGeometry(xShape, k);
  checkLength(x, numel(xShape), 'maxPool2d x');
  checkLength(dout, g.B * g.C * g.OH * g.OW, 'maxPool2d dout');
  const dx = new Float64Array(x.length);
  for (let plane = 0; plane < g.B * g.C; plane++) {
    for (let oy = 0; oy < g.OH; oy++) {
      for (let ox = 0; ox < g.OW; ox++) dx[winner(x, g, plane, oy, ox)] += dout[(plane * g.OH + oy) * g.OW + ox];
    }
  }
  return dx;
}
