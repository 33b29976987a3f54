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
  const gain = Math.max(1,
    ...crops.map((k) => Math.max(1, k.brightness) * Math.max(1, k.contrast)));
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
  it('a full box at the image size is the image (samples on pixel centres)', async () => {
    const got = await check('identity', { count: 3, height: 7, width: 7, indices: [2, 0],
      crops: [plain({ w: 7, h: 7 }), plain({ w: 7, h: 7 })], size: 7 });
    const pixels = makeImages(3, 7, 7, 1);
    // Weights are 0 and 1, so only contrast's (v - m) 1 + m rounds: one ulp of m <= 1.
    expectClose(got.subarray(0, 49), Float32Array.from(pixels.subarray(98, 147), (v) => v / 255),
      { atol: 2 ** -23, rtol: 0 }, 'identity is the image');
  });
});

describe('multiCrop: boxes, sizes, flips', () => {
  // 13x11: prime and not square, so rows and columns cannot be swapped unnoticed.
  const H = 13;
  const W = 11;
  const boxes: [string, Partial<CropParams>][] = [
    ['full image', { w: W, h: H }],
    ['1x1 box in a corner', { x0: W - 1, y0: H - 1, w: 1, h: 1 }],
    ['box on the left and top edges', { x0: 0, y0: 0, w: 4, h: 9 }],
    ['box on the right and bottom edges', { x0: W - 5, y0: H - 3, w: 5, h: 3 }],
    ['thin column', { x0: 6, y0: 0, w: 1, h: H }],
    ['thin row', { x0: 0, y0: 7, w: W, h: 1 }],
  ];
  for (const size of [1, 2, 5, 13, 29]) {
    it(`size ${size}: every box, flipped and not`, async () => {
      const crops = boxes.flatMap(([, b]) => [plain(b), plain({ ...b, flip: true })]);
      await check(`size ${size}`, { count: 4, height: H, width: W, indices: [3, 1],
        crops, size, mean: 0.3, std: 0.4 });
    });
  }

  it('a flip mirrors the unflipped crop exactly (no jitter, no blur)', async () => {
    const box = { x0: 2, y0: 1, w: 7, h: 10 };
    const got = await check('flip pair', { count: 2, height: H, width: W, indices: [1],
      crops: [plain(box), plain({ ...box, flip: true })], size: 9 });
    for (let i = 0; i < 9; i++) {
      for (let j = 0; j < 9; j++) {
        // Contrast's (v - m) + m uses each crop's own mean, summed in another order.
        expect(Math.abs(got[81 + i * 9 + j] - got[i * 9 + 8 - j])).toBeLessThanOrEqual(2 ** -23);
      }
    }
  });

  it('crops are crop-major: crop n uses image indices[n % B]', async () => {
    const full = plain({ w: W, h: H });
    const got = await check('order', { count: 5, height: H, width: W, indices: [4, 0, 2],
      crops: [full, full, full, full, plain({ w: 3, h: 3 }), full], size: W });
    // Crops 0 and 3 (B = 3) both show image 4 through the full box.
    expectClose(got.subarray(3 * W * W, 4 * W * W) as Float32Array,
      got.subarray(0, W * W) as Float32Array, { atol: 2 ** -23, rtol: 0 }, 'crop 3 = crop 0');
  });
});

