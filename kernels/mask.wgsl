// The decoder mask, forward and backward (the same map, so one entry point serves both):
//   out[b, j*D + d] = x[b, j, d] if j == selected[b], else 0
// forward: x = v [B, J, D] -> decoder input [B, J*D]; backward: x = dL/d(decoder input) [B, J*D]
// -> dL/dv [B, J, D] (nonzero only on the selected capsule). Both arrays have the same flat layout
// (index (b*J + j)*D + d), so the kernel is the same. selected [B] holds class indices as f32
// (labels, or the output of capsule_lengths.wgsl `longest`); an index outside 0 .. J-1, such as the
// label -1 of a padding example, selects nothing and gives a zero row.
// One invocation per output element (a gather), the grid folded when above 65,535 workgroups.
// Reference: test/reference/capsules.ts (maskCapsules(+Backward)). Test: test/capsules.test.ts.

struct Params { n: u32, J: u32, D: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> selected: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let k = (wid.x + wid.y * nwg.x) * WG + lid;
  if (k >= params.n) { return; }
  let row = k / params.D;          // b*J + j
  let b = row / params.J;
  let j = row % params.J;
  let sel = selected[b];
  out[k] = select(0.0, x[k], sel == f32(j));
}
