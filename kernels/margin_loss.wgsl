// Margin loss (Sabour et al. 2017), per example and its gradient with respect to the lengths.
// Layouts: lengths [B, J] (capsule lengths |v_k|), targets [B, J] multi-hot f32 (one-hot for MNIST,
// two-hot for MultiMNIST), per_example [B], grad_out [1] (d loss / d batch mean), d_lengths [B, J].
// Entry `forward` (one invocation per example):
//   per_example[b] = sum_k T_k max(0, m+ - L_k)^2 + lambda (1 - T_k) max(0, L_k - m-)^2
// (the op takes the batch mean with the sum op). Entry `backward` (one invocation per element):
//   d_lengths[b, k] = (g / B) (-2 T_k max(0, m+ - L_k) + 2 lambda (1 - T_k) max(0, L_k - m-)).
// NaN lengths give NaN (max(0, NaN) is written as a select that keeps it).
// Entry `correct` (one invocation per example, no gradient): per_example[b] = 1 when the K longest
// capsules are exactly the K target classes (K = the number of T_k > 0.5; MultiMNIST's "both of the
// two longest capsules are the two labels"), else 0. Capsules rank by length, the lower index first
// on ties (tf.nn.top_k's order, and longestCapsule's for K = 1). A row without targets, or holding
// a NaN length, counts as wrong.
// Reference: test/reference/losses.ts (marginLoss, marginLossBackward), test/reference/multimnist.ts
// (topKCorrect). Tests: test/losses.test.ts, test/multimnist.test.ts.

struct Params { B: u32, J: u32, mPlus: f32, mMinus: f32, lambda: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lengths: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> per_example: array<f32>;

@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_lengths: array<f32>;

// NaN test on the bits: comparisons with NaN may be folded away by a shader compiler.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// max(0, v) that propagates NaN. WGSL's max may return either operand for NaN, and on OpenGL
// llvmpipe `NaN < 0.0` is true, so select(v, 0.0, v < 0.0) alone turned NaN into 0 there.
fn relu_nan(v: f32) -> f32 {
  return select(select(v, 0.0, v < 0.0), v, is_nan(v));
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (b >= params.B) { return; }
  var acc = 0.0;
  for (var k = 0u; k < params.J; k++) {
    let L = lengths[b * params.J + k];
    let T = targets[b * params.J + k];
    let present = relu_nan(params.mPlus - L);
    let absent = relu_nan(L - params.mMinus);
    acc += T * present * present + params.lambda * (1.0 - T) * absent * absent;
  }
  per_example[b] = acc;
}

@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= params.B * params.J) { return; }
  let L = lengths[i];
  let T = targets[i];
  let present = relu_nan(params.mPlus - L);
  let absent = relu_nan(L - params.mMinus);
  d_lengths[i] = (grad_out[0] / f32(params.B)) * (-2.0 * T * present + 2.0 * params.lambda * (1.0 - T) * absent);
}

@compute @workgroup_size(64)
fn correct(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (b >= params.B) { return; }
  let row = b * params.J;
  var ok = true;
  var K = 0u;
  for (var j = 0u; j < params.J; j++) {
    if (is_nan(lengths[row + j])) { ok = false; }
  }
  for (var a = 0u; a < params.J; a++) {
    if (!(targets[row + a] > 0.5)) { continue; }
    K++;
    let La = lengths[row + a];
    for (var k = 0u; k < params.J; k++) {
      if (targets[row + k] > 0.5) { continue; }
      let Lk = lengths[row + k];
      if (!(La > Lk || (La == Lk && a < k))) { ok = false; }
    }
  }
  per_example[b] = select(0.0, 1.0, ok && K > 0u);
}