describe('multiCrop: jitter and blur', () => {
  const H = 28;
  const W = 28;
  const rng = mulberry32(7);
  const jittered = (n: number, size: number): CropParams[] => Array.from({ length: n }, (_, k) => {
    const w = 1 + Math.floor(rng() * W);
    const h = 1 + Math.floor(rng() * H);
    return plain({
      x0: Math.floor(rng() * (W - w + 1)), y0: Math.floor(rng() * (H - h + 1)), w, h,
      flip: k % 2 === 1, contrastFirst: k % 4 >= 2,
      // 0 and 1.8 reach both clamps; 0.2 flattens the crop towards its mean.
      brightness: [0.2, 1, 1.8, 0.65, 0][k % 5], contrast: [1.8, 0.2, 1, 0, 1.35][k % 5],
      sigma: 0,
    });
  });
  it('brightness and contrast in both orders, factors 0 to 1.8', async () => {
    await check('jitter', { count: 6, height: H, width: W, indices: [0, 5, 3, 1],
      crops: jittered(16, 12), size: 12, mean: 0.2860, std: 0.3530 });
  });

  // Radius 6 at size 3 and radius 32 at size 11 reach past both edges from every pixel.
  const blurs = [[0.4, 7], [1, 13], [2, 28], [1.7, 3], [(MAX_BLUR_RADIUS - 0.2) / 3, 11]];
  for (const [sigma, size] of blurs) {
    it(`blur sigma ${sigma.toFixed(2)}, radius ${Math.ceil(3 * sigma)}, size ${size}`, async () => {
      const crops = jittered(8, size).map((c, k) => ({ ...c, sigma: k % 4 === 3 ? 0 : sigma }));
      await check(`blur ${sigma}`, { count: 3, height: H, width: W, indices: [2, 0],
        crops, size, mean: 0.5, std: 0.25 });
    });
  }

  it('the same inputs give bit-identical crops (no atomics, fixed sum order)', async () => {
    const e = engine();
    const pixels = makeImages(2, H, W, 3);
    const images = new GpuImages(e, { images: pixels, count: 2, height: H, width: W });
    const crops = jittered(6, 16).map((c) => ({ ...c, sigma: 1.3 }));
    const a = await multiCrop(images, [1, 0], crops, { size: 16 }).read();
    const b = await multiCrop(images, [1, 0], crops, { size: 16 }).read();
    expect(b).toEqual(a);
    images.dispose();
  });
});

describe('multiCrop: more crops than one dispatch dimension', () => {
  it('70000 crops of 2x2 (workgroups folded into y)', async () => {
    const rng = mulberry32(11);
    const n = 70000;
    const batch = 1000;
    const crops = Array.from({ length: n }, () => {
      const w = 1 + Math.floor(rng() * 9);
      const h = 1 + Math.floor(rng() * 9);
      return plain({ x0: Math.floor(rng() * (10 - w)), y0: Math.floor(rng() * (10 - h)), w, h,
        flip: rng() < 0.5, brightness: 0.5 + rng(), contrast: 0.5 + rng(),
        contrastFirst: rng() < 0.5, sigma: rng() < 0.5 ? 0.5 : 0 });
    });
    const indices = Array.from({ length: batch }, (_, b) => b % 50);
    await check('70000 crops', { count: 50, height: 9, width: 9, indices, crops, size: 2 });
  });
});

