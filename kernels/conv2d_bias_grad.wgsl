// 2-D convolution, gradient with respect to the bias (used by every variant): one workgroup per
// output channel co sums dOut over the batch and the output positions (each invocation a strided
// slice, then a tree in workgroup memory). With relu, dOut is masked where the forward output <= 0.
//   dOut [B, Cout, OH, OW]   out [B, Cout, OH, OW] (read only with relu)   db [Cout]
//   db[co] = sum over b, oy, ox of dOut[b,co,oy,ox] (* (out > 0) with relu)
// Reference: test/reference/conv2d.ts (conv2dBackward). Test: test/conv2d.test.ts.

struct Params { B: u32, Cout: u32, P: u32, relu: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;

override WG: u32 = 64;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let co = wid.x + wid.y * nwg.x;
  // Every invocation reaches the barriers below; only valid channels read and write.
  let valid = co < p.Cout;
  var acc = 0.0;
  if (valid) {
    let n = p.B * p.P;
    for (var j = lid; j < n; j += WG) {
      let b = j / p.P;
      let o = (b * p.Cout + co) * p.P + (j - b * p.P);
      var g = dout[o];
      if (p.relu != 0u && !(out[o] > 0.0)) { g = 0.0; }
      acc += g;
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u && valid) {
    db[co] = partial[0];
  }
}
