// SwAV's multi-crop augmentation of u8 grayscale images: for each output crop, resize a
// box of the source image to size x size (bilinear), mirror it, jitter brightness and
// contrast, optionally blur it with a Gaussian, and normalize it.
//
// One workgroup makes one crop, because contrast needs the crop's mean and the blur
// needs its neighbours: both are crop-wide, and within a workgroup they cost a barrier
// instead of a second dispatch. Each invocation walks pixels lid, lid + WG, ... in a
// fixed order and the mean adds the WG partial sums in index order, so the result never
// depends on timing (no atomics). The image is written to `out` first, blurred through
// `tmp` (a scratch image of the same size) and back, so any crop size fits; storage
// barriers order those passes. Workgroups past 65535 are folded into y, so the crop
// index is rebuilt from num_workgroups.

override WG: u32 = 64;
// Largest blur radius (taps each side); the TypeScript side checks radius against it.
override MAX_RADIUS: u32 = 32;

// One output crop. Layout mirrored by CROP_FIELDS in src/ops/augment.ts (a test
// compares the two through reflection). All f32 so one Float32Array holds a batch.
struct Crop {
  x0: f32,              // crop box in source pixels: left column (integer)
  y0: f32,              // top row (integer)
  w: f32,               // width in pixels (integer >= 1)
  h: f32,               // height in pixels (integer >= 1)
  flip: f32,            // 1: mirror left-right, 0: not
  brightness: f32,      // factor b: v -> clamp(v b); 1 = none
  contrast: f32,        // factor c: v -> clamp((v - mean) c + mean); 1 = none
  contrast_first: f32,  // 1: contrast before brightness, 0: brightness first
  sigma: f32,           // Gaussian blur standard deviation in output pixels
  radius: f32,          // taps each side, ceil(3 sigma) from the CPU; 0 = no blur
}

struct Params {
  batch: u32,       // images per crop index; crop n takes image indices[n % batch]
  n_crops: u32,     // crops in this dispatch (batch x crops per image)
  size: u32,        // output side S
  height: u32,      // source image height
  width: u32,       // source image width
  n_images: u32,    // images in the set, to reject bad indices
  norm_mean: f32,   // normalization: (v - norm_mean) / norm_std
  norm_std: f32,
}

// The image set as u8 pixels packed four per word, little-endian (pixel p is byte p % 4
// of word p / 4): 60000 Fashion-MNIST images fit one binding this way, not as f32.
@group(0) @binding(0) var<storage, read> pixels: array<u32>;
// Image index of each batch entry, as f32 (exact below 2^24).
@group(0) @binding(1) var<storage, read> indices: array<f32>;
@group(0) @binding(2) var<storage, read> crops: array<Crop>;
// [n_crops, 1, S, S]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The blur's horizontal pass, same shape as out.
@group(0) @binding(4) var<storage, read_write> tmp: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// Per-invocation partial sums of the crop: x raw, y after brightness.
var<workgroup> partial: array<vec2<f32>, WG>;
// Unnormalized Gaussian weights exp(-k^2 / (2 sigma^2)) for k = 0..radius.
var<workgroup> taps: array<f32, MAX_RADIUS + 1u>;

fn pixel(p: u32) -> f32 {
  let word = pixels[p >> 2u];
  return f32((word >> ((p & 3u) * 8u)) & 0xffu) / 255.0;
}

// Bilinear sample of the crop box at output pixel (i, j), as torchvision resizes a crop
// (align_corners = False): source coordinate (j + 0.5) w / S - 0.5, clamped to the box.
fn sample(base: u32, c: Crop, i: u32, j: u32) -> f32 {
  let s = f32(params.size);
  let u = clamp((f32(j) + 0.5) * c.w / s - 0.5, 0.0, c.w - 1.0);
  let t = clamp((f32(i) + 0.5) * c.h / s - 0.5, 0.0, c.h - 1.0);
  let fu = floor(u);
  let ft = floor(t);
  let x0 = u32(c.x0 + fu);
  let y0 = u32(c.y0 + ft);
  let x1 = min(x0 + 1u, u32(c.x0 + c.w) - 1u);
  let y1 = min(y0 + 1u, u32(c.y0 + c.h) - 1u);
  let wd = params.width;
  let top = mix(pixel(base + y0 * wd + x0), pixel(base + y0 * wd + x1), u - fu);
  let bottom = mix(pixel(base + y1 * wd + x0), pixel(base + y1 * wd + x1), u - fu);
  return mix(top, bottom, t - ft);
}

