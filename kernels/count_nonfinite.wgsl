// stats[offset] = the number of NaN or infinite values in x[0 .. n) (+= with `accumulate`: a tensor
// larger than one storage binding is counted slice by slice): how training finds the first layer
// that went bad without reading the tensors back. Tested by the exponent bits, not x != x, which a
// compiler assuming finite math may fold away.
// One workgroup (strided loop + tree reduction): a few milliseconds for the largest activation.
// Used by src/train/monitor.ts. Test: test/nonfinite.test.ts.

struct Params { n: u32, offset: u32, accumulate: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

override WG: u32 = 256;

var<workgroup> partial: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var count = 0u;
  for (var i = lid; i < params.n; i += WG) {
    if ((bitcast<u32>(x[i]) & 0x7f800000u) == 0x7f800000u) { count++; }
  }
  partial[lid] = count;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let before = select(0.0, stats[params.offset], params.accumulate == 1u);
    stats[params.offset] = before + f32(partial[0]);
  }
}
