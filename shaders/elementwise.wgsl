// Elementwise kernels: each thread computes a run of VPT consecutive output elements,
// broadcasting by strides.
//
// The TypeScript side merges adjacent dimensions that broadcast alike, so every op is
// described by at most four output dimensions and each operand's stride in them (0 where
// the operand is broadcast). The operation is a pipeline constant (OP), so each op is its
// own specialised pipeline without a branch per element. A run per thread is several times
// faster on CPU drivers (lavapipe: fewer invocations, and the strided path divides once per
// run and then steps along the innermost dimension); GPUs take VPT = 1. Workgroups are
// folded into x and y past the 65535 limit; the linear index is rebuilt from num_workgroups.

override WG: u32 = 256;
override VPT: u32 = 1;     // consecutive elements per thread
override OP: u32 = 0;
// True when every operand is laid out like the output (no broadcasting): the index is
// used as is. The strided path costs three integer divisions per element, which CPU
// drivers (lavapipe) execute one lane at a time.
override CONTIGUOUS: bool = false;

struct Params {
  n: u32,          // number of output elements
  shape: vec4<u32>,     // output shape, outermost first, padded with 1
  a_strides: vec4<u32>,
  b_strides: vec4<u32>,
  alpha: f32,      // scalar operand: scale, shift, slope
  beta: f32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// First element of this thread's run.
fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return ((wid.x + wid.y * nwg.x) * WG + lid) * VPT;
}

// Offset of output element i in an operand with the given strides.
fn offset_of(i: u32, strides: vec4<u32>) -> u32 {
  let s = params.shape;
  var r = i;
  let i3 = r % s.w; r = r / s.w;
  let i2 = r % s.z; r = r / s.z;
  let i1 = r % s.y; r = r / s.y;
  return r * strides.x + i1 * strides.y + i2 * strides.z + i3 * strides.w;
}

// WGSL leaves max() and min() of a NaN to the driver (lavapipe returns the other operand);
// maximum, minimum, relu, addRelu and sign give NaN where an operand is NaN, as the
// references and PyTorch do. Tested on the bits, which no fast-math rewrite can assume away.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// max(x, 0), but NaN stays NaN (relu, addRelu).
fn relu(x: f32) -> f32 {
  return select(max(x, 0.0), x, is_nan(x));
}

// Binary ops. 0 add, 1 sub, 2 mul, 3 div, 4 relu backward (a = dy, b = x),
// 5 maximum, 6 minimum, 7 leaky relu backward (alpha = slope), 8 sigmoid backward
// (a = dy, b = sigmoid(x)), 9 tanh backward (a = dy, b = tanh(x)), 10 a * alpha + b * beta,
// 11 relu(a + b) (a residual connection and its activation in one pass), 12 1 where
// a >= b else 0 (which operand of maximum or minimum takes the gradient).
fn binary(x: f32, y: f32) -> f32 {
  switch OP {
    case 0u: { return x + y; }
    case 1u: { return x - y; }
    case 2u: { return x * y; }
    case 3u: { return x / y; }
    case 4u: { return select(0.0, x, y > 0.0); }
    case 5u: { return select(max(x, y), x + y, is_nan(x) || is_nan(y)); }
    case 6u: { return select(min(x, y), x + y, is_nan(x) || is_nan(y)); }
    case 7u: { return select(x * params.alpha, x, y > 0.0); }
    case 8u: { return x * y * (1.0 - y); }
    case 9u: { return x * (1.0 - y * y); }
    case 10u: { return x * params.alpha + y * params.beta; }
    case 11u: { return relu(x + y); }
    case 12u: { return select(0.0, 1.0, x >= y); }
    default: { return 0.0; }
  }
}

