// Dense layer backward, parameter gradients (gathers: each invocation owns its outputs).
//
// Entry `bias_grad`: dpre[b, o] = dy[b, o] * act'(y[b, o]) (ACT 0 none: dy; 1 ReLU: dy where y > 0;
// 2 sigmoid: dy y (1 - y)), written with row stride S = Out4*4 and zeros in columns Out..S-1, and
// db[o] = sum_b dpre[b, o]. One invocation per column o < S. Layouts: dy, y [B, Out]; dpre [B, S];
// db [Out]. With ACT 0, binding 2 (y) is any buffer and is not read.
//
// Entry `main`: dW[o, i] = sum_b dpre[b, o] x[b, i], summed over the batch. dpre [B, S] is read
// as vec4 along o (S is a multiple of 4), x [B, In4*4] as vec4 along i (In padded with zeros when
// needed), dW [Out, In] (only o < Out, i < In stored). Each invocation owns TM4*4 rows o x TN4
// vec4 columns i of dW and per batch element loads TM4 + TN4 vec4 for 4*TM4*TN4 vec4 FMAs (an
// outer product: the cheapest loads of the three dense GEMMs). No workgroup memory.
//
// Reference: test/reference/dense.ts (denseBackward, dW and db). Test: test/dense.test.ts.

struct Params { B: u32, Out: u32, S4: u32, In: u32, In4: u32, tilesN: u32, tiles: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dpre: array<vec4f>;
@group(0) @binding(2) var<storage, read> x: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

override WG: u32 = 16;
/** vec4 groups of rows o per invocation, 1 ..= MAX_TM4. */
override TM4: u32 = 2;
/** vec4 columns i per invocation, 1 ..= MAX_TN4. */
override TN4: u32 = 4;
/** 0: none, 1: ReLU, 2: sigmoid (bias_grad only). */
override ACT: u32 = 0;

const MAX_TM4 = 2u;
const MAX_TN4 = 4u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= params.tiles) { return; }
  let m40 = (t / params.tilesN) * TM4;
  let n40 = (t % params.tilesN) * TN4;
  let S4 = params.S4;
  let In4 = params.In4;

  var arow: array<u32, MAX_TM4>;
  var xcol: array<u32, MAX_TN4>;
  for (var q = 0u; q < TM4; q++) { arow[q] = min(m40 + q, S4 - 1u); }
  for (var j = 0u; j < TN4; j++) { xcol[j] = min(n40 + j, In4 - 1u); }

  var acc: array<vec4f, 32>; // (MAX_TM4 * 4) * MAX_TN4, zero-initialised
  for (var b = 0u; b < params.B; b++) {
    var xv: array<vec4f, MAX_TN4>;
    for (var j = 0u; j < TN4; j++) { xv[j] = x[b * In4 + xcol[j]]; }
    for (var q = 0u; q < TM4; q++) {
      let a = dpre[b * S4 + arow[q]];
      for (var e = 0u; e < 4u; e++) {
        for (var j = 0u; j < TN4; j++) { acc[(q * 4u + e) * MAX_TN4 + j] += a[e] * xv[j]; }
      }
    }
  }

  for (var r = 0u; r < TM4 * 4u; r++) {
    let o = m40 * 4u + r;
    if (o >= params.Out) { break; }
    for (var j = 0u; j < TN4; j++) {
      let v = acc[r * MAX_TN4 + j];
      for (var e = 0u; e < 4u; e++) {
        let i = (n40 + j) * 4u + e;
        if (i < params.In) { dw[o * params.In + i] = v[e]; }
      }
    }
  }
}

struct BiasParams { B: u32, Out: u32, S: u32 }

@group(0) @binding(0) var<uniform> bp: BiasParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dpre_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64)
fn bias_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let o = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (o >= bp.S) { return; }
  let inside = o < bp.Out;
  let oc = min(o, bp.Out - 1u);
  var sum = 0.0;
  for (var b = 0u; b < bp.B; b++) {
    var g = dy[b * bp.Out + oc];
    // dy * [y > 0] as a product (as the reference): a NaN dy stays NaN even where the unit is off.
    if (ACT == 1u) { g = g * select(0.0, 1.0, y[b * bp.Out + oc] > 0.0); }
    if (ACT == 2u) { let v = y[b * bp.Out + oc]; g = g * v * (1.0 - v); }
    g = select(0.0, g, inside);
    dpre_out[b * bp.S + o] = g;
    sum += g;
  }
  if (inside) { db[o] = sum; }
}
