// squash over the last axis, forward (entry point `squash`) and backward (`squash_grad`).
//   s, v, dv, ds: [rows, dim] row-major; one invocation owns one row (a capsule).
//   v  = f(n2) s,  n2 = |s|^2,  f(n2) = n2 / ((1 + n2) sqrt(n2 + EPS)),  EPS = 1e-7
//   ds = f dv + 2 f'(n2) (s . dv) s,  f'(n2) = 1 / ((1 + n2) sqrt(n2 + EPS)) * (1 / (1 + n2) - n2 / (2 (n2 + EPS)))
// f32 range: both are written so that no intermediate overflows or underflows while n2 is finite
// (|s| < ~1.8e19): f = (n2 / (1 + n2)) * (1 / sqrt(n2 + EPS)), and the second term of ds is
// evaluated as ((s . dv) / sqrt(n2 + EPS) / (1 + n2)) * (...) * s, never forming |s|^-3 alone.
// At s = 0: v = 0 and ds = 0 (f(0) = 0, s . dv = 0).
// The same two functions are repeated in primary_caps.wgsl, routing.wgsl and routing_grad.wgsl
// (WGSL has no includes); keep them identical.
// Reference: test/reference/capsules.ts (squash, squashBackward). Test: test/capsules.test.ts.

struct Params { rows: u32, dim: u32 }

@group(0) @binding(0) var<uniform> params: Params;
// Bindings used by an entry point are a prefix (1, 2[, 3]): ctx.dispatch binds buffers in order.
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // v (squash) or ds (squash_grad)
@group(0) @binding(3) var<storage, read> dv: array<f32>;       // squash_grad only

override WG: u32 = 64;
const EPS = 1e-7;

fn squash_scale(n2: f32) -> f32 {
  return (n2 / (1.0 + n2)) / sqrt(n2 + EPS);
}

// The coefficient k of s in ds = f dv + k s, given n2 = |s|^2 and sdv = s . dv.
fn squash_grad_coef(n2: f32, sdv: f32) -> f32 {
  let onep = 1.0 + n2;
  return 2.0 * ((sdv / sqrt(n2 + EPS)) / onep) * (1.0 / onep - 0.5 * n2 / (n2 + EPS));
}

fn row_index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn squash(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = row_index(wid, nwg, lid);
  if (r >= params.rows) { return; }
  let base = r * params.dim;
  var n2 = 0.0;
  for (var d = 0u; d < params.dim; d++) { let x = s[base + d]; n2 += x * x; }
  let f = squash_scale(n2);
  for (var d = 0u; d < params.dim; d++) { out[base + d] = f * s[base + d]; }
}

@compute @workgroup_size(WG)
fn squash_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = row_index(wid, nwg, lid);
  if (r >= params.rows) { return; }
  let base = r * params.dim;
  var n2 = 0.0;
  var sdv = 0.0;
  for (var d = 0u; d < params.dim; d++) {
    let x = s[base + d];
    n2 += x * x;
    sdv += x * dv[base + d];
  }
  let f = squash_scale(n2);
  let k = squash_grad_coef(n2, sdv);
  for (var d = 0u; d < params.dim; d++) { out[base + d] = f * dv[base + d] + k * s[base + d]; }
}
