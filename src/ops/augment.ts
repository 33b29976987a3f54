// SwAV's multi-crop augmentation on the GPU (shaders/augment.wgsl): resized crops of u8
// images with flip, brightness and contrast jitter, Gaussian blur and normalization.

import type { RefCropParams } from '../reference/augment.js';
import { Tensor } from '../graph/tensor.js';
import { checkFinite, checkFlag, checkInt, checkKeys, checkOptions, checkTensor, fail,
  optionKeys, showValue } from './util.js';

/** Invocations per workgroup; one workgroup makes one crop. */
const WG = 64;
/** Largest blur radius in taps each side (the shader's MAX_RADIUS override). */
export const MAX_BLUR_RADIUS = 32;
/** Image indices travel as f32, exact up to 2^24. */
const MAX_IMAGES = 2 ** 24;

/**
 * The members of the shader's `Crop` struct, in order, all f32: a packed crop is
 * CROP_FLOATS consecutive floats. test/ops/augment.test.ts checks this list against the
 * struct's reflected layout, so the two cannot drift apart silently.
 */
export const CROP_FIELDS = [
  'x0', 'y0', 'w', 'h', 'flip', 'brightness', 'contrast', 'contrast_first', 'sigma', 'radius',
] as const;
export const CROP_FLOATS = CROP_FIELDS.length;
const F = Object.fromEntries(CROP_FIELDS.map((k, i) => [k, i])) as
  Record<(typeof CROP_FIELDS)[number], number>;

/** One output crop's parameters: the fields of the kernel's Crop struct (see the reference). */
export type CropParams = RefCropParams;

/**
 * An image set resident on the GPU as packed u8 pixels (src/data/gpu-images.ts makes one).
 * `tensor` holds BYTES, four pixels per 32-bit element, not float values.
 */
export interface PackedImages {
  readonly tensor: Tensor;
  readonly count: number;
  readonly height: number;
  readonly width: number;
}

export interface MultiCropOptions {
  /** Output side S: crops are [N, 1, S, S]. */
  size: number;
  /** Normalization (v - mean) / std after augmentation; default 0 and 1. */
  mean?: number;
  std?: number;
}

const OPTIONS = { call: 'multiCrop(images, indices, params, {})', optional: false,
  keys: optionKeys<MultiCropOptions>({ size: true, mean: true, std: true }) };
const CROP_KEYS = optionKeys<CropParams>({ x0: true, y0: true, w: true, h: true, flip: true,
  brightness: true, contrast: true, contrastFirst: true, sigma: true });

/** Blur taps each side: ceil(3 sigma) of the float32 sigma the kernel is given. */
function radiusOf(sigma: number): number {
  return sigma > 0 ? Math.ceil(3 * Math.fround(sigma)) : 0;
}

function checkCrop(op: string, n: number, c: CropParams, height: number, width: number): void {
  const at = `crop ${n}`;
  checkKeys(op, at, c, CROP_KEYS);
  checkFlag(op, `${at}: flip`, c.flip, false);
  checkFlag(op, `${at}: contrastFirst`, c.contrastFirst, false);
  for (const k of ['x0', 'y0', 'w', 'h'] as const) {
    if (!Number.isInteger(c[k])) fail(op, `${at}: ${k} must be an integer, got ${showValue(c[k])}`);
  }
  if (c.w < 1 || c.h < 1 || c.x0 < 0 || c.y0 < 0 || c.x0 + c.w > width ||
    c.y0 + c.h > height) {
    fail(op, `${at}: box x0=${c.x0} y0=${c.y0} w=${c.w} h=${c.h} must lie inside the ` +
      `${height}x${width} image with w, h >= 1`);
  }
  checkFinite(op, `${at}: brightness`, c.brightness, (v) => v >= 0, 'must be >= 0');
  checkFinite(op, `${at}: contrast`, c.contrast, (v) => v >= 0, 'must be >= 0');
  checkFinite(op, `${at}: sigma`, c.sigma, (v) => v >= 0, 'must be >= 0');
  if (radiusOf(c.sigma) > MAX_BLUR_RADIUS) {
    fail(op, `${at}: sigma ${c.sigma} needs a blur radius of ${radiusOf(c.sigma)} taps, ` +
      `past the kernel's ${MAX_BLUR_RADIUS} (ceil(3 sigma) <= ${MAX_BLUR_RADIUS})`);
  }
}

