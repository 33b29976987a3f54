// Float64 reference of SwAV's multi-crop augmentation (shaders/augment.wgsl): resized crop,
// flip, brightness and contrast jitter, Gaussian blur, normalization.

import type { RefTensor } from './tensor.js';

/** One output crop's parameters (the same fields the kernel's Crop struct holds). */
export interface RefCropParams {
  /** Crop box in source pixels: left column, top row, width, height (integers). */
  x0: number;
  y0: number;
  w: number;
  h: number;
  /** Mirror left-right. */
  flip: boolean;
  /** v -> clamp(v b, 0, 1); 1 leaves the crop as is. */
  brightness: number;
  /** v -> clamp((v - mean) c + mean, 0, 1), mean over the crop; 1 leaves it as is. */
  contrast: number;
  /** Apply contrast before brightness (torchvision draws the order per image). */
  contrastFirst: boolean;
  /** Gaussian blur standard deviation in output pixels; 0 = no blur. */
  sigma: number;
}

/**
 * Taps on each side of the blur kernel: ceil(3 sigma), of sigma as float32, since the GPU is
 * handed sigma as float32 and its radius must be the same integer (one tap more or less
 * changes the result by up to exp(-4.5) of the centre weight).
 */
export function blurRadius(sigma: number): number {
  return sigma > 0 ? Math.ceil(3 * Math.fround(sigma)) : 0;
}

/** Bilinear sample of crop box `c` at output pixel (i, j) (align_corners = false, clamped). */
function sample(img: Uint8Array, base: number, width: number, c: RefCropParams, size: number,
  i: number, j: number): number {
  const u = Math.min(Math.max((j + 0.5) * c.w / size - 0.5, 0), c.w - 1);
  const t = Math.min(Math.max((i + 0.5) * c.h / size - 0.5, 0), c.h - 1);
  const fu = Math.floor(u);
  const ft = Math.floor(t);
  const x0 = c.x0 + fu;
  const y0 = c.y0 + ft;
  const x1 = Math.min(x0 + 1, c.x0 + c.w - 1);
  const y1 = Math.min(y0 + 1, c.y0 + c.h - 1);
  const px = (y: number, x: number) => img[base + y * width + x] / 255;
  const ax = u - fu;
  const ay = t - ft;
  const top = px(y0, x0) * (1 - ax) + px(y0, x1) * ax;
  const bottom = px(y1, x0) * (1 - ax) + px(y1, x1) * ax;
  return top * (1 - ay) + bottom * ay;
}

const clamp01 = (v: number) => Math.min(Math.max(v, 0), 1);

/**
 * Augmented crops [params.length, 1, size, size]. Crop n reads image
 * indices[n % indices.length] (crop-major order: every image's first crop, then every image's
 * second crop, ...). Pixels are u8 in `images` (count x height x width), scaled to [0, 1].
 */
export function augmentReference(images: Uint8Array, height: number, width: number,
  indices: ArrayLike<number>, params: readonly RefCropParams[], size: number, mean: number,
  std: number): RefTensor {
  const batch = indices.length;
  const ss = size * size;
  const out = new Float64Array(params.length * ss);
  const v = new Float64Array(ss);
  const tmp = new Float64Array(ss);
  params.forEach((c, n) => {
    const base = indices[n % batch] * height * width;
    let sumRaw = 0;
    let sumBright = 0;
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const x = sample(images, base, width, c, size, i, c.flip ? size - 1 - j : j);
        v[i * size + j] = x;
        sumRaw += x;
        sumBright += clamp01(x * c.brightness);
      }
    }
    const mRaw = sumRaw / ss;
    const mBright = sumBright / ss;
    for (let p = 0; p < ss; p++) {
      if (c.contrastFirst) {
        v[p] = clamp01(clamp01((v[p] - mRaw) * c.contrast + mRaw) * c.brightness);
      } else {
        const u = clamp01(v[p] * c.brightness);
        v[p] = clamp01((u - mBright) * c.contrast + mBright);
      }
    }
    const r = blurRadius(c.sigma);
    if (r > 0) {
      const w = new Float64Array(r + 1);
      let norm = 0;
      for (let k = 0; k <= r; k++) {
        w[k] = Math.exp(-0.5 * (k / c.sigma) ** 2);
        norm += k === 0 ? w[k] : 2 * w[k];
      }
      const at = (k: number) => Math.min(Math.max(k, 0), size - 1);
      for (let i = 0; i < size; i++) {
        for (let j = 0; j < size; j++) {
          let acc = 0;
          for (let k = -r; k <= r; k++) acc += w[Math.abs(k)] * v[i * size + at(j + k)];
          tmp[i * size + j] = acc / norm;
        }
      }
      for (let i = 0; i < size; i++) {
        for (let j = 0; j < size; j++) {
          let acc = 0;
          for (let k = -r; k <= r; k++) acc += w[Math.abs(k)] * tmp[at(i + k) * size + j];
          v[i * size + j] = acc / norm;
        }
      }
    }
    for (let p = 0; p < ss; p++) out[n * ss + p] = (v[p] - mean) / std;
  });
  return { shape: [params.length, 1, size, size], data: out };
}