@compute @workgroup_size(WG)
fn binary_main(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i0 = linear_index(wid, nwg, lid);
  if (i0 >= params.n) { return; }
  let i1 = min(i0 + VPT, params.n);
  if (CONTIGUOUS) {
    for (var i = i0; i < i1; i++) { out[i] = binary(a[i], b[i]); }
  } else {
    // Offsets from the full index once, then steps along the innermost dimension; a run
    // that crosses its end starts over from the full index.
    let inner = params.shape.w;
    var k = i0 % inner;
    var oa = offset_of(i0, params.a_strides);
    var ob = offset_of(i0, params.b_strides);
    for (var i = i0; i < i1; i++) {
      if (k == inner) {
        k = 0u;
        oa = offset_of(i, params.a_strides);
        ob = offset_of(i, params.b_strides);
      }
      out[i] = binary(a[oa], b[ob]);
      k++;
      oa += params.a_strides.w;
      ob += params.b_strides.w;
    }
  }
}

// Unary ops. 0 neg, 1 relu, 2 exp, 3 log, 4 sqrt, 5 square, 6 sigmoid, 7 tanh, 8 abs,
// 9 alpha * x + beta (scale and shift), 10 leaky relu (alpha = slope), 11 copy,
// 12 fill with alpha, 13 reciprocal, 14 sign.
fn unary(x: f32) -> f32 {
  switch OP {
    case 0u: { return -x; }
    case 1u: { return relu(x); }
    case 2u: { return exp(x); }
    case 3u: { return log(x); }
    case 4u: { return sqrt(x); }
    case 5u: { return x * x; }
    // Written with exp of a non-positive number so that neither branch overflows.
    case 6u: {
      let e = exp(-abs(x));
      return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
    }
    case 7u: { return tanh(x); }
    case 8u: { return abs(x); }
    case 9u: { return params.alpha * x + params.beta; }
    case 10u: { return select(x * params.alpha, x, x > 0.0); }
    case 11u: { return x; }
    case 12u: { return params.alpha; }
    case 13u: { return 1.0 / x; }
    case 14u: { return select(sign(x), x, is_nan(x)); }
    default: { return 0.0; }
  }
}

@compute @workgroup_size(WG)
fn unary_main(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i0 = linear_index(wid, nwg, lid);
  if (i0 >= params.n) { return; }
  let i1 = min(i0 + VPT, params.n);
  if (CONTIGUOUS) {
    for (var i = i0; i < i1; i++) { out[i] = unary(a[i]); }
  } else {
    // As binary_main: the offset from the full index once, then steps along the innermost
    // dimension, starting over where the run crosses its end.
    let inner = params.shape.w;
    var k = i0 % inner;
    var oa = offset_of(i0, params.a_strides);
    for (var i = i0; i < i1; i++) {
      if (k == inner) {
        k = 0u;
        oa = offset_of(i, params.a_strides);
      }
      out[i] = unary(a[oa]);
      k++;
      oa += params.a_strides.w;
    }
  }
}

// The same ops on operands laid out like the output (no broadcasting) as vec4s: VPT vec4s
// per thread. On lavapipe a storage load or store whose address varies by lane runs as a
// loop over the SIMD lanes, and a vec4 shares one trip of that loop among its 4 floats.
// The host binds each buffer rounded up to 16 bytes (every tensor buffer is padded to 256):
// the last vec4 may read floats past the tensor and writes into its own padding only.
@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;

// This thread's run of vec4s, [first, end), within ceil(n / 4).
fn vec4_run(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec2<u32> {
  let i0 = linear_index(wid, nwg, lid);
  return vec2<u32>(i0, min(i0 + VPT, (params.n + 3u) / 4u));
}

@compute @workgroup_size(WG)
fn binary_vec4(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let r = vec4_run(wid, nwg, lid);
  for (var i = r.x; i < r.y; i++) {
    let x = a4[i];
    let y = b4[i];
    out4[i] = vec4<f32>(binary(x.x, y.x), binary(x.y, y.y), binary(x.z, y.z),
                        binary(x.w, y.w));
  }
}

@compute @workgroup_size(WG)
fn unary_vec4(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let r = vec4_run(wid, nwg, lid);
  for (var i = r.x; i < r.y; i++) {
    let x = a4[i];
    out4[i] = vec4<f32>(unary(x.x), unary(x.y), unary(x.z), unary(x.w));
  }
}
