// Inverted dropout with a counter-based mask: out[i] = x[i] * (keep(i) ? scale : 0) for i < n,
// scale = 1 / (1 - p). The same kernel is the backward pass (dx = dy * the same mask * scale): the
// mask is a pure function of (seed, i), recomputed here instead of stored.
// Layout: any tensor, flat (element i of the row-major data).
// The mask (test/reference/dropout.ts implements the same function, bit for bit):
//   mix(h)  = lowbias32: h ^= h >> 16; h *= 0x7feb352d; h ^= h >> 15; h *= 0x846ca68b; h ^= h >> 16
//   k1      = mix(seed_lo ^ mix(seed_hi + 0x9e3779b9))      (the seed is a 53-bit integer, lo/hi u32 words)
//   k2      = mix(k1 + 0x632be5ab)
//   h(i)    = mix(mix(i + k1) ^ k2)                         (all arithmetic wraps mod 2^32)
//   keep(i) = h(i) >= threshold,  threshold = min(2^32 - 1, round(p * 2^32))  (host-computed)
// The kept value is a multiplication by scale and the dropped one by 0, so a NaN or an infinity in
// x stays non-finite (NaN) either way, as in PyTorch's x * mask / (1 - p): the training monitor sees it.
// Reference: test/reference/dropout.ts. Test: test/dropout.test.ts. Op: src/ops/dropout.ts.

struct Params { n: u32, threshold: u32, seed_lo: u32, seed_hi: u32, scale: f32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WG: u32 = 64;

fn mix(v: u32) -> u32 {
  var h = v;
  h ^= h >> 16u;
  h *= 0x7feb352du;
  h ^= h >> 15u;
  h *= 0x846ca68bu;
  h ^= h >> 16u;
  return h;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.n) { return; }
  let k1 = mix(params.seed_lo ^ mix(params.seed_hi + 0x9e3779b9u));
  let k2 = mix(k1 + 0x632be5abu);
  let h = mix(mix(i + k1) ^ k2);
  out[i] = x[i] * select(0.0, params.scale, h >= params.threshold);
}
