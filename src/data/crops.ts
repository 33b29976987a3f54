// Seeded CPU sampling of SwAV's multi-crop parameters (crop boxes, flips, jitter, blur),
// keyed by (seed, epoch, step) so that a resumed run draws exactly the same crops.

import { CROP_FLOATS, MAX_BLUR_RADIUS, packCrops, type CropParams } from '../ops/augment.js';
import { checkKeys, optionKeys } from '../ops/util.js';
import { mulberry32 } from '../util/random.js';

// ---- counter-based seeding -----------------------------------------------------------

/** A 32-bit integer hash with good avalanche (xor-shift-multiply, as in lowbias32). */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * A 32-bit seed for the stream named by `key` (non-negative integers below 2^32). Streams are
 * derived from the key alone, never from a generator's running state, so any one of them
 * can be recreated on its own: a resumed run at (epoch, step) needs nothing saved.
 */
export function streamSeed(...key: number[]): number {
  let h = 0x9e3779b9;
  for (const k of key) {
    if (!Number.isInteger(k) || k < 0 || k > 0xffffffff) {
      throw new RangeError(`streamSeed: key words must be integers in [0, 2^32), got ${k}`);
    }
    h = mix32((h ^ mix32(k)) + 0x9e3779b9);
  }
  return h;
}

/** A uniform [0, 1) generator for the stream named by `key`. */
export function keyedRandom(...key: number[]): () => number {
  return mulberry32(streamSeed(...key));
}

/** Stream tags, so that crop and permutation streams never share a key. */
export const STREAM = { crops: 1, permutation: 2 } as const;

// ---- options ---------------------------------------------------------------------------

/** One resolution group: `count` crops per image, each `size` x `size`. */
export interface CropGroup {
  count: number;
  size: number;
  /** Range of the crop's area as a fraction of the image's, within (0, 1]. */
  scale: readonly [number, number];
  /** Range of width / height, sampled log-uniform; default (3/4, 4/3) as torchvision. */
  ratio?: readonly [number, number];
}

export interface CropSamplingOptions {
  /** Images per batch (B). */
  batch: number;
  seed: number;
  epoch: number;
  step: number;
  /** Source image size. */
  height: number;
  width: number;
  groups: readonly CropGroup[];
  /** Probability of a left-right flip; true means 0.5 (the default), false 0. */
  flip?: boolean | number;
  /**
   * Brightness and contrast jitter, applied to a crop with probability p: factors uniform
   * in [max(0, 1 - strength), 1 + strength] (SwAV's ColorJitter uses 0.8 for both).
   */
  jitter?: { strength: number; p: number };
  /** Gaussian blur with probability p, sigma uniform in [lo, hi] output pixels. */
  blur?: { p: number; sigma: readonly [number, number] };
}

function bad(message: string): never {
  throw new RangeError(`sampleCrops: ${message}`);
}

/** The keys sampleCrops takes (and MultiCropLoader, less the four it fills in). */
export const SAMPLING_KEYS = optionKeys<CropSamplingOptions>({ batch: true, seed: true,
  epoch: true, step: true, height: true, width: true, groups: true, flip: true, jitter: true,
  blur: true });
const GROUP_KEYS = optionKeys<CropGroup>({ count: true, size: true, scale: true, ratio: true });

function checkProbability(name: string, p: unknown): number {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
    bad(`${name} must be a probability in [0, 1], got ${String(p)}`);
  }
  return p;
}

function checkRange(name: string, r: unknown, ok: (lo: number, hi: number) => boolean,
  rule: string): [number, number] {
  if (!Array.isArray(r) || r.length !== 2 || !r.every((v) => typeof v === 'number' &&
    Number.isFinite(v)) || !ok(r[0], r[1])) {
    bad(`${name} must be [lo, hi] with ${rule}, got ${JSON.stringify(r)}`);
  }
  return [r[0], r[1]];
}