// Brightness and contrast in the crop's order; m_raw is the mean before any jitter,
// m_bright the mean after brightness (torchvision takes the mean of its current input).
fn jitter(v: f32, c: Crop, m_raw: f32, m_bright: f32) -> f32 {
  if (c.contrast_first > 0.5) {
    let u = clamp((v - m_raw) * c.contrast + m_raw, 0.0, 1.0);
    return clamp(u * c.brightness, 0.0, 1.0);
  }
  let u = clamp(v * c.brightness, 0.0, 1.0);
  return clamp((u - m_bright) * c.contrast + m_bright, 0.0, 1.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let n = wid.x + wid.y * nwg.x;
  if (n >= params.n_crops) { return; }
  let c = crops[n];
  let s = params.size;
  let ss = s * s;
  let base = n * ss;

  // An index outside the set (possible only when indices come as a tensor, which the CPU
  // cannot check without a readback) makes the whole crop NaN rather than wrong pixels.
  let fi = indices[n % params.batch];
  if (!(fi >= 0.0 && fi < f32(params.n_images) && fi == floor(fi))) {
    let nan = bitcast<f32>(0x7fc00000u | (lid & 0u));
    for (var p = lid; p < ss; p += WG) { out[base + p] = nan; }
    return;
  }
  let src = u32(fi) * params.height * params.width;

  // Pass 1: resample and mirror; keep the raw value, sum it and its brightened value.
  var sums = vec2<f32>(0.0);
  for (var p = lid; p < ss; p += WG) {
    let i = p / s;
    let j = p % s;
    let jj = select(j, s - 1u - j, c.flip > 0.5);
    let v = sample(src, c, i, jj);
    out[base + p] = v;
    sums += vec2<f32>(v, clamp(v * c.brightness, 0.0, 1.0));
  }
  partial[lid] = sums;
  let radius = u32(c.radius);
  for (var k = lid; k <= radius; k += WG) {
    let x = f32(k) / c.sigma;
    taps[k] = exp(-0.5 * x * x);
  }
  workgroupBarrier();
  storageBarrier();
  var total = vec2<f32>(0.0);
  for (var t = 0u; t < WG; t++) { total += partial[t]; }
  let m = total / f32(ss);

  if (radius == 0u) {
    for (var p = lid; p < ss; p += WG) {
      out[base + p] = (jitter(out[base + p], c, m.x, m.y) - params.norm_mean) / params.norm_std;
    }
    return;
  }

  // Separable blur with edge pixels repeated; each pass divides by the weights' sum.
  var norm = taps[0];
  for (var k = 1u; k <= radius; k++) { norm += 2.0 * taps[k]; }
  let r = i32(radius);
  let last = i32(s) - 1;
  for (var p = lid; p < ss; p += WG) {
    let row = base + (p / s) * s;
    let j = i32(p % s);
    var acc = 0.0;
    for (var k = -r; k <= r; k++) {
      let v = out[row + u32(clamp(j + k, 0, last))];
      acc += taps[abs(k)] * jitter(v, c, m.x, m.y);
    }
    tmp[base + p] = acc / norm;
  }
  storageBarrier();
  for (var p = lid; p < ss; p += WG) {
    let i = i32(p / s);
    let j = p % s;
    var acc = 0.0;
    for (var k = -r; k <= r; k++) {
      acc += taps[abs(k)] * tmp[base + u32(clamp(i + k, 0, last)) * s + j];
    }
    out[base + p] = (acc / norm - params.norm_mean) / params.norm_std;
  }
}
