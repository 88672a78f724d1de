// Dynamic routing, backward. Entry point `main`: the hand-derived backward pass through all R
// iterations (kernels/routing_backward.md, sections 3 and 4), one invocation per example, no
// barriers (the reasons are in routing.wgsl); with VEC4 it also writes duhat. Entry point `write`
// (any D): the final gather of duhat when D % 4 != 0, one invocation per vec4 of duhat, from what
// `main` left in scratch and ds_all. Entry point `bias_grad`: dbias summed over the batch.
//   inputs:  uhat [nb, I, J, D] (batch slice, read as vec4 groups as in routing.wgsl);
//            saved_s, saved_v [B, R, J, D] and saved_c [B, R-1, I, J] (c^t, t >= 1) from routing.wgsl;
//            dv [B, J, D] = dL/dv^R
//   outputs: duhat [nb, I, J, D] (batch slice); ds_all [B, R, J, D] = dL/ds^t per example (zero
//            for the iterations that gradMode 'last' does not differentiate);
//            bias_grad: dbias [J, D] = sum over examples and iterations of ds_all
//   scratch: [nb, R, I, J] per example: dB^{t+1} at plane t (t = T0 .. R-2), dc at plane R-1.
//
// Per example, with T0 = 0 (gradMode 'all', params.gradAll = 1) or R-1 ('last'), C^t = c^t
// (saved; C^0 = 1/J, or 1/(J+1) leaky, a constant):
//   ds^{R-1} = squash_backward(s^{R-1}, dv)                                        (B1)
//   for t = R-1 down to T0:
//     if t < R-1:  dv^t[j] = sum_i dB^{t+1}[i, j] uhat[i, j];  ds^t = squash_backward(s^t, dv^t)   (B0b, B1)
//     if t > T0:   dc[i, j] = uhat[i, j] . ds^t[j]                                 (B3)
//                  dB^t[i, j] = dB^{t+1}[i, j] + C^t[i, j] (dc[i, j] - sum_k C^t[i, k] dc[i, k])   (B4)
//   then, once per (i, j), the gather that owns duhat[i, j, :] (main with VEC4, else `write`):
//     duhat[i, j] = sum_{t >= T0} C^t[i, j] ds^t[j] + sum_{T0 <= t < R-1} dB^{t+1}[i, j] v^t[j]   (B2 + B0a)
// (dB^{R} = 0; dB^{T0} is never needed: b^1 is a constant, and 'last' stops at b^R.)
// Each loop over (i, j) is parent-major (for j: the parent's D-vectors in registers; for i: ...).
// Loops that index private arrays by the iteration run to the constant MAX_R with a runtime guard,
// so that they unroll and the arrays stay in registers (a runtime-bounded loop made them memory).
// Memory traffic per example: 2(R-1) reads of uhat for 'all' (none for 'last', whose coefficients
// are saved), one write of duhat, and R*I*J floats of scratch.
// Limits (checked by the op): D <= 4*MAX_D4, R <= MAX_R.
// Reference: test/reference/capsules.ts (routingBackward). Test: test/capsules.test.ts.

struct Params { nb: u32, b0: u32, I: u32, J: u32, D: u32, R: u32, leaky: u32, gradAll: u32, B: u32 }

// `main` uses bindings 1-8, `write` 1-5, `bias_grad` 1-2 (ctx.dispatch binds buffers in order,
// so the shared ones come first).
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> ds_all: array<f32>;    // [B, R, J, D]
@group(0) @binding(2) var<storage, read_write> grad_out: array<vec4f>; // main, write: duhat slice; bias_grad: dbias [J, D]
@group(0) @binding(3) var<storage, read_write> scratch: array<f32>;   // [nb, R, I, J]
@group(0) @binding(4) var<storage, read> saved_v: array<f32>;
@group(0) @binding(5) var<storage, read> saved_c: array<f32>;         // [B, R-1, I, J]
@group(0) @binding(6) var<storage, read> uhat: array<vec4f>;
@group(0) @binding(7) var<storage, read> saved_s: array<f32>;
@group(0) @binding(8) var<storage, read> dv: array<f32>;

override WG: u32 = 8;
override D4: u32 = 4;
override VEC4: bool = true;

const MAX_D4 = 8u;
const MAX_R = 8u;
const EPS = 1e-7;

// Same as squash.wgsl.
fn squash_scale(n2: f32) -> f32 {
  return (n2 / (1.0 + n2)) / sqrt(n2 + EPS);
}
fn squash_grad_coef(n2: f32, sdv: f32) -> f32 {
  let onep = 1.0 + n2;
  return 2.0 * ((sdv / sqrt(n2 + EPS)) / onep) * (1.0 / onep - 0.5 * n2 / (n2 + EPS));
}

