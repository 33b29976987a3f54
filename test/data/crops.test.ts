// Seeded crop sampling and epoch order on the CPU: determinism by key, torchvision's
// RandomResizedCrop ranges, flip/jitter/blur rates within stated bounds, and bad arguments.

import { describe, expect, it } from 'vitest';
import { keyedRandom, sampleCropBox, sampleCrops, streamSeed,
  type CropSamplingOptions } from '../../src/data/crops.js';
import { EpochSampler } from '../../src/data/sampler.js';
import { CROP_FLOATS, unpackCrops } from '../../src/ops/augment.js';
import { blurRadius } from '../../src/reference/augment.js';

const base: CropSamplingOptions = {
  batch: 8, seed: 1, epoch: 0, step: 0, height: 28, width: 28,
  groups: [{ count: 2, size: 28, scale: [0.14, 1] }, { count: 6, size: 12, scale: [0.05, 0.14] }],
  flip: true, jitter: { strength: 0.8, p: 0.8 }, blur: { p: 0.5, sigma: [0.1, 2] },
};

/** Five standard deviations of a rate estimated from n Bernoulli(p) draws. */
const bound = (p: number, n: number) => 5 * Math.sqrt((p * (1 - p)) / n);

describe('EpochSampler', () => {
  it('visits every index once per epoch, in the same order for the same seed', () => {
    const a = new EpochSampler(1000, 64, 3);
    const b = new EpochSampler(1000, 64, 3);
    for (const epoch of [0, 1, 7]) {
      const p = a.permutation(epoch);
      expect([...p].sort((x, y) => x - y)).toEqual([...Array(1000).keys()]);
      expect(b.permutation(epoch)).toEqual(p);
    }
  });

  it('different epochs and seeds give different orders', () => {
    const s = new EpochSampler(1000, 64, 3);
    const e0 = [...s.permutation(0)];
    const e1 = [...s.permutation(1)];
    expect(e1).not.toEqual(e0);
    expect([...new EpochSampler(1000, 64, 4).permutation(0)]).not.toEqual(e0);
    // A real shuffle: far fewer fixed points than 1000 (about 1 is expected).
    expect(e0.filter((v, i) => v === i).length).toBeLessThan(10);
  });

  it('cuts full batches and drops the last partial one', () => {
    const s = new EpochSampler(10, 3, 0);
    expect(s.stepsPerEpoch).toBe(3);
    const seen = [0, 1, 2].flatMap((k) => [...s.batch(5, k)]);
    expect(seen).toEqual([...s.permutation(5)].slice(0, 9));
    expect(() => s.batch(5, 3)).toThrow(
      'EpochSampler: step must be an integer in [0, 3) (10 images in batches of 3), got 3');
  });

  it('an epoch asked out of order (a resumed run) gives the same batches', () => {
    const s = new EpochSampler(500, 50, 9);
    const late = [...s.batch(4, 2)];
    s.batch(0, 0);
    expect([...new EpochSampler(500, 50, 9).batch(4, 2)]).toEqual(late);
  });

  it('rejects batches larger than the set and bad numbers', () => {
    expect(() => new EpochSampler(5, 6, 0)).toThrow(
      'EpochSampler: batch 6 is larger than the 5 images, so no full batch exists');
    expect(() => new EpochSampler(5, 0, 0)).toThrow(
      'EpochSampler: batch must be an integer in [1, 2^32), got 0');
    expect(() => new EpochSampler(5, 2, -1)).toThrow(
      'EpochSampler: seed must be an integer in [0, 2^32), got -1');
  });
});

describe('keyed streams', () => {
  it('depend on the whole key and nothing else', () => {
    expect(streamSeed(1, 2, 3)).toBe(streamSeed(1, 2, 3));
    const seeds = new Set([streamSeed(1, 2, 3), streamSeed(1, 3, 2), streamSeed(2, 1, 3),
      streamSeed(1, 2, 3, 0), streamSeed(1, 2), streamSeed(0, 0, 0)]);
    expect(seeds.size).toBe(6);
    const a = keyedRandom(4, 5);
    const b = keyedRandom(4, 5);
    for (let i = 0; i < 10; i++) expect(a()).toBe(b());
    expect(() => streamSeed(1, 2 ** 32)).toThrow(
      'streamSeed: key words must be integers in [0, 2^32), got 4294967296');
  });
});

