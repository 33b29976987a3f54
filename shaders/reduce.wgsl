// Strided reductions: out[o] = scale * reduce_r in[offset(o) + offset(r)], and the gradient
// of max (max_grad).
//
// The TypeScript side describes the kept dimensions (o) and the reduced dimensions (r)
// by at most four sizes and input strides each. One thread owns one (output, chunk)
// pair and loops over its chunk in a fixed order, so results never depend on timing;
// long reductions with few outputs are split into chunks and finished by a second
// dispatch of the same kernel over the partial results.

override WG: u32 = 64;
override OP: u32 = 0;   // 0 sum, 1 max

struct Params {
  n_out: u32,            // number of outputs
  n_red: u32,            // elements reduced per output
  chunk: u32,            // elements per thread
  n_chunks: u32,
  out_shape: vec4<u32>,
  out_strides: vec4<u32>,
  red_shape: vec4<u32>,
  red_strides: vec4<u32>,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn offset_of(i: u32, shape: vec4<u32>, strides: vec4<u32>) -> u32 {
  var r = i;
  let i3 = r % shape.w; r = r / shape.w;
  let i2 = r % shape.z; r = r / shape.z;
  let i1 = r % shape.y; r = r / shape.y;
  return r * strides.x + i1 * strides.y + i2 * strides.z + i3 * strides.w;
}

fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// -infinity, made at run time: a constant expression may not be infinite.
fn neg_inf() -> f32 {
  var bits = 0xff800000u;
  return bitcast<f32>(bits);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  if (t >= params.n_out * params.n_chunks) { return; }
  let o = t / params.n_chunks;
  let c = t % params.n_chunks;
  let base = offset_of(o, params.out_shape, params.out_strides);
  let start = c * params.chunk;
  let end = min(start + params.chunk, params.n_red);
  // max starts from -infinity, so that a set of -infinities has that maximum.
  var acc = select(0.0, neg_inf(), OP == 1u);
  // The offset of r from its full index once, then steps along the innermost reduced
  // dimension (an index's divisions cost more than the add on lavapipe, and on GPUs).
  let inner = params.red_shape.w;
  var k = start % inner;
  var at = base + offset_of(start, params.red_shape, params.red_strides);
  for (var r = start; r < end; r++) {
    if (k == inner) {
      k = 0u;
      at = base + offset_of(r, params.red_shape, params.red_strides);
    }
    let v = x[at];
    // max keeps the first NaN (WGSL leaves max() of a NaN to the driver; lavapipe drops it).
    if (OP == 1u) { acc = select(max(acc, v), acc + v, is_nan(acc) || is_nan(v)); }
    else { acc += v; }
    k++;
    at += params.red_strides.w;
  }
  if (OP == 0u) { acc *= params.scale; }
  out[t] = acc;
}

// The gradient of y = max over the reduced dimensions: dx = dy[o] at the first r (in the
// order the forward reads them, row-major over the reduced axes) where x equals y[o] (or
// both are NaN), zero elsewhere (the host clears dx first). Ties send the whole gradient to
// that first maximum, as argmax would pick it. One thread per output scans its elements in
// order.
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;

@compute @workgroup_size(WG)
fn max_grad(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let o = (wid.x + wid.y * nwg.x) * WG + lid;
  if (o >= params.n_out) { return; }
  let base = offset_of(o, params.out_shape, params.out_strides);
  let m = y[o];
  let inner = params.red_shape.w;
  var k = 0u;
  var at = base;
  for (var r = 0u; r < params.n_red; r++) {
    if (k == inner) {
      k = 0u;
      at = base + offset_of(r, params.red_shape, params.red_strides);
    }
    if (x[at] == m || (is_nan(m) && is_nan(x[at]))) {
      out[at] = dy[o];
      return;
    }
    k++;
    at += params.red_strides.w;
  }
}
