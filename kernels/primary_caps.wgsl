// PrimaryCaps: the conv output regrouped into capsules, fused with squash (override SQUASH; with
// SQUASH = false it is the plain reshape). Forward entry point `forward`, backward `backward`.
//   conv [B, types*dim, G, G] (conv channel c = type*dim + d)  ->  u [B, I, dim], I = types*G*G,
//   capsule i = type*G*G + y*G + x:   u[b, i, d] = squash_d(conv[b, type*dim + :, y, x])
// One invocation owns one capsule (b, i): it reads its dim values (stride G*G apart in conv), and
// in the backward pass writes exactly those dim elements of dconv (a gather: every element of
// dconv belongs to one capsule). The backward recomputes s from conv (no saved intermediate):
//   ds = f dv + k s (see squash.wgsl), scattered back by the inverse permutation.
// Fusing saves a full pass over u (B*1152*8 floats) in each direction and one launch.
// Reference: test/reference/capsules.ts (primaryCapsReshape(+Backward) then squash(+Backward)).
// Test: test/capsules.test.ts.

struct Params { capsules: u32, I: u32, types: u32, dim: u32, GG: u32 }

// Bindings used by an entry point are a prefix: forward (1, 2), backward (1, 2, 3).
@group(0) @binding(1) var<storage, read> conv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // u (forward) or dconv (backward)
@group(0) @binding(3) var<storage, read> du: array<f32>;        // backward only: dL/du [B, I, dim]
@group(0) @binding(0) var<uniform> params: Params;

override WG: u32 = 64;
override SQUASH: bool = true;
const EPS = 1e-7;

// Same as squash.wgsl.
fn squash_scale(n2: f32) -> f32 {
  return (n2 / (1.0 + n2)) / sqrt(n2 + EPS);
}
fn squash_grad_coef(n2: f32, sdv: f32) -> f32 {
  let onep = 1.0 + n2;
  return 2.0 * ((sdv / sqrt(n2 + EPS)) / onep) * (1.0 / onep - 0.5 * n2 / (n2 + EPS));
}

// Index of conv[b, type*dim + 0, y, x] for capsule n = b*I + i; the next component is GG further.
fn conv_base(n: u32) -> u32 {
  let b = n / params.I;
  let i = n % params.I;
  let t = i / params.GG;
  let p = i % params.GG;
  return (b * params.types + t) * params.dim * params.GG + p;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = (wid.x + wid.y * nwg.x) * WG + lid;
  if (n >= params.capsules) { return; }
  let src = conv_base(n);
  let dst = n * params.dim;
  let GG = params.GG;
  var f = 1.0;
  if (SQUASH) {
    var n2 = 0.0;
    for (var d = 0u; d < params.dim; d++) { let x = conv[src + d * GG]; n2 += x * x; }
    f = squash_scale(n2);
  }
  for (var d = 0u; d < params.dim; d++) { out[dst + d] = f * conv[src + d * GG]; }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = (wid.x + wid.y * nwg.x) * WG + lid;
  if (n >= params.capsules) { return; }
  let src = conv_base(n);
  let g = n * params.dim;
  let GG = params.GG;
  if (!SQUASH) {
    for (var d = 0u; d < params.dim; d++) { out[src + d * GG] = du[g + d]; }
    return;
  }
  var n2 = 0.0;
  var sdv = 0.0;
  for (var d = 0u; d < params.dim; d++) {
    let x = conv[src + d * GG];
    n2 += x * x;
    sdv += x * du[g + d];
  }
  let f = squash_scale(n2);
  let k = squash_grad_coef(n2, sdv);
  for (var d = 0u; d < params.dim; d++) { out[src + d * GG] = f * du[g + d] + k * conv[src + d * GG]; }
}
