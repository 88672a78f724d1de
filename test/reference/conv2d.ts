// 2-D convolution (cross-correlation, as in PyTorch), f64 reference, forward and backward.
//
// Layouts (row-major, PyTorch's):
//   x    [B, Cin, H, W]
//   w    [Cout, Cin, KH, KW]
//   bias [Cout] (optional)
//   out  [B, Cout, OH, OW],  OH = floor((H + 2 py - KH) / sy) + 1,  OW = floor((W + 2 px - KW) / sx) + 1
// out[b,co,oy,ox] = bias[co] + sum_{ci,ky,kx} x[b, ci, oy*sy - py + ky, ox*sx - px + kx] * w[co,ci,ky,kx]
// (input positions outside the image are zeros), then max(0, .) when relu is set.

import { checkLength, checkShape, numel } from './util.ts';

export type Shape4 = readonly [number, number, number, number];

export interface Conv2dOptions {
  /** One number for both axes, or [sy, sx]. Default 1. */
  stride?: number | readonly [number, number];
  /**
   * Zero padding on both sides of each axis: a number, [py, px], 'valid' (= 0) or 'same'
   * ((K - 1) / 2 per axis; only for stride 1 and odd kernels). Default 0.
   */
  padding?: number | readonly [number, number] | 'valid' | 'same';
  /** Fused ReLU on the output. Default false. */
  relu?: boolean;
}

export interface Conv2dGeometry {
  B: number; Cin: number; H: number; W: number;
  Cout: number; KH: number; KW: number;
  sy: number; sx: number; py: number; px: number;
  OH: number; OW: number;
  relu: boolean;
}

/** Resolves and validates the shapes and options; throws with a clear message on any mismatch. */
export function conv2dGeometry(xShape: readonly number[], wShape: readonly number[], options: Conv2dOptions = {}): Conv2dGeometry {
  checkShape(xShape, 4, 'conv2d x [B, Cin, H, W]');
  checkShape(wShape, 4, 'conv2d w [Cout, Cin, KH, KW]');
  const [B, Cin, H, W] = xShape;
  const [Cout, wCin, KH, KW] = wShape;
  if (wCin !== Cin) throw new Error(`conv2d: w has ${wCin} input channels, x has ${Cin}`);
  const st = options.stride ?? 1;
  const [sy, sx] = typeof st === 'number' ? [st, st] : st;
  for (const s of [sy, sx]) if (!Number.isInteger(s) || s < 1) throw new Error(`conv2d: stride must be a positive integer, got ${s}`);
  const pad = options.padding ?? 0;
  let py: number;
  let px: number;
  if (pad === 'valid') {
    py = 0; px = 0;
  } else if (pad === 'same') {
    if (sy !== 1 || sx !== 1) throw new Error(`conv2d: padding 'same' is only defined here for stride 1, got [${sy}, ${sx}]`);
    if (KH % 2 === 0 || KW % 2 === 0) throw new Error(`conv2d: padding 'same' needs odd kernels, got ${KH}x${KW}`);
    py = (KH - 1) / 2; px = (KW - 1) / 2;
  } else if (typeof pad === 'number') {
    py = pad; px = pad;
  } else {
    [py, px] = pad;
  }
  for (const p of [py, px]) if (!Number.isInteger(p) || p < 0) throw new Error(`conv2d: padding must be a non-negative integer, got ${p}`);
  const OH = Math.floor((H + 2 * py - KH) / sy) + 1;
  const OW = Math.floor((W + 2 * px - KW) / sx) + 1;
  if (H + 2 * py < KH || W + 2 * px < KW) {
    throw new Error(`conv2d: kernel ${KH}x${KW} larger than the padded input ${H + 2 * py}x${W + 2 * px}`);
  }
  return { B, Cin, H, W, Cout, KH, KW, sy, sx, py, px, OH, OW, relu: options.relu ?? false };
}

/** Forward pass. Returns out [B, Cout, OH, OW] and its shape. */
export function conv2dForward(
  x: Float64Array, xShape: readonly number[],
  w: Float64Array, wShape: readonly number[],
  bias?: Float64Array | null,
  options: Conv2dOptions = {},
): { out: Float64Array; outShape: Shape4 } {
  const g = conv2dGeometry(xShape, wShape, options);
  const { B, Cin, H, W, Cout, KH, KW, sy, sx, py, px, OH, OW } = g;
  checkLength(x, numel(xShape), 'conv2d x');
  checkLength(w, numel(wShape), 'conv2d w');
  if (bias) checkLength(bias, Cout, 'conv2d bias');
  const out = new Float64Array(B * Cout * OH * OW);
  for (let b = 0; b < B; b++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          let acc = bias ? bias[co] : 0;
          for (let ci = 0; ci < Cin; ci++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * sy - py + ky;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * sx - px + kx;
                if (ix < 0 || ix >= W) continue;
                acc += x[((b * Cin + ci) * H + iy) * W + ix] * w[((co * Cin + ci) * KH + ky) * KW + kx];
              }
            }
          }
          out[((b * Cout + co) * OH + oy) * OW + ox] = g.relu ? Math.max(0, acc) : acc;
        }
      }
    }
  }
  return { out, outShape: [B, Cout, OH, OW] };
}

/**
 * Backward pass: given dOut [B, Cout, OH, OW] (the gradient of the loss with respect to the output,
 * after the ReLU when relu is set) returns dx [B, Cin, H, W], dw [Cout, Cin, KH, KW], db [Cout].
 * With relu, `out` (the forward output) is required: the gradient passes where out > 0.
 */
export function conv2dBackward(
  x: Float64Array, xShape: readonly number[],
  w: Float64Array, wShape: readonly number[],
  dOut: Float64Array,
  options: Conv2dOptions = {},
  out?: Float64Array,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const g = conv2dGeometry(xShape, wShape, options);
  const { B, Cin, H, W, Cout, KH, KW, sy, sx, py, px, OH, OW } = g;
  checkLength(x, numel(xShape), 'conv2d x');
  checkLength(w, numel(wShape), 'conv2d w');
  checkLength(dOut, B * Cout * OH * OW, 'conv2d dOut');
  // Gradient with respect to the pre-activation.
  const dPre = new Float64Array(dOut);
  if (g.relu) {
    if (!out) throw new Error('conv2dBackward: with relu the forward output `out` is required');
    checkLength(out, dOut.length, 'conv2d out');
    for (let k = 0; k < dPre.length; k++) if (!(out[k] > 0)) dPre[k] = 0;
  }
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(Cout);
  for (let b = 0; b < B; b++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          const go = dPre[((b * Cout + co) * OH + oy) * OW + ox];
          db[co] += go;
          for (let ci = 0; ci < Cin; ci++) {
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * sy - py + ky;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * sx - px + kx;
                if (ix < 0 || ix >= W) continue;
                const xi = ((b * Cin + ci) * H + iy) * W + ix;
                const wi = ((co * Cin + ci) * KH + ky) * KW + kx;
                dx[xi] += go * w[wi];
                dw[wi] += go * x[xi];
              }
            }
          }
        }
      }
    }
  }
  return { dx, dw, db };
}
