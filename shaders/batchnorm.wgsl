// Batch normalisation per channel of x, [N, C] (plane = 1) or [N, C, H, W] (plane = H W):
// statistics, the normalising map y = (x - mean) invStd gamma + beta (optionally with a
// ReLU), and the backward: per-channel sums of dy and dy (x - mean), then dx.
//
// Channel c holds m = N plane values; its j-th value is x[(n C + c) plane + p] with
// n = j / plane, p = j % plane. Statistics are split into chunks of `chunk` values. One
// thread owns one (channel, chunk) pair and walks it in a fixed order, two passes over the
// chunk (its mean, then squared deviations from that mean: no E[x^2] - E[x]^2
// cancellation); a second dispatch merges the chunks of a channel in chunk order with
// Chan's pairwise update. No atomics and no workgroup memory: the result never depends on
// timing, and on lavapipe, which runs a workgroup as SIMD lanes on one core, this ran 2x
// faster than a workgroup tree reduction per channel and 5x faster than one thread per
// channel at C = 1. Channels are the fastest-varying thread index, so for [N, C]
// neighbouring lanes read neighbouring addresses. When one chunk covers a channel, a single
// dispatch computes and finishes the statistics (the *_single entries). The per-element
// kernels give each thread RUN consecutive elements and step the channel along the run
// instead of dividing per element (5-8x faster on lavapipe than one element per thread).

override WG: u32 = 64;
override RELU: bool = false;
// Consecutive elements per thread in the per-element kernels.
override RUN: u32 = 1;

struct Params {
  C: u32,          // channels
  plane: u32,      // H W, or 1
  m: u32,          // values per channel, N plane
  n: u32,          // elements of x
  chunk: u32,      // values per (channel, chunk) thread
  n_chunks: u32,
  eps: f32,
  momentum: f32,   // running <- (1 - momentum) running + momentum batch
}

@group(0) @binding(0) var<uniform> params: Params;

// ---- statistics -----------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> x: array<f32>;
// (chunk mean, chunk sum of squared deviations) at [k C + c].
@group(0) @binding(2) var<storage, read_write> partial: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> inv_std: array<f32>;
@group(0) @binding(5) var<storage, read_write> run_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> run_var: array<f32>;

fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// Address of the j-th value of channel c.
fn address(c: u32, j: u32) -> u32 {
  return ((j / params.plane) * params.C + c) * params.plane + j % params.plane;
}

// Count, mean and sum of squared deviations of values [start, end) of channel c.
fn chunk_stats(c: u32, start: u32, end: u32) -> vec2<f32> {
  // Stepping p and the address avoids a division per value.
  let skip = (params.C - 1u) * params.plane;
  let a0 = address(c, start);
  let p0 = start % params.plane;
  var a = a0;
  var p = p0;
  var s = 0.0;
  for (var j = start; j < end; j++) {
    s += x[a];
    a++;
    p++;
    if (p == params.plane) { p = 0u; a += skip; }
  }
  let mu = s / f32(end - start);
  a = a0;
  p = p0;
  var q = 0.0;
  for (var j = start; j < end; j++) {
    let d = x[a] - mu;
    q += d * d;
    a++;
    p++;
    if (p == params.plane) { p = 0u; a += skip; }
  }
  return vec2<f32>(mu, q);
}

// Merges the chunks of channel c in chunk order: (mean, M2) of all m values.
fn merge_chunks(c: u32) -> vec2<f32> {
  var acc = partial[c];
  var count = f32(min(params.chunk, params.m));
  for (var k = 1u; k < params.n_chunks; k++) {
    let b = partial[k * params.C + c];
    let nb = f32(min(params.chunk, params.m - k * params.chunk));
    let total = count + nb;
    let delta = b.x - acc.x;
    acc = vec2<f32>(acc.x + delta * (nb / total),
                    acc.y + b.y + delta * delta * (count / total) * nb);
    count = total;
  }
  return acc;
}

// Saves mean and 1 / sqrt(biased variance + eps).
fn finish(c: u32, s: vec2<f32>) {
  mean[c] = s.x;
  inv_std[c] = inverseSqrt(s.y / f32(params.m) + params.eps);
}

// PyTorch's convention: the running variance tracks the unbiased variance M2 / (m - 1).
fn update_running(c: u32, s: vec2<f32>) {
  let k = params.momentum;
  run_mean[c] = (1.0 - k) * run_mean[c] + k * s.x;
  run_var[c] = (1.0 - k) * run_var[c] + k * (s.y / f32(params.m - 1u));
}

