// Row-wise L2 normalisation of x [N, D]: y = x / max(||x_row||, eps), and its backward
// dx = (dy - y <y, dy>) / ||x_row|| (or dy / eps where the norm fell below eps).
//
// One thread owns one row and walks it in order: the sums are sequential, so results never
// depend on timing, and lavapipe, which runs a workgroup as SIMD lanes on one core, runs
// threads that loop over their elements several times faster than one thread per element
// plus a workgroup reduction (measured on batch norm's kernels). SwAV's rows are short
// (D = 128; N = the batch, or the prototypes).
// The squares are summed unscaled, as PyTorch does: |x| past ~1e19 overflows to inf.

override WG: u32 = 64;

struct Params {
  N: u32,      // rows
  D: u32,      // row length
  eps: f32,    // floor of the norm
}

@group(0) @binding(0) var<uniform> params: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// ||x_row|| before the floor, saved for the backward.
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;

fn row_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// On the bits, which no fast-math rewrite can assume away.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let r = row_index(wid, nwg, lid);
  if (r >= params.N) { return; }
  let base = r * params.D;
  var s = 0.0;
  for (var j = 0u; j < params.D; j++) {
    let v = x[base + j];
    s += v * v;
  }
  let n = sqrt(s);
  // A NaN norm stays NaN (WGSL leaves max() of a NaN to the driver; lavapipe returns eps).
  let d = select(max(n, params.eps), n, is_nan(n));
  for (var j = 0u; j < params.D; j++) { y[base + j] = x[base + j] / d; }
  norm[r] = n;
}

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> y_saved: array<f32>;
@group(0) @binding(3) var<storage, read> norm_saved: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// Where the norm is at least eps the floor is inactive: dx = (dy - y <y, dy>) / n. Below
// it the denominator is the constant eps: dx = dy / eps.
@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let r = row_index(wid, nwg, lid);
  if (r >= params.N) { return; }
  let base = r * params.D;
  let n = norm_saved[r];
  if (n < params.eps) {
    for (var j = 0u; j < params.D; j++) { dx[base + j] = dy[base + j] / params.eps; }
    return;
  }
  var dot = 0.0;
  for (var j = 0u; j < params.D; j++) { dot += y_saved[base + j] * dy[base + j]; }
  for (var j = 0u; j < params.D; j++) {
    dx[base + j] = (dy[base + j] - y_saved[base + j] * dot) / n;
  }
}
