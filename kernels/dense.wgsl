// Dense layer forward: y[b, o] = act(bias[o] + sum_k W[o, k] x[b, k]), with ACT 0 none, 1 ReLU,
// 2 sigmoid fused into the store. Computed as y^T = W x^T so that the weight is read in its own
// (PyTorch) layout and the register-blocked GEMM has the shape measured fastest on llvmpipe:
// a scalar operand broadcast against vec4 rows of the other (as in dense_grad_input.wgsl).
//
// Entry `transpose_input`: xt[k, b] = x[b, k] for b < B, 0 for B <= b < B4*4 (B padded to a
// multiple of 4). Layouts: x [B, In], xt [In, B4*4]. One invocation per element of xt; costs
// B*In, against B*In*Out for the GEMM.
//
// Entry `main`: layouts W [Out, In] (read as scalars: any In), xt [In, B4] as vec4, bias [Out],
// y [B, Out]. Each invocation owns TM output features o x TN4 vec4 batch columns of y^T
// (TM*TN4 vec4 accumulators) and per k loads TM scalars of W and TN4 vec4 of xt for TM*TN4 vec4
// FMAs. No workgroup memory: on llvmpipe (a CPU) tiling through it only adds loads and barriers
// (SOFTWARE_GPU.md); on real GPUs neighbouring invocations share xt rows through the cache.
// Edge rows and columns are clamped for the loads (computed once, outside the hot loop) and
// never stored. The grid may be folded into x and y (GpuContext.dispatch).
//
// (A first version computed dot products of vec4 rows of x and W directly, with no transpose: on
// llvmpipe it reached 3-5 GFLOP/s against 8-10 for this form on the decoder's sizes.)
// Reference: test/reference/dense.ts (denseForward). Test: test/dense.test.ts.

struct Params { B: u32, In: u32, Out: u32, B4: u32, tilesN: u32, tiles: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> xt: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override WG: u32 = 16;
/** Output features per invocation, 1 ..= MAX_TM. */
override TM: u32 = 8;
/** vec4 batch columns per invocation, 1 ..= MAX_TN4. */
override TN4: u32 = 4;
/** 0: none, 1: ReLU, 2: sigmoid. */
override ACT: u32 = 0;
/** 1: add bias, 0: no bias (binding 3 is then any buffer and is not read). */
override HAS_BIAS: u32 = 1;

const MAX_TM = 8u;
const MAX_TN4 = 4u;

// ReLU that keeps NaN, decided on the bits: on OpenGL llvmpipe float comparisons are unordered
// (`NaN < 0.0` is true), so select(v, 0.0, v < 0.0) turned NaN into 0 there; WGSL's max(NaN, 0)
// may return either operand. Zero for -0 ... -inf (sign bit set, not NaN), v otherwise.
fn relu_keep_nan(v: f32) -> f32 {
  let bits = bitcast<u32>(v);
  return select(v, 0.0, bits >= 0x80000000u && bits <= 0xff800000u);
}

fn activate(v: f32) -> f32 {
  if (ACT == 1u) { return relu_keep_nan(v); }
  if (ACT == 2u) {
    // Neither branch overflows (exp of a large positive argument would be infinite).
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
  }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= params.tiles) { return; }
  let m0 = (t / params.tilesN) * TM;
  let n40 = (t % params.tilesN) * TN4;
  let B4 = params.B4;

  var wrow: array<u32, MAX_TM>;
  var xcol: array<u32, MAX_TN4>;
  for (var r = 0u; r < TM; r++) { wrow[r] = min(m0 + r, params.Out - 1u) * params.In; }
  for (var j = 0u; j < TN4; j++) { xcol[j] = min(n40 + j, B4 - 1u); }

  var acc: array<vec4f, 32>; // MAX_TM * MAX_TN4, zero-initialised
  for (var k = 0u; k < params.In; k++) {
    var xv: array<vec4f, MAX_TN4>;
    let xk = k * B4;
    for (var j = 0u; j < TN4; j++) { xv[j] = xt[xk + xcol[j]]; }
    for (var r = 0u; r < TM; r++) {
      let a = w[wrow[r] + k];
      for (var j = 0u; j < TN4; j++) { acc[r * MAX_TN4 + j] += a * xv[j]; }
    }
  }

  for (var r = 0u; r < TM; r++) {
    let o = m0 + r;
    if (o >= params.Out) { break; }
    var b = 0.0;
    if (HAS_BIAS == 1u) { b = bias[o]; }
    for (var j = 0u; j < TN4; j++) {
      let v = acc[r * MAX_TN4 + j];
      for (var e = 0u; e < 4u; e++) {
        let n = (n40 + j) * 4u + e;
        if (n < params.B) { y[n * params.Out + o] = activate(v[e] + b); }
      }
    }
  }
}

struct TransposeParams { B: u32, In: u32, B4: u32 }

@group(0) @binding(0) var<uniform> tp: TransposeParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> xt_out: array<f32>;

@compute @workgroup_size(64)
fn transpose_input(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  let width = tp.B4 * 4u;
  if (i >= tp.In * width) { return; }
  let k = i / width;
  let b = i % width;
  xt_out[i] = select(0.0, x[min(b, tp.B - 1u) * tp.In + k], b < tp.B);
}

// Copies a [rows, cols] matrix into [rows, cols4 * 4] with zeros in the extra columns, so that the
// backward GEMMs can read rows of W and x as vec4 when In is not a multiple of 4. One invocation
// per output element.
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