@compute @workgroup_size(WG)
fn stats_partial(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let t = thread_index(wid, nwg, lid);
  if (t >= params.C * params.n_chunks) { return; }
  let c = t % params.C;
  let start = (t / params.C) * params.chunk;
  partial[t] = chunk_stats(c, start, min(start + params.chunk, params.m));
}

@compute @workgroup_size(WG)
fn stats_final(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let c = thread_index(wid, nwg, lid);
  if (c >= params.C) { return; }
  finish(c, merge_chunks(c));
}

@compute @workgroup_size(WG)
fn stats_final_running(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let c = thread_index(wid, nwg, lid);
  if (c >= params.C) { return; }
  let s = merge_chunks(c);
  finish(c, s);
  update_running(c, s);
}

@compute @workgroup_size(WG)
fn stats_single(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let c = thread_index(wid, nwg, lid);
  if (c >= params.C) { return; }
  finish(c, chunk_stats(c, 0u, params.m));
}

@compute @workgroup_size(WG)
fn stats_single_running(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
  let c = thread_index(wid, nwg, lid);
  if (c >= params.C) { return; }
  let s = chunk_stats(c, 0u, params.m);
  finish(c, s);
  update_running(c, s);
}

// Eval mode: the saved statistics are the running ones, read at this point of the run.
@compute @workgroup_size(WG)
fn stats_eval(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let c = thread_index(wid, nwg, lid);
  if (c >= params.C) { return; }
  mean[c] = run_mean[c];
  inv_std[c] = inverseSqrt(run_var[c] + params.eps);
}

// ---- normalising map: RUN consecutive elements per thread -----------------------------

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> saved_mean: array<f32>;
@group(0) @binding(3) var<storage, read> saved_inv_std: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// A per-element thread's run: its elements [x, y) (empty past the end), and the position z
// in its plane and the channel w of the first.
fn elem_run(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec4<u32> {
  let start = thread_index(wid, nwg, lid) * RUN;
  let end = min(start + RUN, params.n);
  return vec4<u32>(start, max(start, end), start % params.plane,
                   (start / params.plane) % params.C);
}

// Moves position p of a per-element run `step` values along its plane; at the plane's end,
// on to the next channel c (the first again at the next image), and says so.
fn advance(p: ptr<function, u32>, c: ptr<function, u32>, step: u32) -> bool {
  *p += step;
  if (*p < params.plane) { return false; }
  *p = 0u;
  *c = select(*c + 1u, 0u, *c + 1u == params.C);
  return true;
}

// Channel c's (mean, invStd gamma, beta): y = (x - mean) invStd gamma + beta.
fn affine(c: u32) -> vec3<f32> {
  return vec3<f32>(saved_mean[c], saved_inv_std[c] * gamma[c], beta[c]);
}

// ReLU keeps NaN (a NaN input, or statistics made NaN by one): WGSL leaves max() of a NaN
// to the driver, and lavapipe returns 0, which would hide it. Tested on the bits.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_nan4(v: vec4<f32>) -> vec4<bool> {
  return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let r = elem_run(wid, nwg, lid);
  if (r.x >= r.y) { return; }
  var p = r.z;
  var c = r.w;
  var a = affine(c);
  for (var i = r.x; i < r.y; i++) {
    // x - mean first: exact when x is within a factor 2 of the mean, whatever its size.
    var v = (src[i] - a.x) * a.y + a.z;
    if (RELU) { v = select(max(v, 0.0), v, is_nan(v)); }
    y[i] = v;
    if (advance(&p, &c, 1u)) { a = affine(c); }
  }
}

// apply for planes of a multiple of 4 values (then no vec4 straddles two channels): the same
// arithmetic on vec4s, a quarter of the loads and stores (each a loop over the SIMD lanes on
// lavapipe). RUN is a multiple of 4 here.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn apply4(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let r = elem_run(wid, nwg, lid);
  if (r.x >= r.y) { return; }
  var p = r.z;
  var c = r.w;
  var a = affine(c);
  for (var i = r.x / 4u; i < r.y / 4u; i++) {
    var v = (src4[i] - a.x) * a.y + a.z;
    if (RELU) { v = select(max(v, vec4<f32>(0.0)), v, is_nan4(v)); }
    y4[i] = v;
    if (advance(&p, &c, 4u)) { a = affine(c); }
  }
}

