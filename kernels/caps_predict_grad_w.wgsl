// Gradient of the prediction vectors with respect to W, summed over the batch:
//   dW[i, j, o, k] (+)= sum_b duhat[b, i, j, o] u[b, i, k]
//   duhat [nb, I, J, DOUT] (a batch slice, see caps_predict.wgsl), u [B, I, DIN] (read at b0 + b),
//   dW [I, J, DOUT, DIN]; all bound as array<vec4f>.
// Entry point `main` (DOUT % 4 == 0, DIN % 4 == 0): a gather where one invocation owns the
// DOUT*DIN elements of dW[i, j] (DOUT*DIN4 vec4 accumulators in registers) and loops over the
// examples: per example DOUT4 + DIN4 vec4 loads for DOUT*DIN multiply-adds.
// Entry point `generic` (any sizes): one invocation per vec4 of dW, each element its own sum over
// the batch. Slow; odd shapes only.
// params.accumulate = 1 adds to dW (the second and later batch slices), 0 overwrites it.
// Reference: test/reference/capsules.ts (capsPredictBackward, dW). Test: test/capsules.test.ts.

struct Params { nb: u32, b0: u32, I: u32, J: u32, DOUT: u32, DIN: u32, total: u32, accumulate: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> duhat: array<vec4f>;
@group(0) @binding(2) var<storage, read> u: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dW: array<vec4f>;

override WG: u32 = 16;
override DOUT4: u32 = 4;
override DIN4: u32 = 2;

const MAX_W4 = 64u;
const MAX_DOUT4 = 8u;
const MAX_DIN4 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let pair = (wid.x + wid.y * nwg.x) * WG + lid;
  let pairs = params.I * params.J;
  if (pair >= pairs) { return; }
  let i = pair / params.J;
  let DOUT = 4u * DOUT4;

  var acc: array<vec4f, MAX_W4>;
  for (var k = 0u; k < DOUT * DIN4; k++) { acc[k] = vec4f(0.0); }
  for (var b = 0u; b < params.nb; b++) {
    var x: array<vec4f, MAX_DIN4>;
    var g: array<vec4f, MAX_DOUT4>;
    let ub = ((params.b0 + b) * params.I + i) * DIN4;
    let gb = (b * pairs + pair) * DOUT4;
    for (var kb = 0u; kb < DIN4; kb++) { x[kb] = u[ub + kb]; }
    for (var o4 = 0u; o4 < DOUT4; o4++) { g[o4] = duhat[gb + o4]; }
    for (var o4 = 0u; o4 < DOUT4; o4++) {
      for (var c = 0u; c < 4u; c++) {
        let go = g[o4][c];
        for (var kb = 0u; kb < DIN4; kb++) { acc[(4u * o4 + c) * DIN4 + kb] += go * x[kb]; }
      }
    }
  }
  let wb = pair * DOUT * DIN4;
  for (var k = 0u; k < DOUT * DIN4; k++) {
    if (params.accumulate != 0u) { dW[wb + k] += acc[k]; } else { dW[wb + k] = acc[k]; }
  }
}

fn duhat_at(e: u32) -> f32 { return duhat[e >> 2u][e & 3u]; }
fn u_at(e: u32) -> f32 { return u[e >> 2u][e & 3u]; }

@compute @workgroup_size(WG)
fn generic(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.x + wid.y * nwg.x) * WG + lid; // vec4 index in dW
  if (q >= params.total) { return; }
  let DOUT = params.DOUT;
  let DIN = params.DIN;
  let pairs = params.I * params.J;
  let n = pairs * DOUT * DIN;
  var r = vec4f(0.0);
  if (params.accumulate != 0u) { r = dW[q]; }
  for (var c = 0u; c < 4u; c++) {
    let e = 4u * q + c;
    if (e < n) {
      let k = e % DIN;
      let o = (e / DIN) % DOUT;
      let pair = e / (DIN * DOUT);
      let i = pair / params.J;
      var acc = 0.0;
      for (var b = 0u; b < params.nb; b++) {
        acc += duhat_at((b * pairs + pair) * DOUT + o) * u_at(((params.b0 + b) * params.I + i) * DIN + k);
      }
      r[c] += acc;
    }
  }
  dW[q] = r;
}
