// Partial sums: out[r] = scale * sum of x[r*chunk .. min(n, (r+1)*chunk)), one workgroup per r.
// Each invocation adds a strided slice, then a tree reduction in workgroup memory. Summing a large
// array takes two or three passes (n -> n/chunk -> 1); the op in src/ops/elementwise.ts chains them.
// Reference: test/reference/elementwise.ts. Test: test/elementwise.test.ts.

struct Params { n: u32, chunk: u32, scale: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WG: u32 = 256;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  let begin = r * params.chunk;
  let end = min(params.n, begin + params.chunk);
  var acc = 0.0;
  for (var i = begin + lid; i < end; i += WG) {
    acc += x[i];
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  // Every invocation reaches the barriers above (uniform control flow); only one writes.
  if (lid == 0u && begin < params.n) {
    out[r] = params.scale * partial[0];
  }
}
