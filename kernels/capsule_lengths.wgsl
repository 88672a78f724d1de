// Capsule lengths and the prediction, entry points:
//   `lengths`      v [rows, D] -> len [rows],  len = sqrt(sum_d v^2 + LENGTH_EPS), LENGTH_EPS = 1e-9
//   `lengths_grad` v, dlen [rows] -> dv [rows, D],  dv = dlen * v / len
//   `longest`      len [B, J] -> index [B] of the longest capsule (the first on ties), stored as
//                  f32 (exact for J < 2^24) so that it can feed maskCapsules without a readback
// rows = B * J for the layer output v [B, J, D]. One invocation per row (lengths, lengths_grad:
// it owns the D elements of dv of its row) or per example (longest).
// Reference: test/reference/capsules.ts (capsuleLengths(+Backward), longestCapsule).
// Test: test/capsules.test.ts.

struct Params { rows: u32, D: u32 }

// Entry points use bindings 1-2 (lengths, longest) or 1-3 (lengths_grad).
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // v, or len for `longest`
@group(0) @binding(2) var<storage, read_write> out: array<f32>;  // len, dv or index
@group(0) @binding(3) var<storage, read> dlen: array<f32>;

override WG: u32 = 64;
const LENGTH_EPS = 1e-9;

fn row_index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn length_of(base: u32) -> f32 {
  var n2 = 0.0;
  for (var d = 0u; d < params.D; d++) { let y = x[base + d]; n2 += y * y; }
  return sqrt(n2 + LENGTH_EPS);
}

@compute @workgroup_size(WG)
fn lengths(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = row_index(wid, nwg, lid);
  if (r >= params.rows) { return; }
  out[r] = length_of(r * params.D);
}

@compute @workgroup_size(WG)
fn lengths_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = row_index(wid, nwg, lid);
  if (r >= params.rows) { return; }
  let base = r * params.D;
  let k = dlen[r] / length_of(base);
  for (var d = 0u; d < params.D; d++) { out[base + d] = k * x[base + d]; }
}

// Here params.rows = B and params.D = J.
@compute @workgroup_size(WG)
fn longest(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = row_index(wid, nwg, lid);
  if (b >= params.rows) { return; }
  let base = b * params.D;
  var best = 0u;
  var bestLen = x[base];
  for (var j = 1u; j < params.D; j++) {
    let l = x[base + j];
    if (l > bestLen) { best = j; bestLen = l; }
  }
  out[b] = f32(best);
}
