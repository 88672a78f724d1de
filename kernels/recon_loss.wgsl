// Reconstruction loss, per example and its gradient with respect to the reconstruction.
// Layouts: recon, target [B, P] (P pixels, pixel / 255), per_example [B], grad_out [1]
// (d loss / d batch mean), d_recon [B, P].
// Entry `forward`: one workgroup of 64 per example, strided partial sums then a tree in workgroup
// memory: per_example[b] = weight * sum_p (recon[b, p] - target[b, p])^2 (the op takes the mean).
// Entry `backward` (one invocation per element): d_recon = g * weight * 2 (recon - target) / B.
// Reference: test/reference/losses.ts (reconstructionLoss, reconstructionLossBackward).
// Test: test/losses.test.ts.

struct Params { B: u32, P: u32, weight: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> recon: array<f32>;
@group(0) @binding(2) var<storage, read> target_: array<f32>;
@group(0) @binding(3) var<storage, read_write> per_example: array<f32>;

@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_recon: array<f32>;

const WG = 64u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  // Workgroup-uniform: every invocation reaches the barriers.
  let b = wid.x + wid.y * nwg.x;
  let row = min(b, params.B - 1u) * params.P;
  var acc = 0.0;
  for (var p = lid; p < params.P; p += WG) {
    let e = recon[row + p] - target_[row + p];
    acc += e * e;
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  if (lid == 0u && b < params.B) { per_example[b] = params.weight * partial[0]; }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.B * params.P) { return; }
  d_recon[i] = grad_out[0] * params.weight * 2.0 * (recon[i] - target_[i]) / f32(params.B);
}
