// Softmax cross-entropy (the baseline CNN's loss), per example and its gradient wrt the logits.
// Layouts: logits [B, K], labels [B] (class indices stored as f32, exact below 2^24),
// per_example [B], grad_out [1] (d loss / d batch mean), d_logits [B, K].
// Entry `forward` (one invocation per example): lse = m + log(sum_k exp(logit_k - m)) with m the
// row max; per_example = lse - logit[label]. A label that is not an integer in [0, K) gives NaN
// (visible in the loss, never silently a wrong number). Entry `backward` (one invocation per
// element): d_logits[b, k] = (g / B) (exp(logit - lse) - [k == label]), recomputing the row's lse
// (O(K) per element; nothing is kept between forward and backward, so no buffer can go stale).
// Reference: test/reference/losses.ts (softmaxCrossEntropy, softmaxCrossEntropyBackward).
// Test: test/losses.test.ts.

// nanBits = 0x7fc00000, passed at run time: a WGSL constant expression may not evaluate to NaN.
struct Params { B: u32, K: u32, nanBits: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> per_example: array<f32>;

@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_logits: array<f32>;

// log(sum_k exp(logits[row + k])), shifted by the row max so that nothing overflows.
fn logsumexp(row: u32) -> f32 {
  var m = logits[row];
  for (var k = 1u; k < params.K; k++) { m = max(m, logits[row + k]); }
  var z = 0.0;
  for (var k = 0u; k < params.K; k++) { z += exp(logits[row + k] - m); }
  return m + log(z);
}

fn valid_label(label: f32) -> bool {
  return label >= 0.0 && label < f32(params.K) && floor(label) == label;
}

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (b >= params.B) { return; }
  let row = b * params.K;
  let s = logsumexp(row);
  let label = labels[b];
  let nan = bitcast<f32>(params.nanBits);
  per_example[b] = select(nan, s - logits[row + min(u32(max(label, 0.0)), params.K - 1u)], valid_label(label));
}

@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= params.B * params.K) { return; }
  let b = i / params.K;
  let k = i % params.K;
  let label = labels[b];
  let nan = bitcast<f32>(params.nanBits);
  let onehot = select(0.0, 1.0, f32(k) == label);
  let p = exp(logits[i] - logsumexp(b * params.K));
  d_logits[i] = select(nan, (grad_out[0] / f32(params.B)) * (p - onehot), valid_label(label));
}
