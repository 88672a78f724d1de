// Per-step training statistics, written on the GPU so that a training step needs no readback:
//   stats[slot * stride + 0] = loss, + 1 = margin loss, + 2 = examples whose highest score (longest
//   capsule, or largest logit) is their label (first index on ties, as longestCapsule); with
//   `per_example` = 1 instead the sum of `correct` ([batch] 0/1 values written earlier in the step:
//   MultiMNIST's two-of-two correctness, where one argmax per example cannot say it),
//   + 3 = the "bad step" flag: 1 when the loss is NaN or infinite or any of the step's `taps`
//   non-finite counts (stats[slot * stride + 4 + k], written by count_nonfinite.wgsl earlier in the
//   same step) is not 0, else 0. The Adam update of the same step reads this flag and writes
//   nothing when it is 1 (kernels/adam.wgsl): a bad step is dropped without a readback.
// One invocation: the batch is at most a few hundred examples of 10 scores, and a few dozen taps.
// Used by src/train/monitor.ts. Test: test/nonfinite.test.ts.

struct Params { batch: u32, classes: u32, offset: u32, taps: u32, per_example: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> loss: array<f32>;
@group(0) @binding(2) var<storage, read> margin: array<f32>;
@group(0) @binding(3) var<storage, read> lengths: array<f32>;
@group(0) @binding(4) var<storage, read> labels: array<f32>;
@group(0) @binding(5) var<storage, read> correct_of: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(1)
fn main() {
  var correct = 0u;
  for (var b = 0u; b < params.batch; b++) {
    if (params.per_example != 0u) {
      if (correct_of[b] != 0.0) { correct++; }
      continue;
    }
    var best = 0u;
    for (var j = 1u; j < params.classes; j++) {
      if (lengths[b * params.classes + j] > lengths[b * params.classes + best]) { best = j; }
    }
    if (i32(labels[b]) == i32(best)) { correct++; }
  }
  let l = loss[0];
  // Exponent bits, not l != l: a compiler assuming finite math may fold that away.
  var bad = (bitcast<u32>(l) & 0x7f800000u) == 0x7f800000u;
  for (var k = 0u; k < params.taps; k++) {
    if (stats[params.offset + 4u + k] != 0.0) { bad = true; }
  }
  stats[params.offset] = l;
  stats[params.offset + 1u] = margin[0];
  stats[params.offset + 2u] = f32(correct);
  stats[params.offset + 3u] = select(0.0, 1.0, bad);
}
