// Pooling in NCHW: global average pooling [N, C, H, W] -> [N, C] and 2-D max pooling with
// stride and -inf padding, each with its backward.
//
// Every thread walks a run of values in order: RUN consecutive outputs or inputs for the
// average, one row of outputs (forward) or inputs (backward) for the max. On lavapipe,
// which runs a workgroup as SIMD lanes on one core, threads that loop were 5-8x faster
// than one thread per element, and indices are stepped along the run rather than divided
// out per element: vector integer division is scalarised there, and it dominated a first
// max-pool backward with one thread per input element (k3 s2 on [128, 16, 28, 28]: 240 ms
// against 42 ms now). No atomics anywhere: max pooling saves the flat H W index of each
// window's first maximum, and its backward has one thread own each input row, adding the
// dy of the windows over that row in window order -- deterministic, where a scatter from
// the windows would race on overlapping windows.

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

// On the bits: `v != v` is folded to false by the driver (lavapipe), dropping the NaN.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

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

// dx[n, c, h, w] = dy[n, c] / (H W); the plane index is stepped, not divided out.
@compute @workgroup_size(WG)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let start = thread_index(wid, nwg, lid) * RUN;
  if (start >= params.n_in) { return; }
  let end = min(start + RUN, params.n_in);
  let plane = params.H * params.W;
  var row = start / plane;
  var p = start % plane;
  var g = ady[row] / f32(plane);
  for (var i = start; i < end; i++) {
    adx[i] = g;
    p++;
    if (p == plane && i + 1u < end) {
      p = 0u;
      row++;
      g = ady[row] / f32(plane);
    }
  }
}

// ---- max pooling ----------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> mx: array<f32>;
@group(0) @binding(2) var<storage, read_write> my: array<f32>;
// h W + w of each window's first maximum, as an exact small integer in f32.
@group(0) @binding(3) var<storage, read_write> argmax: array<f32>;

// One thread per output row (n, c, oh), its windows in order. The first maximum in
// row-major window order (strict >); padding never takes part. A NaN wins and stays, as in
// PyTorch.
@compute @workgroup_size(WG)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let r = thread_index(wid, nwg, lid);
  if (r >= params.N * params.C * params.OH) { return; }
  let nc = r / params.OH;
  let h0 = i32((r % params.OH) * params.sh) - i32(params.ph);
  let base = nc * params.H * params.W;
  var w0 = -i32(params.pw);
  for (var ow = 0u; ow < params.OW; ow++) {
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
        if (arg < 0 || v > best || (is_nan(v) && !is_nan(best))) {
          best = v;
          arg = k;
        }
      }
    }
    my[r * params.OW + ow] = best;
    argmax[r * params.OW + ow] = f32(arg);
    w0 += i32(params.sw);
  }
}

@group(0) @binding(1) var<storage, read> mdy: array<f32>;
@group(0) @binding(2) var<storage, read> margmax: array<f32>;
@group(0) @binding(3) var<storage, read_write> mdx: array<f32>;

// One thread per input row (n, c, h): it owns that row of dx, zeroes it, then walks the
// windows that overlap the row in row-major order and adds each window's dy at its saved
// maximum when that falls in the row. dx[i] = sum of dy over the windows whose first
// maximum is i, in window order; no other thread writes the row, so there is no race.
// Window oh covers rows [oh sh - ph, oh sh - ph + kh).
@compute @workgroup_size(WG)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let r = thread_index(wid, nwg, lid);
  if (r >= params.N * params.C * params.H) { return; }
  let nc = r / params.H;
  let h = r % params.H;
  let hp = h + params.ph;
  // First window reaching row h: ceil((hp - kh + 1) / sh), or 0; last: floor(hp / sh).
  let oh_lo = select(0u, (hp + params.sh - params.kh) / params.sh, hp + 1u > params.kh);
  let oh_hi = min(hp / params.sh + 1u, params.OH);
  let out_row = r * params.W;
  for (var w = 0u; w < params.W; w++) { mdx[out_row + w] = 0.0; }
  // Flat plane indices of row h.
  let lo = h * params.W;
  let hi = lo + params.W;
  let plane = nc * params.H * params.W;
  for (var oh = oh_lo; oh < oh_hi; oh++) {
    let row = (nc * params.OH + oh) * params.OW;
    for (var ow = 0u; ow < params.OW; ow++) {
      let k = u32(margmax[row + ow]);
      if (k >= lo && k < hi) { mdx[plane + k] += mdy[row + ow]; }
    }
  }
}
