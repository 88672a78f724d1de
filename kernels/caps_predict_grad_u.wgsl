// Gradient of the prediction vectors with respect to u:
//   du[b, i, k] = sum_j sum_o W[i, j, o, k] duhat[b, i, j, o]
//   W [I, J, DOUT, DIN], duhat [nb, I, J, DOUT] (a batch slice, see caps_predict.wgsl),
//   du [B, I, DIN] (examples b0 .. b0+nb-1 written); all bound as array<vec4f>.
// Entry point `main` (DOUT % 4 == 0, DIN % 4 == 0): a gather where one invocation owns du[b, i, :]
// for one child i and a chunk of BC examples. For each parent j and block of 4 rows of W[i, j] it
// loads the 4 x DIN block once (registers) and applies its transpose to the chunk's
// duhat[b, i, j, 4 rows], so W is read ceil(B / BC) times in all, not B times.
// Invocation q: child i = q % I, chunk = q / I. BC = 16 was fastest on llvmpipe (of 2, 4, 8, 16).
// Entry point `generic` (any sizes): one invocation per vec4 of du, each element its own sum; the
// elements of the vec4 outside this batch slice are kept (read back), so that slices may share a vec4.
// Reference: test/reference/capsules.ts (capsPredictBackward, du). Test: test/capsules.test.ts.

struct Params { nb: u32, b0: u32, I: u32, J: u32, DOUT: u32, DIN: u32, total: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> W: array<vec4f>;
@group(0) @binding(2) var<storage, read> duhat: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> du: array<vec4f>;

override WG: u32 = 16;
override DOUT4: u32 = 4;
override DIN4: u32 = 2;
/** Examples per invocation (main), <= MAX_BC. */
override BC: u32 = 16;

const MAX_W4 = 64u;
const MAX_BC = 16u;
const MAX_DIN4 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.x + wid.y * nwg.x) * WG + lid;
  if (q >= params.total) { return; }
  let I = params.I;
  let J = params.J;
  let i = q % I;
  let b0 = (q / I) * BC;             // first example of the chunk, within the slice
  let last = params.nb - 1u;

  // du[b0 + bb, i, 4kb .. 4kb+3] at bb*DIN4 + kb. The loops over bb run to the constant BC (the
  // examples past the end are clamped to the last one and not stored) so that they unroll and acc
  // stays in registers: with a runtime bound it lived in memory and the kernel was 2-3x slower.
  var acc: array<vec4f, 128>; // MAX_BC * MAX_DIN4
  for (var k = 0u; k < BC * DIN4; k++) { acc[k] = vec4f(0.0); }
  for (var j = 0u; j < J; j++) {
    let pair = i * J + j;
    for (var o4 = 0u; o4 < DOUT4; o4++) {
      var wr: array<vec4f, 32>; // 4 * MAX_DIN4: rows 4*o4 .. 4*o4+3 of W[i, j]
      let wb = (pair * 4u * DOUT4 + 4u * o4) * DIN4;
      for (var k = 0u; k < 4u * DIN4; k++) { wr[k] = W[wb + k]; }
      for (var bb = 0u; bb < BC; bb++) {
        let b = min(b0 + bb, last);
        let g = duhat[(b * I * J + pair) * DOUT4 + o4];
        for (var kb = 0u; kb < DIN4; kb++) {
          acc[bb * DIN4 + kb] += g.x * wr[kb] + g.y * wr[DIN4 + kb] + g.z * wr[2u * DIN4 + kb] + g.w * wr[3u * DIN4 + kb];
        }
      }
    }
  }
  for (var bb = 0u; bb < BC; bb++) {
    if (b0 + bb <= last) {
      let ub = ((params.b0 + b0 + bb) * I + i) * DIN4;
      for (var kb = 0u; kb < DIN4; kb++) { du[ub + kb] = acc[bb * DIN4 + kb]; }
    }
  }
}

fn W_at(e: u32) -> f32 { return W[e >> 2u][e & 3u]; }
fn duhat_at(e: u32) -> f32 { return duhat[e >> 2u][e & 3u]; }

@compute @workgroup_size(WG)
fn generic(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q0 = (wid.x + wid.y * nwg.x) * WG + lid;
  if (q0 >= params.total) { return; }
  let I = params.I;
  let J = params.J;
  let DOUT = params.DOUT;
  let DIN = params.DIN;
  let first = params.b0 * I * DIN;             // first element of this slice in du
  let end = first + params.nb * I * DIN;
  let q = first / 4u + q0;                      // vec4 index in du
  var r = du[q];
  for (var c = 0u; c < 4u; c++) {
    let e = 4u * q + c;
    if (e >= first && e < end) {
      let k = e % DIN;
      let i = (e / DIN) % I;
      let b = e / (DIN * I) - params.b0;        // within the slice
      var acc = 0.0;
      for (var j = 0u; j < J; j++) {
        let pair = i * J + j;
        for (var o = 0u; o < DOUT; o++) {
          acc += W_at((pair * DOUT + o) * DIN + k) * duhat_at((b * I * J + pair) * DOUT + o);
        }
      }
      r[c] = acc;
    }
  }
  du[q] = r;
}