// ---- backward -------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> gdy: array<f32>;
@group(0) @binding(2) var<storage, read> gx: array<f32>;
// The forward output: read only when RELU, to mask dy; otherwise any buffer of n floats.
@group(0) @binding(3) var<storage, read> gy: array<f32>;
@group(0) @binding(4) var<storage, read> pmean: array<f32>;
// (sum dy, sum dy (x - mean)) at [k C + c].
@group(0) @binding(5) var<storage, read_write> gpartial: array<vec2<f32>>;

// dy after the fused ReLU: no gradient where the output was clamped to 0.
fn masked_dy(i: u32) -> f32 {
  if (RELU) { return select(0.0, gdy[i], gy[i] > 0.0); }
  return gdy[i];
}

@compute @workgroup_size(WG)
fn grad_partial(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let t = thread_index(wid, nwg, lid);
  if (t >= params.C * params.n_chunks) { return; }
  let c = t % params.C;
  let start = (t / params.C) * params.chunk;
  let end = min(start + params.chunk, params.m);
  let skip = (params.C - 1u) * params.plane;
  var a = address(c, start);
  var p = start % params.plane;
  let m0 = pmean[c];
  var s = vec2<f32>(0.0, 0.0);
  for (var j = start; j < end; j++) {
    let g = masked_dy(a);
    s += vec2<f32>(g, g * (gx[a] - m0));
    a++;
    p++;
    if (p == params.plane) { p = 0u; a += skip; }
  }
  gpartial[t] = s;
}

@group(0) @binding(1) var<storage, read> gsum: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> fmean: array<f32>;
@group(0) @binding(3) var<storage, read> finv: array<f32>;
@group(0) @binding(4) var<storage, read> fgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;
// Per channel (gamma invStd, dbeta / m, dgamma invStd / m, mean), what dx needs.
@group(0) @binding(7) var<storage, read_write> coef: array<vec4<f32>>;

// dbeta = sum dy, dgamma = sum dy xhat = invStd sum dy (x - mean), chunks in order.
@compute @workgroup_size(WG)
fn grad_final(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let c = thread_index(wid, nwg, lid);
  if (c >= params.C) { return; }
  var s = vec2<f32>(0.0, 0.0);
  for (var k = 0u; k < params.n_chunks; k++) { s += gsum[k * params.C + c]; }
  let inv = finv[c];
  let g = s.y * inv;
  dbeta[c] = s.x;
  dgamma[c] = g;
  let inv_m = 1.0 / f32(params.m);
  coef[c] = vec4<f32>(fgamma[c] * inv, s.x * inv_m, g * inv * inv_m, fmean[c]);
}

@group(0) @binding(4) var<storage, read> gcoef: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read> egamma: array<f32>;
@group(0) @binding(7) var<storage, read> einv: array<f32>;

// Training: dx = gamma invStd (dy - dbeta / m - (x - mean) invStd dgamma / m).
@compute @workgroup_size(WG)
fn grad_input(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let r = elem_run(wid, nwg, lid);
  if (r.x >= r.y) { return; }
  var p = r.z;
  var c = r.w;
  var k = gcoef[c];
  for (var i = r.x; i < r.y; i++) {
    dx[i] = k.x * (masked_dy(i) - k.y - (gx[i] - k.w) * k.z);
    if (advance(&p, &c, 1u)) { k = gcoef[c]; }
  }
}

// grad_input on vec4s, for planes of a multiple of 4 values (as apply4).
@group(0) @binding(1) var<storage, read> gdy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gx4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> gy4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dx4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn grad_input4(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let r = elem_run(wid, nwg, lid);
  if (r.x >= r.y) { return; }
  var p = r.z;
  var c = r.w;
  var k = gcoef[c];
  for (var i = r.x / 4u; i < r.y / 4u; i++) {
    var g = gdy4[i];
    if (RELU) { g = select(vec4<f32>(0.0), g, gy4[i] > vec4<f32>(0.0)); }
    dx4[i] = k.x * (g - k.y - (gx4[i] - k.w) * k.z);
    if (advance(&p, &c, 4u)) { k = gcoef[c]; }
  }
}

// Eval: the statistics are constants, so dx = gamma invStd dy.
@compute @workgroup_size(WG)
fn grad_input_eval(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let r = elem_run(wid, nwg, lid);
  if (r.x >= r.y) { return; }
  var p = r.z;
  var c = r.w;
  var k = egamma[c] * einv[c];
  for (var i = r.x; i < r.y; i++) {
    dx[i] = k * masked_dy(i);
    if (advance(&p, &c, 1u)) { k = egamma[c] * einv[c]; }
  }
}