describe('MultiCropLoader: one step of SwAV crops', () => {
  const H = 28;
  const W = 28;
  const count = 10;
  const opts = {
    batch: 4, seed: 5, mean: 0.286, std: 0.353, flip: true,
    groups: [{ count: 2, size: 28, scale: [0.14, 1] as const },
      { count: 3, size: 12, scale: [0.05, 0.14] as const }],
    jitter: { strength: 0.8, p: 0.8 }, blur: { p: 0.5, sigma: [0.1, 2] as const },
  };

  it('matches the reference for the crops sampleCrops draws, and allocates once', async () => {
    const e = engine();
    const pixels = makeImages(count, H, W, 9);
    const images = new GpuImages(e, { images: pixels, count, height: H, width: W });
    const loader = new MultiCropLoader(images, opts);
    const sampler = new EpochSampler(count, opts.batch, opts.seed);
    const { sampleCrops } = await import('../../src/data/crops.js');
    for (const [epoch, step] of [[0, 0], [0, 1], [3, 1]]) {
      const indices = sampler.batch(epoch, step);
      const outs = loader.step(epoch, step, indices);
      const values = await e.run([], outs);
      if (epoch !== 0 || step !== 0) {
        // Leaves, scratch and outputs all come back from the pool: nothing new per step.
        expect(e.lastRun.allocations, `allocations at step (${epoch}, ${step})`).toBe(0);
      }
      const { mean: _mean, std: _std, ...sampling } = opts;
      const params = sampleCrops({ ...sampling, epoch, step, height: H, width: W });
      opts.groups.forEach((g, gi) => {
        expect([...outs[gi].shape]).toEqual([opts.batch * g.count, 1, g.size, g.size]);
        const crops = unpackCrops(params[gi]);
        const want = augmentReference(pixels, H, W, indices, crops, g.size, opts.mean, opts.std);
        expectClose(values[gi], want, augmentTol(W, g.size, 1.8 * 1.8, opts.std),
          `loader (${epoch}, ${step}) group ${gi}`);
      });
      outs.forEach((t) => t.dispose());
    }
    loader.dispose();
    images.dispose();
  });

  it('a fresh loader (a resumed run) reproduces a step bit for bit', async () => {
    const e = engine();
    const pixels = makeImages(count, H, W, 9);
    const images = new GpuImages(e, { images: pixels, count, height: H, width: W });
    const first = new MultiCropLoader(images, opts);
    const a = await e.run([], first.step(2, 1, [3, 1, 4, 1]));
    const resumed = new MultiCropLoader(images, opts);
    const b = await e.run([], resumed.step(2, 1, [3, 1, 4, 1]));
    expect(b).toEqual(a);
    const c = await e.run([], resumed.step(2, 2, [3, 1, 4, 1]));
    expect(c[0]).not.toEqual(a[0]);
    first.dispose();
    resumed.dispose();
    images.dispose();
  });

  it('refuses an unknown option, and the four keys it fills in itself', () => {
    const e = engine();
    const images = new GpuImages(e, { images: makeImages(count, H, W, 9), count, height: H,
      width: W });
    expect(() => new MultiCropLoader(images, { ...opts, nean: 0.3 } as never))
      .toThrow('MultiCropLoader: unknown option "nean" (did you mean "mean"?)');
    expect(() => new MultiCropLoader(images, { ...opts, epoch: 3 } as never))
      .toThrow('MultiCropLoader: unknown option "epoch"');
    images.dispose();
  });

  it('refuses to rewrite inputs whose crops have not run', () => {
    const e = engine();
    const images = new GpuImages(e, { images: makeImages(count, H, W, 9), count, height: H,
      width: W });
    const loader = new MultiCropLoader(images, opts);
    loader.step(0, 0, [0, 1, 2, 3]);
    expect(() => loader.step(0, 1, [0, 1, 2, 3])).toThrow(
      /MultiCropLoader.step\(0, 1\): the crops of step \(0, 0\) have not run yet/);
    expect(() => new MultiCropLoader(images, opts).step(0, 0, [0, 1, 2, 10])).toThrow(
      'MultiCropLoader.step: indices[3] = 10 is not an image index in [0, 10)');
  });
});