// Same as routing.wgsl.
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

// Group g of the [D] row starting at element o of saved_s / saved_v / dv / ds_all, zero past D.
fn s_group(o: u32, g: u32) -> vec4f {
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (4u * g + c < params.D) { r[c] = saved_s[o + 4u * g + c]; } }
  return r;
}
fn v_group(o: u32, g: u32) -> vec4f {
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (4u * g + c < params.D) { r[c] = saved_v[o + 4u * g + c]; } }
  return r;
}
fn dv_group(o: u32, g: u32) -> vec4f {
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (4u * g + c < params.D) { r[c] = dv[o + 4u * g + c]; } }
  return r;
}
fn ds_group(o: u32, g: u32) -> vec4f {
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (4u * g + c < params.D) { r[c] = ds_all[o + 4u * g + c]; } }
  return r;
}

// ds^t[j] = squash_backward(s^t[j], gin) written to ds_all (gin: the D components, as groups).
fn squash_back_store(bg: u32, t: u32, j: u32, gin: ptr<function, array<vec4f, MAX_D4>>) {
  let o = ((bg * params.R + t) * params.J + j) * params.D;
  var n2 = 0.0;
  var sg = 0.0;
  for (var g = 0u; g < D4; g++) {
    let s = s_group(o, g);
    n2 += dot(s, s);
    sg += dot(s, (*gin)[g]);
  }
  let f = squash_scale(n2);
  let k = squash_grad_coef(n2, sg);
  for (var g = 0u; g < D4; g++) {
    let d = f * (*gin)[g] + k * s_group(o, g);
    for (var c = 0u; c < 4u; c++) {
      if (4u * g + c < params.D) { ds_all[o + 4u * g + c] = d[c]; }
    }
  }
}

// C^t[i, j] of example bg (t >= 1 saved; t = 0 the constant c0).
fn coef(bg: u32, t: u32, k: u32, c0: f32) -> f32 {
  if (t == 0u) { return c0; }
  return saved_c[(bg * (params.R - 1u) + t - 1u) * params.I * params.J + k];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ex = (wid.x + wid.y * nwg.x) * WG + lid;
  if (ex >= params.nb) { return; }
  let I = params.I;
  let J = params.J;
  let D = params.D;
  let R = params.R;
  let leaky = params.leaky != 0u;
  let T0 = select(R - 1u, 0u, params.gradAll != 0u);
  let bg = params.b0 + ex;
  let IJ = I * J;
  let rows = ex * IJ;                 // uhat / duhat row of (ex, i, j) = rows + i*J + j
  let sc = ex * R * IJ;               // this example's scratch: dB^{t+1} at sc + t*IJ, dc at sc + (R-1)*IJ
  let dcBase = sc + (R - 1u) * IJ;
  let c0 = 1.0 / f32(select(J, J + 1u, leaky));

  // The iterations not differentiated have ds = 0 (so that bias_grad can sum every t).
  for (var t = 0u; t < T0; t++) {
    for (var e = 0u; e < J * D; e++) { ds_all[(bg * R + t) * J * D + e] = 0.0; }
  }
  // ds^{R-1} = squash_backward(s^{R-1}, dv).
  for (var j = 0u; j < J; j++) {
    var gin: array<vec4f, MAX_D4>;
    for (var g = 0u; g < D4; g++) { gin[g] = dv_group((bg * J + j) * D, g); }
    squash_back_store(bg, R - 1u, j, &gin);
  }

  for (var tt = 0u; tt < R - T0; tt++) {
    let t = R - 1u - tt;
    if (t < R - 1u) {
      // dv^t[j] = sum_i dB^{t+1}[i, j] uhat[i, j], then ds^t.
      let bPlane = sc + t * IJ;
      for (var j = 0u; j < J; j++) {
        var acc: array<vec4f, MAX_D4>;
        for (var g = 0u; g < D4; g++) { acc[g] = vec4f(0.0); }
        for (var i = 0u; i < I; i++) {
          let w = scratch[bPlane + i * J + j];
          for (var g = 0u; g < D4; g++) { acc[g] += w * load_group(rows + i * J + j, g); }
        }
        squash_back_store(bg, t, j, &acc);
      }
    }
    if (t > T0) {
      // dc = uhat . ds^t, then dB^t = dB^{t+1} + C^t (dc - C^t . dc) into plane t-1.
      for (var j = 0u; j < J; j++) {
        var dsj: array<vec4f, MAX_D4>;
        for (var g = 0u; g < D4; g++) { dsj[g] = ds_group(((bg * R + t) * J + j) * D, g); }
        for (var i = 0u; i < I; i++) {
          var a = 0.0;
          for (var g = 0u; g < D4; g++) { a += dot(load_group(rows + i * J + j, g), dsj[g]); }
          scratch[dcBase + i * J + j] = a;
        }
      }
      let prev = sc + t * IJ;         // dB^{t+1} (absent, i.e. zero, at t = R-1)
      let next = sc + (t - 1u) * IJ;  // dB^t
      for (var i = 0u; i < I; i++) {
        let o = i * J;
        var cdot = 0.0;
        for (var j = 0u; j < J; j++) { cdot += coef(bg, t, o + j, c0) * scratch[dcBase + o + j]; }
        for (var j = 0u; j < J; j++) {
          var b = coef(bg, t, o + j, c0) * (scratch[dcBase + o + j] - cdot);
          if (t < R - 1u) { b += scratch[prev + o + j]; }
          scratch[next + o + j] = b;
        }
      }
    }
  }

  // duhat[i, j] = sum_{t >= T0} C^t[i, j] ds^t[j] + sum_{T0 <= t < R-1} dB^{t+1}[i, j] v^t[j]
  // (whole vec4 rows, D = 4*D4; for other D the entry point `write` does it).
  if (VEC4) {
    for (var j = 0u; j < J; j++) {
      var dsv: array<vec4f, 64>; // MAX_R * MAX_D4: ds^t[j] groups at t*MAX_D4 + g
      var vv: array<vec4f, 64>;  // v^t[j] groups
      for (var t = 0u; t < MAX_R; t++) {
        if (t >= T0 && t < R) {
          for (var g = 0u; g < D4; g++) {
            dsv[t * MAX_D4 + g] = ds_group(((bg * R + t) * J + j) * D, g);
            vv[t * MAX_D4 + g] = v_group(((bg * R + t) * J + j) * D, g);
          }
        }
      }
      for (var i = 0u; i < I; i++) {
        let k = i * J + j;
        var out: array<vec4f, MAX_D4>;
        for (var g = 0u; g < D4; g++) { out[g] = vec4f(0.0); }
        for (var t = 0u; t < MAX_R; t++) {
          if (t >= T0 && t < R) {
            let c = coef(bg, t, k, c0);
            var b = 0.0;
            if (t < R - 1u) { b = scratch[sc + t * IJ + k]; }
            for (var g = 0u; g < D4; g++) { out[g] += c * dsv[t * MAX_D4 + g] + b * vv[t * MAX_D4 + g]; }
          }
        }
        for (var g = 0u; g < D4; g++) { grad_out[(rows + k) * D4 + g] = out[g]; }
      }
    }
  }
}