function checkCount(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    bad(`${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

// ---- sampling --------------------------------------------------------------------------

/** Python's round(): halves go to the even neighbour (torchvision rounds crop sides so). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of an area fraction uniform in
 * `scale` and a log-uniform aspect ratio, rounded to integer sides; a try that does not fit
 * the image is redrawn; after 10 misses, the central crop with the ratio clamped into range.
 */
export function sampleCropBox(rng: () => number, height: number, width: number,
  scale: readonly [number, number], ratio: readonly [number, number]):
  { x0: number; y0: number; w: number; h: number } {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * rng());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng());
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const y0 = Math.floor(rng() * (height - h + 1));
      const x0 = Math.floor(rng() * (width - w + 1));
      return { x0, y0, w, h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = roundHalfEven(w / ratio[0]);
  else if (inRatio > ratio[1]) w = roundHalfEven(h * ratio[1]);
  return { x0: Math.floor((width - w) / 2), y0: Math.floor((height - h) / 2), w, h };
}

/**
 * Crop parameters of one step, one packed Float32Array per group (CROP_FLOATS floats per
 * crop, the layout of shaders/augment.wgsl's Crop struct), ordered crop-major: entry
 * c * batch + b is crop c of batch image b.
 *
 * Each crop draws from its own stream keyed by (seed, epoch, step, group, crop), in this
 * order: the box (2 draws per try, 2 for the position), flip, jitter (apply, brightness,
 * contrast, order), blur (apply, sigma). Every crop makes the jitter and blur draws even
 * when those are off, so a change of probability moves no other draw.
 *
 * Differences from torchvision, all deliberate: images are grayscale, so ColorJitter's
 * saturation and hue are no-ops and only the order of brightness and contrast is drawn
 * (torchvision permutes all four, which leaves each order with probability 1/2); blur is
 * a Gaussian of radius ceil(3 sigma) in output pixels, as SwAV's PIL blur is in pixels of
 * the resized crop.
 *
 * `into`, when given, receives the values (one array per group of the right length), so a
 * training loop allocates nothing per step.
 */
export function sampleCrops(opts: CropSamplingOptions, into?: Float32Array[]): Float32Array[] {
  if (!opts || typeof opts !== 'object') bad('options must be an object');
  // A misspelt key ({ jiter }, { fliip }) would silently train without that augmentation.
  checkKeys('sampleCrops', 'options', opts, SAMPLING_KEYS);
  if (opts.jitter !== undefined) checkKeys('sampleCrops', 'jitter', opts.jitter, ['strength', 'p']);
  if (opts.blur !== undefined) checkKeys('sampleCrops', 'blur', opts.blur, ['p', 'sigma']);
  const batch = checkCount('batch', opts.batch, 1);
  const seed = checkCount('seed', opts.seed, 0);
  const epoch = checkCount('epoch', opts.epoch, 0);
  const step = checkCount('step', opts.step, 0);
  const height = checkCount('height', opts.height, 1);
  const width = checkCount('width', opts.width, 1);
  if (seed > 0xffffffff || epoch > 0xffffffff || step > 0xffffffff) {
    bad(`seed, epoch and step must be below 2^32, got ${seed}, ${epoch}, ${step}`);
  }
  if (!Array.isArray(opts.groups) || opts.groups.length < 1) {
    bad('groups must list at least one {count, size, scale} group');
  }
  const flipP = opts.flip === undefined || opts.flip === true ? 0.5 : opts.flip === false ? 0 :
    checkProbability('flip', opts.flip);
  const jitter = opts.jitter ?? { strength: 0, p: 0 };
  const jitterP = checkProbability('jitter.p', jitter.p);
  const strength = jitter.strength;
  if (typeof strength !== 'number' || !(strength >= 0 && Number.isFinite(strength))) {
    bad(`jitter.strength must be a finite number >= 0, got ${String(strength)}`);
  }
  const blur = opts.blur ?? { p: 0, sigma: [1, 1] as const };
  const blurP = checkProbability('blur.p', blur.p);
  const [sLo, sHi] = checkRange('blur.sigma', blur.sigma, (lo, hi) => lo > 0 && lo <= hi,
    '0 < lo <= hi');
  if (Math.ceil(3 * Math.fround(sHi)) > MAX_BLUR_RADIUS) {
    bad(`blur.sigma's upper end ${sHi} needs a radius ceil(3 sigma) past the kernel's ` +
      `${MAX_BLUR_RADIUS} taps`);
  }
  const factorLo = Math.max(0, 1 - strength);
  const factorHi = 1 + strength;

  const groups = opts.groups.map((g, gi) => {
    const name = `groups[${gi}]`;
    if (!g || typeof g !== 'object') bad(`${name} must be {count, size, scale}`);
    checkKeys('sampleCrops', name, g, GROUP_KEYS);
    checkCount(`${name}.count`, g.count, 1);
    checkCount(`${name}.size`, g.size, 1);
    const scale = checkRange(`${name}.scale`, g.scale, (lo, hi) => lo > 0 && lo <= hi && hi <= 1,
      '0 < lo <= hi <= 1 (fractions of the image area)');
    const ratio = checkRange(`${name}.ratio`, g.ratio ?? [3 / 4, 4 / 3],
      (lo, hi) => lo > 0 && lo <= hi, '0 < lo <= hi');
    return { count: g.count, scale, ratio };
  });
  if (into && (into.length !== groups.length ||
    into.some((a, gi) => a.length !== groups[gi].count * batch * CROP_FLOATS))) {
    bad(`into must hold one Float32Array of count x batch x ${CROP_FLOATS} floats per group`);
  }

  const uniform = (rng: () => number, lo: number, hi: number) => lo + (hi - lo) * rng();
  return groups.map((g, gi) => {
    const crops: CropParams[] = [];
    for (let n = 0; n < g.count * batch; n++) {
      const rng = keyedRandom(STREAM.crops, seed, epoch, step, gi, n);
      const box = sampleCropBox(rng, height, width, g.scale, g.ratio);
      const flip = rng() < flipP;
      const jit = rng() < jitterP;
      const brightness = uniform(rng, factorLo, factorHi);
      const contrast = uniform(rng, factorLo, factorHi);
      const contrastFirst = rng() < 0.5;
      const blurs = rng() < blurP;
      const sigma = uniform(rng, sLo, sHi);
      crops.push({
        ...box, flip,
        brightness: jit ? brightness : 1, contrast: jit ? contrast : 1,
        contrastFirst: jit && contrastFirst, sigma: blurs ? sigma : 0,
      });
    }
    return packCrops(crops, height, width, 'sampleCrops', into?.[gi]);
  });
}