describe('sampleCrops', () => {
  it('refuses an unknown key at any level, naming the closest (it would drop an augmentation)',
    () => {
      expect(() => sampleCrops({ ...base, jiter: base.jitter } as never))
        .toThrow('sampleCrops: unknown option "jiter" (did you mean "jitter"?)');
      expect(() => sampleCrops({ ...base, blur: { p: 0.5, sigam: [0.1, 2] } } as never))
        .toThrow('sampleCrops: unknown key "sigam" in blur');
      expect(() => sampleCrops({ ...base, groups: [{ count: 1, size: 8, scale: [0.1, 1],
        ratios: [1, 1] }] } as never)).toThrow('sampleCrops: unknown key "ratios" in groups[0]');
    });

  it('is a function of (seed, epoch, step): same key same crops, any other key not', () => {
    const a = sampleCrops(base);
    expect(sampleCrops(base)).toEqual(a);
    for (const change of [{ seed: 2 }, { epoch: 1 }, { step: 1 }]) {
      const b = sampleCrops({ ...base, ...change });
      expect(b[0]).not.toEqual(a[0]);
      expect(b[1]).not.toEqual(a[1]);
    }
    // `into` gets the same values without new arrays.
    const into = a.map((x) => new Float32Array(x.length));
    const out = sampleCrops(base, into);
    expect(out[0]).toBe(into[0]);
    expect(into).toEqual(a);
  });

  it('a probability change moves no other draw (fixed draws per crop)', () => {
    const a = unpackCrops(sampleCrops(base)[1]);
    const b = unpackCrops(sampleCrops({ ...base, blur: { p: 1, sigma: [0.1, 2] } })[1]);
    expect(b.map((c) => [c.x0, c.y0, c.w, c.h, c.flip, c.brightness]))
      .toEqual(a.map((c) => [c.x0, c.y0, c.w, c.h, c.flip, c.brightness]));
  });

  it('packs count x batch crops per group, crop-major', () => {
    const out = sampleCrops(base);
    expect(out.map((x) => x.length)).toEqual([2 * 8 * CROP_FLOATS, 6 * 8 * CROP_FLOATS]);
  });

  // Large images make integer rounding of the sides negligible against the range checks.
  it('areas and aspect ratios stay in range (224x224, 4000 crops)', () => {
    const n = 4000;
    const scale = [0.08, 1] as const;
    const [crops] = sampleCrops({ ...base, batch: n, height: 224, width: 224,
      groups: [{ count: 1, size: 224, scale }] }).map(unpackCrops);
    const A = 224 * 224;
    let logRatio = 0;
    let area = 0;
    for (const c of crops) {
      // Sides are rounded to integers, so allow half a pixel each way.
      expect((c.w - 0.5) * (c.h - 0.5)).toBeLessThanOrEqual(scale[1] * A);
      expect((c.w + 0.5) * (c.h + 0.5)).toBeGreaterThanOrEqual(scale[0] * A);
      expect((c.w - 0.5) / (c.h + 0.5)).toBeLessThanOrEqual(4 / 3);
      expect((c.w + 0.5) / (c.h - 0.5)).toBeGreaterThanOrEqual(3 / 4);
      expect(c.x0 >= 0 && c.y0 >= 0 && c.x0 + c.w <= 224 && c.y0 + c.h <= 224).toBe(true);
      logRatio += Math.log(c.w / c.h) / n;
      area += (c.w * c.h) / A / n;
    }
    // log ratio is uniform on +-log(4/3) (sd 0.166): its mean is 0 within 5 sd / sqrt(n).
    expect(Math.abs(logRatio)).toBeLessThan((5 * 0.166) / Math.sqrt(n));
    // Tries that do not fit are redrawn, which removes some large areas: the mean area
    // falls below the 0.54 midpoint of the range, but not below a third of the image.
    expect(area).toBeLessThan(0.54);
    expect(area).toBeGreaterThan(0.33);
  });

  it('small crops of a 28x28 image stay within rounding of the scale range', () => {
    const [, small] = sampleCrops({ ...base, batch: 500 }).map(unpackCrops);
    for (const c of small) {
      expect((c.w - 0.5) * (c.h - 0.5)).toBeLessThanOrEqual(0.14 * 784);
      expect((c.w + 0.5) * (c.h + 0.5)).toBeGreaterThanOrEqual(0.05 * 784);
    }
  });

  it('falls back to the central crop after 10 misses', () => {
    // An rng that always asks for the whole area at ratio 4/3, which never fits a square.
    const always = [1 - 1e-12, 1 - 1e-12];
    let k = 0;
    const rng = () => always[k++ % 2];
    expect(sampleCropBox(rng, 28, 28, [0.5, 1], [3 / 4, 4 / 3])).toEqual(
      { x0: 0, y0: 0, w: 28, h: 28 });
    expect(k).toBe(20);
    // A wide image with ratios up to 4/3: the centre 4:3 box, as torchvision.
    expect(sampleCropBox(rng, 10, 40, [0.99, 1], [3 / 4, 4 / 3])).toEqual(
      { x0: 13, y0: 0, w: 13, h: 10 });
  });

  it('flip, jitter and blur rates match their probabilities (5 sd bounds)', () => {
    const batch = 5000;
    const [crops] = sampleCrops({ ...base, batch, groups: [{ count: 1, size: 12,
      scale: [0.05, 0.14] }], flip: 0.5, jitter: { strength: 0.8, p: 0.8 },
    blur: { p: 0.3, sigma: [0.1, 2] } }).map(unpackCrops);
    const rate = (f: (c: (typeof crops)[number]) => boolean) =>
      crops.filter(f).length / batch;
    expect(Math.abs(rate((c) => c.flip) - 0.5)).toBeLessThan(bound(0.5, batch));
    const jittered = (c: (typeof crops)[number]) => c.brightness !== 1 || c.contrast !== 1;
    expect(Math.abs(rate(jittered) - 0.8)).toBeLessThan(bound(0.8, batch));
    // Each order has probability 1/2 among jittered crops: 0.4 overall.
    expect(Math.abs(rate((c) => c.contrastFirst) - 0.4)).toBeLessThan(bound(0.4, batch));
    expect(Math.abs(rate((c) => c.sigma > 0) - 0.3)).toBeLessThan(bound(0.3, batch));
    for (const c of crops) {
      if (jittered(c)) {
        expect(c.brightness).toBeGreaterThanOrEqual(Math.fround(0.2));
        expect(c.brightness).toBeLessThanOrEqual(Math.fround(1.8));
        expect(c.contrast).toBeGreaterThanOrEqual(Math.fround(0.2));
        expect(c.contrast).toBeLessThanOrEqual(Math.fround(1.8));
      }
      if (c.sigma > 0) {
        expect(c.sigma).toBeGreaterThanOrEqual(Math.fround(0.1));
        expect(c.sigma).toBeLessThanOrEqual(Math.fround(2));
        expect(blurRadius(c.sigma)).toBeLessThanOrEqual(6);
      }
    }
    // flip: false and the defaults (no jitter, no blur) draw none of them.
    const [off] = sampleCrops({ ...base, flip: false, jitter: undefined, blur: undefined })
      .map(unpackCrops);
    expect(off.some((c) => c.flip || c.brightness !== 1 || c.contrast !== 1 || c.sigma > 0))
      .toBe(false);
  });

  it('strength above 1 clamps the lower factor at 0', () => {
    const [crops] = sampleCrops({ ...base, batch: 2000, jitter: { strength: 1.5, p: 1 } })
      .map(unpackCrops);
    expect(Math.min(...crops.map((c) => c.brightness))).toBeGreaterThanOrEqual(0);
    expect(Math.max(...crops.map((c) => c.contrast))).toBeLessThanOrEqual(2.5);
    // Uniform on [0, 2.5]: a fifth below 0.5.
    const low = crops.filter((c) => c.brightness < 0.5).length / crops.length;
    expect(Math.abs(low - 0.2)).toBeLessThan(bound(0.2, crops.length));
  });

  it('bad arguments say what is wrong', () => {
    const g = (scale: readonly [number, number]) => ({ ...base, groups: [{ count: 1, size: 8,
      scale }] });
    expect(() => sampleCrops(g([0, 0.5]))).toThrow('sampleCrops: groups[0].scale must be ' +
      '[lo, hi] with 0 < lo <= hi <= 1 (fractions of the image area), got [0,0.5]');
    expect(() => sampleCrops(g([0.5, 1.2]))).toThrow('sampleCrops: groups[0].scale must be ' +
      '[lo, hi] with 0 < lo <= hi <= 1 (fractions of the image area), got [0.5,1.2]');
    expect(() => sampleCrops(g([0.6, 0.5]))).toThrow('groups[0].scale must be [lo, hi]');
    expect(() => sampleCrops({ ...base, groups: [{ count: 1, size: 0, scale: [0.1, 1] }] }))
      .toThrow('sampleCrops: groups[0].size must be an integer >= 1, got 0');
    expect(() => sampleCrops({ ...base, groups: [] })).toThrow(
      'sampleCrops: groups must list at least one {count, size, scale} group');
    expect(() => sampleCrops({ ...base, flip: 1.5 })).toThrow(
      'sampleCrops: flip must be a probability in [0, 1], got 1.5');
    expect(() => sampleCrops({ ...base, blur: { p: 0.5, sigma: [1, 20] } })).toThrow(
      "sampleCrops: blur.sigma's upper end 20 needs a radius ceil(3 sigma) past the kernel's " +
      '32 taps');
    expect(() => sampleCrops({ ...base, epoch: -1 })).toThrow(
      'sampleCrops: epoch must be an integer >= 0, got -1');
    expect(() => sampleCrops({ ...base, jitter: { strength: -0.1, p: 1 } })).toThrow(
      'sampleCrops: jitter.strength must be a finite number >= 0, got -0.1');
    expect(() => sampleCrops(base, [new Float32Array(3)])).toThrow(
      'sampleCrops: into must hold one Float32Array of count x batch x 10 floats per group');
  });
});
