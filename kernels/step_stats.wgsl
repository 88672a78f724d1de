// Per-step training statistics, written on the GPU so that a training step needs no readback:
//   stats[slot * stride + 0] = loss, + 1 = margin loss, + 2 = examples whose longest capsule is
//   their label (first index on ties, as longestCapsule).
// One invocation: the batch is at most a few hundred examples of 10 lengths.
// Used by src/train/monitor.ts. Test: test/trainer.test.ts.

struct Params { batch: u32, classes: u32, offset: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> loss: array<f32>;
@group(0) @binding(2) var<storage, read> margin: array<f32>;
@group(0) @binding(3) var<storage, read> lengths: array<f32>;
@group(0) @binding(4) var<storage, read> labels: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(1)
fn main() {
  var correct = 0u;
  for (var b = 0u; b < params.batch; b++) {
    var best = 0u;
    for (var j = 1u; j < params.classes; j++) {
      if (lengths[b * params.classes + j] > lengths[b * params.classes + best]) { best = j; }
    }
    if (i32(labels[b]) == i32(best)) { correct++; }
  }
  stats[params.offset] = loss[0];
  stats[params.offset + 1u] = margin[0];
  stats[params.offset + 2u] = f32(correct);
}