/**
 * Packs crops for the kernel (CROP_FLOATS floats each), checking each against an image of
 * height x width. The blur radius is computed here, once, from the float32 sigma.
 */
export function packCrops(params: readonly CropParams[], height: number, width: number,
  op = 'packCrops', into?: Float32Array): Float32Array {
  const out = into ?? new Float32Array(params.length * CROP_FLOATS);
  if (out.length !== params.length * CROP_FLOATS) {
    fail(op, `${params.length} crops need ${params.length * CROP_FLOATS} floats, the ` +
      `destination holds ${out.length}`);
  }
  params.forEach((c, n) => {
    checkCrop(op, n, c, height, width);
    const o = n * CROP_FLOATS;
    out[o + F.x0] = c.x0;
    out[o + F.y0] = c.y0;
    out[o + F.w] = c.w;
    out[o + F.h] = c.h;
    out[o + F.flip] = c.flip ? 1 : 0;
    out[o + F.brightness] = c.brightness;
    out[o + F.contrast] = c.contrast;
    out[o + F.contrast_first] = c.contrastFirst ? 1 : 0;
    out[o + F.sigma] = c.sigma;
    out[o + F.radius] = radiusOf(c.sigma);
  });
  return out;
}

/** The crops of a packed array (values as float32 holds them). */
export function unpackCrops(packed: Float32Array): CropParams[] {
  if (packed.length % CROP_FLOATS !== 0) {
    fail('unpackCrops', `${packed.length} floats is not a whole number of ${CROP_FLOATS}-float ` +
      `crops`);
  }
  const out: CropParams[] = [];
  for (let o = 0; o < packed.length; o += CROP_FLOATS) {
    out.push({
      x0: packed[o + F.x0], y0: packed[o + F.y0], w: packed[o + F.w], h: packed[o + F.h],
      flip: packed[o + F.flip] > 0.5, brightness: packed[o + F.brightness],
      contrast: packed[o + F.contrast], contrastFirst: packed[o + F.contrast_first] > 0.5,
      sigma: packed[o + F.sigma],
    });
  }
  return out;
}

function checkImages(op: string, images: PackedImages): void {
  if (!images || typeof images !== 'object') fail(op, `images must be GpuImages`);
  checkTensor(op, 'images.tensor', images.tensor);
  const { count, height, width } = images;
  checkInt(op, 'images.count', count, 1);
  checkInt(op, 'images.height', height, 1);
  checkInt(op, 'images.width', width, 1);
  if (count > MAX_IMAGES) fail(op, `images.count ${count} is past 2^24, the f32 index limit`);
  const words = Math.ceil((count * height * width) / 4);
  if (images.tensor.size !== words) {
    fail(op, `images.tensor ${images.tensor.describe()} should hold ${count}x${height}x${width} ` +
      `u8 pixels packed four per element (${words} elements)`);
  }
}

/**
 * Records one dispatch that makes crops [N, 1, size, size] from `images`: crop n resizes
 * params[n]'s box of image indices[n % B] (B = number of indices), so N = B x crops per
 * image, ordered crop-major (every image's first crop, then every image's second, ...),
 * as SwAV's loader yields one [B, 1, S, S] batch per crop.
 *
 * `indices` and `params` may be tensors (indices [B] as f32 values; params
 * [N, CROP_FLOATS] packed as packCrops does) that the caller rewrites each step, or plain
 * arrays, uploaded into new leaves (convenient, but an allocation per call). Indices in a
 * tensor cannot be checked without a readback: a crop of an index outside the set comes
 * out NaN. No gradient flows through augmentation.
 *
 * Against torchvision: resizing is its tensor bilinear (align_corners=False) without
 * antialiasing. PIL, which SwAV's loader uses, antialiases only when it shrinks, and
 * Fashion-MNIST's crops are enlarged (a global crop of 14-100% of 28x28 goes to 28x28, a
 * local one of 5-14%, at most 12 pixels wide, to 12x12), so the filters agree there. PIL also
 * rounds to u8 after the resize and after each jitter; this kernel keeps f32 throughout.
 */
