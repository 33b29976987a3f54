// Multi-crop augmentation on the GPU against its float64 reference: crop boxes on every
// edge, flips, jitter in both orders, blur up to the largest radius, sizes 1 and primes,
// more crops than one dispatch dimension holds, and the step loader's reuse of its leaves.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';
import { shaderDir, type Tensor } from '../../src/node.js';
import { GpuImages, MultiCropLoader } from '../../src/data/gpu-images.js';
import { EpochSampler } from '../../src/data/sampler.js';
import { CROP_FIELDS, CROP_FLOATS, MAX_BLUR_RADIUS, multiCrop, packCrops, unpackCrops,
  type CropParams } from '../../src/ops/augment.js';
import { augmentReference } from '../../src/reference/augment.js';
import { TOL, type Tolerance } from '../../src/reference/compare.js';
import { mulberry32 } from '../../src/reference/random.js';
import { expectClose, useEngine } from '../helpers/gpu.js';

const engine = useEngine();
const U = 2 ** -24;

/** A synthetic u8 image set: random pixels, with some pure 0 and 255 to exercise clamps. */
function makeImages(count: number, height: number, width: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: count * height * width }, () => {
    const r = rng();
    return r < 0.1 ? 0 : r > 0.9 ? 255 : Math.floor(rng() * 256);
  });
}

const plain = (box: Partial<CropParams>): CropParams => ({
  x0: 0, y0: 0, w: 1, h: 1, flip: false, brightness: 1, contrast: 1, contrastFirst: false,
  sigma: 0, ...box,
});

/**
 * What float32 costs against the float64 reference. The source coordinate
 * (j + 0.5) w / S - 0.5 takes about 4 roundings of a number below the image side L, each
 * at most 2^-23 L, so ~8 u L; bilinear weights are linear in it and neighbouring pixels
 * differ by at most 1, so the sampled value moves as much. Brightness and contrast
 * multiply that by their factors (gain); the crop mean is a sum of S^2 terms
 * (TOL.f32Reduction's sqrt-n bound); blur and mix add a few dozen roundings of values
 * <= 1; normalization divides everything by std. Plus f32Elementwise for the final ops.
 */
function augmentTol(side: number, size: number, gain: number, std: number): Tolerance {
  const sample = 8 * U * side;
  const meanErr = 4 * size * U;
  const atol = (gain * (sample + meanErr) + 64 * U) / std;
  return { atol: atol + TOL.f32Elementwise.atol, rtol: TOL.f32Elementwise.rtol };
}

interface Case {
  count: number; height: number; width: number; indices: number[]; crops: CropParams[];
  size: number; mean?: number; std?: number;
}

async function check(name: string, c: Case, seed = 1): Promise<Float32Array> {
  const e = engine();
  const pixels = makeImages(c.count, c.height, c.width, seed);
  const images = new GpuImages(e, { images: pixels, count: c.count, height: c.height,
    width: c.width });
  // Both sides get the float32 values the kernel reads.
  const crops = unpackCrops(packCrops(c.crops, c.height, c.width));
  const mean = c.mean ?? 0;
  const std = c.std ?? 1;
  const y = multiCrop(images, c.indices, crops, { size: c.size, mean, std });
  expect([...y.shape]).toEqual([crops.length, 1, c.size, c.size]);
  const got = await y.read();
  const want = augmentReference(pixels, c.height, c.width, c.indices, crops, c.size, mean, std);
  const gain = Math.max(1, ...crops.map((k) => Math.max(1, k.brightness) * Math.max(1, k.contrast)));
  expectClose(got, want, augmentTol(Math.max(c.height, c.width), c.size, gain, std), name);
  images.dispose();
  return got;
}

describe('layout shared by shader and TypeScript', () => {
  it('CROP_FIELDS is the Crop struct of augment.wgsl, member by member', () => {
    const src = readFileSync(join(shaderDir(), 'augment.wgsl'), 'utf8');
    const reflect = new WgslReflect(src);
    const res = reflect.entry.compute[0].resources.find((r) => r.name === 'crops')!;
    const type = res.type as unknown as { stride: number; format: { members: {
      name: string; offset: number; type: { name: string } }[] } };
    expect(type.stride).toBe(CROP_FLOATS * 4);
    expect(type.format.members.map((m) => [m.name, m.offset, m.type.name]))
      .toEqual(CROP_FIELDS.map((f, i) => [f, 4 * i, 'f32']));
  });
});

describe('multiCrop against the reference', () => {
  it('full box at the image size is the image itself (every sample on a pixel centre)', async () => {
    const got = await check('identity', { count: 3, height: 7, width: 7, indices: [2, 0],
      crops: [plain({ w: 7, h: 7 }), plain({ w: 7, h: 7 })], size: 7 });
    const pixels = makeImages(3, 7, 7, 1);
    // Weights are 0 and 1, so only contrast's (v - m) 1 + m rounds: one ulp of m <= 1.
    expectClose(got.subarray(0, 49), Float32Array.from(pixels.subarray(98, 147), (v) => v / 255),
      { atol: 2 ** -23, rtol: 0 }, 'identity is the image');
  });
});
