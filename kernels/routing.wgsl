// Dynamic routing by agreement, forward: ONE fused kernel runs all r iterations; one invocation
// owns one example (no barriers, no workgroup memory).
//   uhat [nb, I, J, D] (a batch slice: examples b0 .. b0+nb-1, see caps_predict.wgsl), read as
//   vec4 groups; bias [J, D] (when params.hasBias); outputs v [B, J, D] and, for the backward pass,
//   the weighted sums, outputs and coupling coefficients of every iteration: saved_s, saved_v
//   [B, R, J, D] and saved_c [B, R-1, I, J] (c^t for t = 1 .. R-1; c^0 = 1/J is a constant).
//   b = 0; for t = 0 .. R-1:
//     c[i, :] = softmax_j(b[i, :])       (leaky: with an extra logit 0 whose coefficient is dropped)
//     s[j]    = sum_i c[i, j] uhat[i, j] (+ bias[j]);   v[j] = squash(s[j])
//     b[i, j] += uhat[i, j] . v[j]
//
// Design (measured on llvmpipe, where every load whose address is not a compile-time constant costs
// a per-lane loop, and every workgroupBarrier() turns the shader into coroutines whose frames LLVM
// builds slowly and which save and restore all live state):
// - One invocation per example, so no barrier and no cross-invocation reduction. A version with one
//   workgroup per example (children spread over the invocations, partial sums reduced through
//   workgroup memory) was 2-4x slower here and took 3-10 s to compile.
// - The logits are never stored: b^t[i, j] = sum_{t' < t} uhat[i, j] . v^{t'}[j] = uhat[i, j] . V^t[j]
//   with V^t = sum_{t' < t} v^{t'} (from saved_v), so iteration t > 0 makes two passes over uhat,
//   parent-major (for j: V^t[j] in registers; for i: ...):
//     pass 1: logits l[i, j] = uhat[i, j] . V^t[j]  -> saved_c plane t
//     per child: softmax of its J logits, in place (max and sum in one online pass, then c)
//     pass 2: s[j] = sum_i c^t[i, j] uhat[i, j]  (registers), squash, save
//   and iteration 0 one pass (c = 1/J, or 1/(J+1) when leaky).
// - Saved for the backward: s^t, v^t ([R, J, D] per example) and the coefficients c^t (t >= 1,
//   [R-1, I, J] per example: 92 KB at r = 3, 11.8 MB at batch 128, an eighth of uhat). The forward
//   computes them anyway; keeping them saves the backward a logits pass and a softmax per
//   iteration (about a fifth of its memory operations, counted per (i, j)). Recomputing them from uhat and V^t instead
//   would need no memory at all: the choice is memory for time.
// The logits are summed in a different order than the reference (one dot with the sum of the v's
// instead of a sum of dots): they agree to rounding.
// Only D4 = ceil(D/4) and VEC4 = (D % 4 == 0) are override constants (few pipelines to compile);
// I, J, D, R and the flags are uniforms. VEC4 = false reads components one by one (any D); both tested.
// Reference: test/reference/capsules.ts (routingForward). Test: test/capsules.test.ts.

struct Params { nb: u32, b0: u32, I: u32, J: u32, D: u32, R: u32, leaky: u32, hasBias: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> uhat: array<vec4f>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;            // [J, D]; any buffer without a bias
@group(0) @binding(3) var<storage, read_write> v_out: array<f32>;     // [B, J, D]
@group(0) @binding(4) var<storage, read_write> saved_s: array<f32>;   // [B, R, J, D]
@group(0) @binding(5) var<storage, read_write> saved_v: array<f32>;   // [B, R, J, D]
@group(0) @binding(6) var<storage, read_write> saved_c: array<f32>;   // [B, R-1, I, J]

override WG: u32 = 8;
/** ceil(D / 4), D <= 4 * MAX_D4. */
override D4: u32 = 4;
/** D == 4 * D4: whole vec4 loads. */
override VEC4: bool = true;

const MAX_D4 = 8u;
const EPS = 1e-7;

// Same as squash.wgsl.
fn squash_scale(n2: f32) -> f32 {
  return (n2 / (1.0 + n2)) / sqrt(n2 + EPS);
}

// Components 4g .. 4g+3 of row `row` (= (example * I + i) * J + j) of uhat, zero past D.
fn load_group(row: u32, g: u32) -> vec4f {
  if (VEC4) { return uhat[row * D4 + g]; }
  let D = params.D;
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    let d = 4u * g + c;
    if (d < D) {
      let e = row * D + d;
      r[c] = uhat[e >> 2u][e & 3u];
    }
  }
  return r;
}