describe('multiCrop: bad arguments', () => {
  const e = () => engine();
  const imgs = () => new GpuImages(e(), { images: makeImages(3, 5, 6, 1), count: 3, height: 5,
    width: 6 });
  const box = plain({ w: 6, h: 5 });

  it('size must be a positive integer', () => {
    expect(() => multiCrop(imgs(), [0], [box], { size: 0 })).toThrow(
      'multiCrop: size must be an integer >= 1, got 0');
    expect(() => multiCrop(imgs(), [0], [box], { size: 2.5 })).toThrow(
      'multiCrop: size must be an integer >= 1, got 2.5');
  });

  it('indices must name images of the set', () => {
    expect(() => multiCrop(imgs(), [0, 3], [box, box], { size: 4 })).toThrow(
      'multiCrop: indices[1] = 3 is not an image index in [0, 3)');
    expect(() => multiCrop(imgs(), [-1], [box], { size: 4 })).toThrow(
      'multiCrop: indices[0] = -1 is not an image index in [0, 3)');
    expect(() => multiCrop(imgs(), ['1'] as never, [box], { size: 4 })).toThrow(
      'multiCrop: indices[0] = "1" is not an image index in [0, 3)');
    expect(() => multiCrop(imgs(), [], [box], { size: 4 })).toThrow(
      'multiCrop: indices must be a non-empty array of image indices or a tensor');
  });

  it('an out-of-range index in a tensor makes its crops NaN', async () => {
    const idx = e().tensor([1, 7], [2]);
    const y = await multiCrop(imgs(), idx, [box, box], { size: 3 }).read();
    expect(y.subarray(0, 9).every(Number.isFinite)).toBe(true);
    expect(y.subarray(9).every(Number.isNaN)).toBe(true);
  });

  it('crop boxes must lie inside the image', () => {
    expect(() => multiCrop(imgs(), [0], [plain({ x0: 2, w: 5, h: 5 })], { size: 4 })).toThrow(
      'multiCrop: crop 0: box x0=2 y0=0 w=5 h=5 must lie inside the 5x6 image with w, h >= 1');
    expect(() => multiCrop(imgs(), [0], [box, plain({ w: 0, h: 2 })], { size: 4 })).toThrow(
      'multiCrop: crop 1: box x0=0 y0=0 w=0 h=2 must lie inside the 5x6 image with w, h >= 1');
    expect(() => multiCrop(imgs(), [0], [plain({ w: 2.5, h: 2 })], { size: 4 })).toThrow(
      'multiCrop: crop 0: w must be an integer, got 2.5');
    expect(() => multiCrop(imgs(), [0], [plain({ w: '2' as never, h: 2 })], { size: 4 }))
      .toThrow('multiCrop: crop 0: w must be an integer, got "2"');
  });

  it('blur radius, jitter factors and std are checked', () => {
    expect(() => multiCrop(imgs(), [0], [{ ...box, sigma: 11 }], { size: 4 })).toThrow(
      "multiCrop: crop 0: sigma 11 needs a blur radius of 33 taps, past the kernel's 32");
    expect(() => multiCrop(imgs(), [0], [{ ...box, contrast: -1 }], { size: 4 })).toThrow(
      'multiCrop: crop 0: contrast must be >= 0, got -1');
    expect(() => multiCrop(imgs(), [0], [box], { size: 4, std: 0 })).toThrow(
      'multiCrop: std must be > 0, got 0');
  });

  it('options and crops from plain JavaScript: one object each, of known keys', () => {
    const js = multiCrop as (...args: unknown[]) => unknown;
    const form = 'multiCrop(images, indices, params, { size, mean, std })';
    expect(() => js(imgs(), [0], [box])).toThrow(`multiCrop: options are required, as in ${form}`);
    expect(() => js(imgs(), [0], [box], 4)).toThrow(
      `multiCrop: options must be one object, as in ${form}; got 4`);
    expect(() => js(imgs(), [0], [box], { size: 4, std_dev: 0.5 })).toThrow('multiCrop: unknown ' +
      'option "std_dev" (did you mean "std"?); multiCrop takes size, mean, std');
    // A flip or contrast order under another name was dropped; a string flip read as true.
    expect(() => js(imgs(), [0], [{ ...box, contrast_first: true }], { size: 4 })).toThrow(
      'multiCrop: unknown key "contrast_first" in crop 0 (did you mean "contrastFirst"?); ' +
      'crop 0 takes x0, y0, w, h, flip, brightness, contrast, contrastFirst, sigma');
    expect(() => js(imgs(), [0], [box, { ...box, flip: 'no' }], { size: 4 })).toThrow(
      'multiCrop: crop 1: flip must be true or false, got "no"');
    expect(() => packCrops([{ ...box, flop: true } as CropParams], 5, 6)).toThrow(
      'packCrops: unknown key "flop" in crop 0 (did you mean "flip"?)');
  });

  it('valid options still normalise: (v - mean) / std', async () => {
    const plainCrop = await multiCrop(imgs(), [1], [box], { size: 3 }).read();
    const normed = await multiCrop(imgs(), [1], [box], { size: 3, mean: 0.5, std: 0.25 }).read();
    expectClose(normed, Float64Array.from(plainCrop, (v) => (v - 0.5) / 0.25),
      { atol: 4 * U, rtol: 4 * U }, 'normalised crop');
  });

  it('crop count must be a multiple of the batch; packed params must be [N, 10]', () => {
    expect(() => multiCrop(imgs(), [0, 1], [box, box, box], { size: 4 })).toThrow(
      'multiCrop: 3 crops is not a multiple of the 2 indices (crop n takes image ' +
      'indices[n % 2])');
    const flat = e().tensor(packCrops([box], 5, 6), [CROP_FLOATS], { name: 'flat' });
    expect(() => multiCrop(imgs(), [0], flat, { size: 4 })).toThrow(
      'multiCrop: params must be [N, 10] packed crops, got flat [10]');
  });

  it('GpuImages checks its bytes against count x height x width', () => {
    expect(() => new GpuImages(e(), { images: new Uint8Array(29), count: 1, height: 5,
      width: 6 })).toThrow('GpuImages images: images must be a Uint8Array of count x height x ' +
      'width = 1x5x6 = 30 bytes, got 29 bytes');
    expect(() => new GpuImages(e(), { images: new Uint8Array(0), count: 0, height: 5,
      width: 6 })).toThrow('GpuImages images: count must be an integer >= 1, got 0');
  });
});
