// Dense layer backward, gradient of the input: dx[b, i] = sum_o dpre[b, o] W[o, i], where dpre is
// the gradient before the activation (made by `bias_grad` in dense_grad_weight.wgsl).
// Layouts (row-major): dpre [B, S] (S = row stride >= Out; the columns past Out are zeros),
// W [Out, In4*4] read as vec4 along i (In padded with zeros to a multiple of 4 when needed),
// dx [B, In] (only i < In is written).
// A gather GEMM with a register block: each invocation owns TM batch rows x TN4 vec4 columns of dx
// (TM*TN4 vec4 accumulators) and, per o, loads TM scalars of dpre and TN4 vec4 of W for TM*TN4
// vec4 FMAs: the shape measured fastest on llvmpipe (SOFTWARE_GPU.md), no workgroup memory.
// Edge rows/columns are clamped for loads (outside the hot loop) and not stored.
// Reference: test/reference/dense.ts (denseBackward, dx). Test: test/dense.test.ts.

struct Params { B: u32, Out: u32, S: u32, In: u32, In4: u32, tilesN: u32, tiles: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dpre: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

override WG: u32 = 16;
/** Batch rows per invocation, 1 ..= MAX_TM. */
override TM: u32 = 8;
/** vec4 columns per invocation, 1 ..= MAX_TN4. */
override TN4: u32 = 4;

const MAX_TM = 8u;
const MAX_TN4 = 4u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= params.tiles) { return; }
  let m0 = (t / params.tilesN) * TM;
  let n40 = (t % params.tilesN) * TN4;
  let In4 = params.In4;

  var arow: array<u32, MAX_TM>;
  var wcol: array<u32, MAX_TN4>;
  for (var r = 0u; r < TM; r++) { arow[r] = min(m0 + r, params.B - 1u) * params.S; }
  for (var j = 0u; j < TN4; j++) { wcol[j] = min(n40 + j, In4 - 1u); }

  var acc: array<vec4f, 32>; // MAX_TM * MAX_TN4, zero-initialised
  for (var k = 0u; k < params.Out; k++) {
    var wv: array<vec4f, MAX_TN4>;
    let wk = k * In4;
    for (var j = 0u; j < TN4; j++) { wv[j] = w[wk + wcol[j]]; }
    for (var r = 0u; r < TM; r++) {
      let a = dpre[arow[r] + k];
      for (var j = 0u; j < TN4; j++) { acc[r * MAX_TN4 + j] += a * wv[j]; }
    }
  }

  for (var r = 0u; r < TM; r++) {
    let m = m0 + r;
    if (m >= params.B) { break; }
    for (var j = 0u; j < TN4; j++) {
      let v = acc[r * MAX_TN4 + j];
      for (var e = 0u; e < 4u; e++) {
        let i = (n40 + j) * 4u + e;
        if (i < params.In) { dx[m * params.In + i] = v[e]; }
      }
    }
  }
}