// The final gather of duhat for any D: one invocation per vec4 of the duhat slice, each element
// duhat[ex, i, j, d] = sum_{t >= T0} C^t[i, j] ds^t[j, d] + sum_{T0 <= t < R-1} dB^{t+1}[i, j] v^t[j, d]
// from saved_c, the scratch planes and ds_all that `main` wrote (elements past the end written as 0).
@compute @workgroup_size(WG)
fn write(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.x + wid.y * nwg.x) * WG + lid;
  let I = params.I;
  let J = params.J;
  let D = params.D;
  let R = params.R;
  let IJ = I * J;
  let n = params.nb * IJ * D;
  if (4u * q >= n) { return; }
  let T0 = select(R - 1u, 0u, params.gradAll != 0u);
  let c0 = 1.0 / f32(select(J, J + 1u, params.leaky != 0u));
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    let e = 4u * q + c;
    if (e < n) {
      let d = e % D;
      let row = e / D;            // ex * IJ + i * J + j
      let j = row % J;
      let k = row % IJ;           // i * J + j
      let ex = row / IJ;
      let bg = params.b0 + ex;
      let sc = ex * R * IJ;
      var acc = 0.0;
      for (var t = T0; t < R; t++) {
        let o = ((bg * R + t) * J + j) * D + d;
        acc += coef(bg, t, k, c0) * ds_all[o];
        if (t < R - 1u) { acc += scratch[sc + t * IJ + k] * saved_v[o]; }
      }
      r[c] = acc;
    }
  }
  grad_out[q] = r;
}

// dbias[e] = sum over the batch and the iterations of ds_all[b, t, e]; one invocation per vec4
// of dbias [J, D] (elements past J*D written as 0, inside the pooled buffer).
@compute @workgroup_size(WG)
fn bias_grad(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.x + wid.y * nwg.x) * WG + lid;
  let JD = params.J * params.D;
  if (4u * q >= JD) { return; }
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    let e = 4u * q + c;
    if (e < JD) {
      var sum = 0.0;
      for (var bt = 0u; bt < params.B * params.R; bt++) { sum += ds_all[bt * JD + e]; }
      r[c] = sum;
    }
  }
  grad_out[q] = r;
}
