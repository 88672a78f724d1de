// Prediction vectors: uhat[b, i, j, :] = W[i, j] (DOUT x DIN) times u[b, i, :], batched.
//   W [I, J, DOUT, DIN] (the checkpoint's digit.W [1152, 10, 16, 8]), u [B, I, DIN],
//   uhat [nb, I, J, DOUT] (a batch slice, below), all row-major, all bound as array<vec4f>.
// Entry point `main` (DOUT % 4 == 0 and DIN % 4 == 0; DOUT4 = DOUT/4, DIN4 = DIN/4): one invocation
// owns one (i, j) pair and a chunk of BC examples. It loads W[i, j] once (DOUT*DIN4 vec4, kept in
// registers) and reuses it for every example of its chunk, so W is read ceil(B / BC) times in all;
// per example it loads DIN4 vec4 of u and stores DOUT4 vec4 of uhat. Consecutive invocations take
// consecutive pairs (W and uhat contiguous across a workgroup). On llvmpipe the W loads dominate at
// small BC: BC = 32 was ~2x faster than BC = 8 (measured); 11,520 pairs keep enough invocations.
// Entry point `generic` (any DOUT, DIN, e.g. the tests' 5x7): one invocation per vec4 of uhat, each
// of its 4 elements a plain dot product (W and u read component by component). Slow; odd shapes only.
// Batch split: uhat of a whole batch can exceed maxStorageBufferBindingSize (94 MB at batch 128),
// so the op may bind a slice of uhat holding examples b0 .. b0+nb-1 and run one dispatch per slice;
// `b0` offsets the reads of u (bound whole), uhat indices are relative to the slice. The bound size
// of uhat is rounded up to 16 bytes (elements past the end are written as 0, inside the pooled buffer).
// Reference: test/reference/capsules.ts (capsPredict). Test: test/capsules.test.ts.

struct Params { nb: u32, b0: u32, I: u32, J: u32, DOUT: u32, DIN: u32, total: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> W: array<vec4f>;
@group(0) @binding(2) var<storage, read> u: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> uhat: array<vec4f>;

override WG: u32 = 16;
override DOUT4: u32 = 4;
override DIN4: u32 = 2;
/** Examples per invocation (main). */
override BC: u32 = 32;

const MAX_W4 = 64u;   // DOUT * DIN4 <= MAX_W4
const MAX_DIN4 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.x + wid.y * nwg.x) * WG + lid;
  if (q >= params.total) { return; }
  let pairs = params.I * params.J;
  let pair = q % pairs;
  let chunk = q / pairs;
  let i = pair / params.J;
  let DOUT = 4u * DOUT4;

  var w: array<vec4f, MAX_W4>;
  let wb = pair * DOUT * DIN4;
  for (var o = 0u; o < DOUT; o++) {
    for (var kb = 0u; kb < DIN4; kb++) { w[o * DIN4 + kb] = W[wb + o * DIN4 + kb]; }
  }
  let bEnd = min(params.nb, (chunk + 1u) * BC);
  for (var b = chunk * BC; b < bEnd; b++) {
    var x: array<vec4f, MAX_DIN4>;
    let ub = ((params.b0 + b) * params.I + i) * DIN4;
    for (var kb = 0u; kb < DIN4; kb++) { x[kb] = u[ub + kb]; }
    let ob = (b * pairs + pair) * DOUT4;
    for (var o4 = 0u; o4 < DOUT4; o4++) {
      var r = vec4f(0.0);
      for (var c = 0u; c < 4u; c++) {
        var acc = 0.0;
        for (var kb = 0u; kb < DIN4; kb++) { acc += dot(w[(4u * o4 + c) * DIN4 + kb], x[kb]); }
        r[c] = acc;
      }
      uhat[ob + o4] = r;
    }
  }
}

fn W_at(e: u32) -> f32 { return W[e >> 2u][e & 3u]; }
fn u_at(e: u32) -> f32 { return u[e >> 2u][e & 3u]; }

@compute @workgroup_size(WG)
fn generic(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.x + wid.y * nwg.x) * WG + lid; // vec4 index in the uhat slice
  if (q >= params.total) { return; }
  let DOUT = params.DOUT;
  let DIN = params.DIN;
  let n = params.nb * params.I * params.J * DOUT;
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    let e = 4u * q + c;
    if (e < n) {
      let o = e % DOUT;
      let row = e / DOUT;                 // (b * I + i) * J + j within the slice
      let pair = row % (params.I * params.J);
      let b = row / (params.I * params.J);
      let i = pair / params.J;
      let ub = ((params.b0 + b) * params.I + i) * DIN;
      let wb = (pair * DOUT + o) * DIN;
      var acc = 0.0;
      for (var k = 0u; k < DIN; k++) { acc += W_at(wb + k) * u_at(ub + k); }
      r[c] = acc;
    }
  }
  uhat[q] = r;
}
