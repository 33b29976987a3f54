// Optimizer updates, in place on the parameter and its state: SGD (momentum, Nesterov,
// weight decay), SwAV's LARS (apex LARC around SGD) and Adam.
//
// Updates are one thread per element: nothing is shared between elements. LARS first needs
// ||p|| and ||g||, reduced on the GPU in a fixed order so no value goes back to the CPU:
// small tensors in one workgroup (each thread a strided share, then a tree in workgroup
// memory), large ones first in up to 64 workgroups that write per-thread partial sums
// without barriers (cheap on lavapipe), then the same one-workgroup tree over the
// partials. That workgroup also turns the norms into the trust ratio, which the update
// kernel reads from a two-float buffer. The learning rate is a uniform, so a schedule
// changes it every step without a new pipeline.

override WG: u32 = 256;
override HAS_BUF: u32 = 1;    // momentum != 0: a momentum buffer exists
override NESTEROV: u32 = 0;

struct SgdParams {
  n: u32,
  lr: f32,
  momentum: f32,
  weight_decay: f32,
}

struct NormParams {
  n: u32,          // elements of p and g
  chunk: u32,      // norms_partial: elements per thread
  n_partial: u32,  // lars_coef_partial: partial sums to reduce
  trust: f32,
  weight_decay: f32,
  eps: f32,
}

struct AdamParams {
  n: u32,
  lr_t: f32,           // lr / (1 - beta1^t)
  inv_sqrt_bc2: f32,   // 1 / sqrt(1 - beta2^t)
  beta1: f32,
  one_minus_beta1: f32,
  beta2: f32,
  one_minus_beta2: f32,
  eps: f32,
  weight_decay: f32,
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid;
}

// ---- SGD and the LARS update ------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf: array<f32>;
@group(0) @binding(3) var<storage, read> coef: array<f32>;   // LARS: (ratio, weight decay)
@group(0) @binding(4) var<uniform> sp: SgdParams;

// PyTorch's SGD (dampening 0) from direction d: buf = momentum buf + d (buf starts at 0,
// so the first step stores d, as PyTorch does); p -= lr (buf, or d + momentum buf).
fn sgd_apply(i: u32, d: f32) {
  var step = d;
  if (HAS_BUF == 1u) {
    let b = sp.momentum * buf[i] + d;
    buf[i] = b;
    if (NESTEROV == 1u) { step = d + sp.momentum * b; } else { step = b; }
  }
  param[i] = param[i] - sp.lr * step;
}

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= sp.n) { return; }
  sgd_apply(i, grad[i] + sp.weight_decay * param[i]);
}

// LARC's adapted gradient (g + wd p) ratio; coef = (1, 0) where a norm was 0.
@compute @workgroup_size(WG)
fn lars(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= sp.n) { return; }
  sgd_apply(i, (grad[i] + coef[1] * param[i]) * coef[0]);
}

// ---- LARS norms and trust ratio ---------------------------------------------------

@group(0) @binding(0) var<storage, read> np_p: array<f32>;
@group(0) @binding(1) var<storage, read> np_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> coef_out: array<f32>;
@group(0) @binding(4) var<uniform> np: NormParams;

var<workgroup> tree: array<vec2<f32>, WG>;

// Workgroup w covers WG * chunk elements; its thread t sums every WG-th from t (so
// neighbouring threads read neighbouring elements) and writes (sum p^2, sum g^2).
@compute @workgroup_size(WG)
fn norms_partial(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  let base = w * WG * np.chunk + lid;
  var acc = vec2<f32>(0.0);
  for (var j = 0u; j < np.chunk; j++) {
    let i = base + j * WG;
    if (i < np.n) {
      let pv = np_p[i];
      let gv = np_g[i];
      acc += vec2<f32>(pv * pv, gv * gv);
    }
  }
  partials[w * WG + lid] = acc;
}

// Sums the workgroup's per-thread values in a fixed tree, then, in thread 0:
// ratio = trust ||p|| / (||g|| + wd ||p|| + eps) when both norms are nonzero, with the
// weight decay folded into the adapted gradient; else the gradient passes unchanged and
// without weight decay (LARC skips the block, and SGD's own weight decay was set to 0).
fn finish_coef(lid: u32, acc: vec2<f32>) {
  tree[lid] = acc;
  workgroupBarrier();
  for (var width = WG / 2u; width > 0u; width /= 2u) {
    if (lid < width) { tree[lid] += tree[lid + width]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let pn = sqrt(tree[0].x);
    let gn = sqrt(tree[0].y);
    if (pn > 0.0 && gn > 0.0) {
      coef_out[0] = np.trust * pn / (gn + np.weight_decay * pn + np.eps);
      coef_out[1] = np.weight_decay;
    } else {
      coef_out[0] = 1.0;
      coef_out[1] = 0.0;
    }
  }
}

// Small tensors: the whole reduction in one workgroup, straight from p and g.
@compute @workgroup_size(WG)
fn lars_coef_direct(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < np.n; i += WG) {
    let pv = np_p[i];
    let gv = np_g[i];
    acc += vec2<f32>(pv * pv, gv * gv);
  }
  finish_coef(lid, acc);
}

// Large tensors: the one-workgroup tree over norms_partial's sums.
@compute @workgroup_size(WG)
fn lars_coef_partial(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < np.n_partial; i += WG) { acc += partials[i]; }
  finish_coef(lid, acc);
}

// ---- Adam -------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> a_param: array<f32>;
@group(0) @binding(1) var<storage, read> a_grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> a_m: array<f32>;
@group(0) @binding(3) var<storage, read_write> a_v: array<f32>;
@group(0) @binding(4) var<uniform> ap: AdamParams;

// PyTorch Adam (L2 weight decay in the gradient, not AdamW's):
// m = b1 m + (1 - b1) d, v = b2 v + (1 - b2) d^2, p -= lr_t m / (sqrt(v) / sqrt(bc2) + eps).
@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= ap.n) { return; }
  let p = a_param[i];
  let d = a_grad[i] + ap.weight_decay * p;
  let m = ap.beta1 * a_m[i] + ap.one_minus_beta1 * d;
  let v = ap.beta2 * a_v[i] + ap.one_minus_beta2 * d * d;
  a_m[i] = m;
  a_v[i] = v;
  a_param[i] = p - ap.lr_t * (m / (sqrt(v) * ap.inv_sqrt_bc2 + ap.eps));
}