// Group g of a [.., D] row starting at element `o` of a scalar array (saved_v), zero past D.
fn saved_v_group(o: u32, g: u32) -> vec4f {
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    if (4u * g + c < params.D) { r[c] = saved_v[o + 4u * g + c]; }
  }
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ex = (wid.x + wid.y * nwg.x) * WG + lid; // example within the slice
  if (ex >= params.nb) { return; }
  let I = params.I;
  let J = params.J;
  let D = params.D;
  let R = params.R;
  let leaky = params.leaky != 0u;
  let bg = params.b0 + ex;  // example within the batch
  let rows = ex * I * J;    // uhat row of (ex, i, j) = rows + i*J + j
  let c0 = 1.0 / f32(select(J, J + 1u, leaky));

  for (var t = 0u; t < R; t++) {
    let cp = ((bg * (R - 1u)) + t - 1u) * I * J; // plane of c^t in saved_c (t >= 1): + i*J + j
    if (t > 0u) {
      // Pass 1: logits uhat[i, j] . V^t[j].
      for (var j = 0u; j < J; j++) {
        var vs: array<vec4f, MAX_D4>;
        for (var g = 0u; g < D4; g++) {
          var a = vec4f(0.0);
          for (var t2 = 0u; t2 < t; t2++) { a += saved_v_group(((bg * R + t2) * J + j) * D, g); }
          vs[g] = a;
        }
        for (var i = 0u; i < I; i++) {
          var l = 0.0;
          for (var g = 0u; g < D4; g++) { l += dot(load_group(rows + i * J + j, g), vs[g]); }
          saved_c[cp + i * J + j] = l;
        }
      }
      // Softmax over the parents of each child: running max and sum in one pass, then c.
      for (var i = 0u; i < I; i++) {
        let o = cp + i * J;
        var m = select(-3.4e38, 0.0, leaky);
        var z = select(0.0, 1.0, leaky); // the leaky logit 0: exp(0 - m) with m = 0 so far
        for (var j = 0u; j < J; j++) {
          let l = saved_c[o + j];
          let mn = max(m, l);
          z = z * exp(m - mn) + exp(l - mn);
          m = mn;
        }
        let rz = 1.0 / z;
        for (var j = 0u; j < J; j++) { saved_c[o + j] = exp(saved_c[o + j] - m) * rz; }
      }
    }
    // Pass 2: weighted sums, bias, squash; save s^t, v^t.
    for (var j = 0u; j < J; j++) {
      var acc: array<vec4f, MAX_D4>;
      for (var g = 0u; g < D4; g++) { acc[g] = vec4f(0.0); }
      if (t == 0u) {
        for (var i = 0u; i < I; i++) {
          for (var g = 0u; g < D4; g++) { acc[g] += load_group(rows + i * J + j, g); }
        }
        for (var g = 0u; g < D4; g++) { acc[g] *= c0; }
      } else {
        for (var i = 0u; i < I; i++) {
          let c = saved_c[cp + i * J + j];
          for (var g = 0u; g < D4; g++) { acc[g] += c * load_group(rows + i * J + j, g); }
        }
      }
      var n2 = 0.0;
      for (var g = 0u; g < D4; g++) {
        if (params.hasBias != 0u) {
          for (var c = 0u; c < 4u; c++) {
            if (4u * g + c < D) { acc[g][c] += bias[j * D + 4u * g + c]; }
          }
        }
        n2 += dot(acc[g], acc[g]);
      }
      let f = squash_scale(n2);
      let sv = ((bg * R + t) * J + j) * D;
      let vo = (bg * J + j) * D;
      for (var g = 0u; g < D4; g++) {
        let v = f * acc[g];
        for (var c = 0u; c < 4u; c++) {
          let d = 4u * g + c;
          if (d < D) {
            saved_s[sv + d] = acc[g][c];
            saved_v[sv + d] = v[c];
            if (t == R - 1u) { v_out[vo + d] = v[c]; }
          }
        }
      }
    }
  }
}
