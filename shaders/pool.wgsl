// Pooling in NCHW: global average pooling [N, C, H, W] -> [N, C] and 2-D max pooling with
// stride and -inf padding, each with its backward.
//
// Every kernel gives one thread a run of RUN consecutive outputs (or inputs, for the
// gathers), walked in order: on lavapipe, which runs a workgroup as SIMD lanes on one
// core, threads that loop were 5-8x faster than one thread per element (measured on the
// batch-norm kernels). No atomics anywhere: max pooling saves the flat H W index of each
// window's first maximum, and its backward gathers, for each input element, dy from the
// windows whose saved index is that element, in window order -- deterministic, where a
// scatter from the windows would race on overlapping windows.

override WG: u32 = 64;
override RUN: u32 = 8;

struct Params {
  N: u32, C: u32, H: u32, W: u32,
  OH: u32, OW: u32,
  kh: u32, kw: u32,
  sh: u32, sw: u32,
  ph: u32, pw: u32,
  n_in: u32,     // N C H W
  n_out: u32,    // N C OH OW, or N C for the average
}

@group(0) @binding(0) var<uniform> params: Params;

fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// ---- global average pooling -----------------------------------------------------------

@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read_write> ay: array<f32>;

// y[n, c] = sum over the plane, in order, / (H W).
@compute @workgroup_size(WG)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let start = thread_index(wid, nwg, lid) * RUN;
  let end = min(start + RUN, params.n_out);
  let plane = params.H * params.W;
  for (var o = start; o < end; o++) {
    var s = 0.0;
    let base = o * plane;
    for (var j = 0u; j < plane; j++) { s += ax[base + j]; }
    ay[o] = s / f32(plane);
  }
}

@group(0) @binding(1) var<storage, read> ady: array<f32>;
@group(0) @binding(2) var<storage, read_write> adx: array<f32>;

// dx[n, c, h, w] = dy[n, c] / (H W)
@compute @workgroup_size(WG)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let start = thread_index(wid, nwg, lid) * RUN;
  let end = min(start + RUN, params.n_in);
  let plane = params.H * params.W;
  for (var i = start; i < end; i++) { adx[i] = ady[i / plane] / f32(plane); }
}

// ---- max pooling ----------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> mx: array<f32>;
@group(0) @binding(2) var<storage, read_write> my: array<f32>;
// h W + w of each window's first maximum, as an exact small integer in f32.
@group(0) @binding(3) var<storage, read_write> argmax: array<f32>;

// The first maximum in row-major window order (strict >); padding never takes part. A NaN
// wins and stays, as in PyTorch, where the compiler keeps NaN comparisons.
@compute @workgroup_size(WG)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let start = thread_index(wid, nwg, lid) * RUN;
  let end = min(start + RUN, params.n_out);
  for (var o = start; o < end; o++) {
    let ow = o % params.OW;
    let oh = (o / params.OW) % params.OH;
    let nc = o / (params.OW * params.OH);
    let h0 = i32(oh * params.sh) - i32(params.ph);
    let w0 = i32(ow * params.sw) - i32(params.pw);
    let base = nc * params.H * params.W;
    var best = 0.0;
    var arg = -1;
    for (var i = 0u; i < params.kh; i++) {
      let h = h0 + i32(i);
      if (h < 0 || h >= i32(params.H)) { continue; }
      for (var j = 0u; j < params.kw; j++) {
        let w = w0 + i32(j);
        if (w < 0 || w >= i32(params.W)) { continue; }
        let k = h * i32(params.W) + w;
        let v = mx[base + u32(k)];
        if (arg < 0 || v > best || (v != v && best == best)) {
          best = v;
          arg = k;
        }
      }
    }
    my[o] = best;
    argmax[o] = f32(arg);
  }
}

@group(0) @binding(1) var<storage, read> mdy: array<f32>;
@group(0) @binding(2) var<storage, read> margmax: array<f32>;
@group(0) @binding(3) var<storage, read_write> mdx: array<f32>;

// dx[i] = sum of dy over the windows whose first maximum is i, windows in row-major order.
// Windows holding row h are those with oh sh - ph <= h < oh sh - ph + kh.
@compute @workgroup_size(WG)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let start = thread_index(wid, nwg, lid) * RUN;
  let end = min(start + RUN, params.n_in);
  for (var i = start; i < end; i++) {
    let w = i % params.W;
    let h = (i / params.W) % params.H;
    let nc = i / (params.W * params.H);
    let hp = h + params.ph;
    let wp = w + params.pw;
    // First window reaching row h: ceil((hp - kh + 1) / sh), or 0.
    let oh_lo = select(0u, (hp + 1u - params.kh + params.sh - 1u) / params.sh, hp + 1u > params.kh);
    let oh_hi = min(hp / params.sh + 1u, params.OH);
    let ow_lo = select(0u, (wp + 1u - params.kw + params.sw - 1u) / params.sw, wp + 1u > params.kw);
    let ow_hi = min(wp / params.sw + 1u, params.OW);
    let me = f32(h * params.W + w);
    var acc = 0.0;
    for (var oh = oh_lo; oh < oh_hi; oh++) {
      let row = (nc * params.OH + oh) * params.OW;
      for (var ow = ow_lo; ow < ow_hi; ow++) {
        if (margmax[row + ow] == me) { acc += mdy[row + ow]; }
      }
    }
    mdx[i] = acc;
  }
}
