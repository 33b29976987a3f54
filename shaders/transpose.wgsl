// Swaps the last two axes: out[b, c, r] = x[b, r, c] for x of shape [batch, rows, cols].
//
// A layout change with no arithmetic, so one invocation per output element keeps it
// simple: writes are contiguous and reads stride by `cols`. The linear workgroup index is
// rebuilt from num_workgroups because the host folds the count into x and y past 65535.

override WG: u32 = 64;

struct Params {
  rows: u32,
  cols: u32,
  total: u32,   // batch * rows * cols
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= params.total) { return; }
  let plane = params.rows * params.cols;
  let bi = i / plane;
  let rest = i % plane;
  // Output index rest = c * rows + r.
  let c = rest / params.rows;
  let r = rest % params.rows;
  out[i] = x[bi * plane + r * params.cols + c];
}
