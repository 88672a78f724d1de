// Dense layer forward: y[b, o] = act(bias[o] + sum_k x[b, k] W[o, k]), with ACT 0 none, 1 ReLU,
// 2 sigmoid fused into the store.
// Layouts (row-major): x [B, In4*4] and W [Out, In4*4] read as vec4 along k (In padded with zeros
// to a multiple of 4 by the op when needed, entry point `pad_cols` below), bias [Out], y [B, Out].
// Register blocking: each invocation owns a TM x TN tile of y (TM batch rows, TN output columns)
// and keeps TM*TN scalar accumulators; per 4 steps of k it loads TM + TN vec4 and does 4*TM*TN
// FMAs. No workgroup memory: on llvmpipe (a CPU) tiling through it only adds loads and barriers,
// and on real GPUs adjacent invocations share the x rows through the cache. Rows and columns past
// the edge are clamped for the loads (computed once, outside the hot loop) and never stored.
// A workgroup covers (WG / LANES_N) x LANES_N tiles, so that its invocations stream few distinct
// rows of x and W (on llvmpipe, 16 invocations on 16 different W rows each were 2x slower).
// The grid of workgroups may be folded into x and y (GpuContext.dispatch).
// Reference: test/reference/dense.ts (denseForward). Test: test/dense.test.ts.

struct Params { B: u32, In4: u32, Out: u32, tilesM: u32, tilesN: u32, groupsN: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

/** Invocations per workgroup, arranged as (WG / LANES_N) row tiles x LANES_N column tiles. */
override WG: u32 = 16;
override LANES_N: u32 = 4;
/** Batch rows per invocation, 1 ..= MAX_T. */
override TM: u32 = 4;
/** Output columns per invocation, 1 ..= MAX_T. */
override TN: u32 = 8;
/** 0: none, 1: ReLU, 2: sigmoid. */
override ACT: u32 = 0;
/** 1: add bias, 0: no bias (binding 3 is then any buffer and is not read). */
override HAS_BIAS: u32 = 1;

const MAX_T = 8u;

fn activate(v: f32) -> f32 {
  if (ACT == 1u) { return max(v, 0.0); }
  if (ACT == 2u) {
    // Neither branch overflows (exp of a large positive argument would be infinite).
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
  }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * nwg.x;
  let tm = (g / params.groupsN) * (WG / LANES_N) + lid / LANES_N;
  let tn = (g % params.groupsN) * LANES_N + lid % LANES_N;
  if (tm >= params.tilesM || tn >= params.tilesN) { return; }
  let m0 = tm * TM;
  let n0 = tn * TN;
  let In4 = params.In4;

  var xrow: array<u32, MAX_T>;
  var wrow: array<u32, MAX_T>;
  for (var r = 0u; r < TM; r++) { xrow[r] = min(m0 + r, params.B - 1u) * In4; }
  for (var c = 0u; c < TN; c++) { wrow[c] = min(n0 + c, params.Out - 1u) * In4; }

  var acc: array<f32, 64>; // MAX_T * MAX_T, zero-initialised
  for (var k = 0u; k < In4; k++) {
    var xv: array<vec4f, MAX_T>;
    for (var r = 0u; r < TM; r++) { xv[r] = x[xrow[r] + k]; }
    for (var c = 0u; c < TN; c++) {
      let wv = w[wrow[c] + k];
      for (var r = 0u; r < TM; r++) { acc[r * MAX_T + c] += dot(xv[r], wv); }
    }
  }

  for (var c = 0u; c < TN; c++) {
    let o = n0 + c;
    if (o >= params.Out) { break; }
    var b = 0.0;
    if (HAS_BIAS == 1u) { b = bias[o]; }
    for (var r = 0u; r < TM; r++) {
      let m = m0 + r;
      if (m >= params.B) { break; }
      y[m * params.Out + o] = activate(acc[r * MAX_T + c] + b);
    }
  }
}

// Copies a [rows, cols] matrix into [rows, cols4 * 4] with zeros in the extra columns, so that the
// GEMMs can read rows as vec4. One invocation per output element.
struct PadParams { rows: u32, cols: u32, cols4: u32 }

@group(0) @binding(0) var<uniform> pad: PadParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn pad_cols(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  let width = pad.cols4 * 4u;
  if (i >= pad.rows * width) { return; }
  let r = i / width;
  let c = i % width;
  dst[i] = select(0.0, src[r * pad.cols + min(c, pad.cols - 1u)], c < pad.cols);
}