export function multiCrop(images: PackedImages, indices: Tensor | ArrayLike<number>,
  params: Tensor | Float32Array | readonly CropParams[], opts: MultiCropOptions): Tensor {
  const op = 'multiCrop';
  checkImages(op, images);
  checkOptions(op, arguments, 3, OPTIONS);
  const engine = images.tensor.engine;
  const size = checkInt(op, 'size', opts.size, 1);
  const mean = checkFinite(op, 'mean', opts.mean ?? 0);
  const std = checkFinite(op, 'std', opts.std ?? 1, (v) => v > 0, 'must be > 0');
  const { count, height, width } = images;

  let idx: Tensor;
  if (indices instanceof Tensor) {
    if (indices.rank !== 1) fail(op, `indices must be [B], got ${indices.describe()}`);
    idx = indices;
  } else {
    if (!indices || typeof indices.length !== 'number' || indices.length < 1) {
      fail(op, 'indices must be a non-empty array of image indices or a tensor');
    }
    for (let b = 0; b < indices.length; b++) {
      const v = indices[b];
      if (!Number.isInteger(v) || v < 0 || v >= count) {
        fail(op, `indices[${b}] = ${showValue(v)} is not an image index in [0, ${count})`);
      }
    }
    idx = engine.tensor(Float32Array.from(indices), [indices.length], { name: 'crop indices' });
  }
  const batch = idx.size;

  let crops: Tensor;
  let blurs = true;
  if (params instanceof Tensor) {
    if (params.rank !== 2 || params.shape[1] !== CROP_FLOATS) {
      fail(op, `params must be [N, ${CROP_FLOATS}] packed crops, got ${params.describe()}`);
    }
    crops = params;
  } else {
    // A packed array is unpacked and packed again, which checks it and recomputes radius.
    const list = params instanceof Float32Array ? unpackCrops(params) :
      params as readonly CropParams[];
    if (!Array.isArray(list) || list.length < 1) fail(op, 'params holds no crops');
    const packed = packCrops(list, height, width, op);
    blurs = list.some((c) => c.sigma > 0);
    crops = engine.tensor(packed, [list.length, CROP_FLOATS], { name: 'crop params' });
  }
  const nCrops = crops.shape[0];
  if (nCrops % batch !== 0) {
    fail(op, `${nCrops} crops is not a multiple of the ${batch} indices (crop n takes ` +
      `image indices[n % ${batch}])`);
  }
  if (idx.engine !== engine || crops.engine !== engine) {
    fail(op, 'images, indices and params belong to different engines');
  }
  const outBytes = nCrops * size * size * 4;

  const [out] = engine.record({
    op, inputs: [images.tensor, idx, crops], outputs: [[nCrops, 1, size, size]],
    attrs: { size, mean, std }, differentiable: false,
    encode: (ctx) => ctx.dispatch({
      shader: 'augment', overrides: { WG, MAX_RADIUS: MAX_BLUR_RADIUS },
      bindings: {
        pixels: ctx.input(0), indices: ctx.input(1), crops: ctx.input(2),
        out: ctx.output(0), tmp: ctx.scratch(blurs ? outBytes : 4),
      },
      uniforms: { batch, n_crops: nCrops, size, height, width, n_images: count,
        norm_mean: mean, norm_std: std },
      workgroups: nCrops,
    }),
  });
  return out;
}
