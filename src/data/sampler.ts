// Seeded epoch order: a permutation of the image indices per epoch, cut into full batches.

import { keyedRandom, STREAM } from './crops.js';

const TWO32 = 4294967296;

/** An integer uniform in [0, m) from 32-bit draws, rejecting the biased tail (m <= 2^32). */
function uniformInt(rng: () => number, m: number): number {
  const limit = TWO32 - (TWO32 % m);
  for (;;) {
    // mulberry32 returns k / 2^32 for a 32-bit k, so this recovers k exactly.
    const k = rng() * TWO32;
    if (k < limit) return k % m;
  }
}

/**
 * Draws each epoch's order from a stream keyed by (seed, epoch) alone, so any epoch can be
 * recreated without replaying the ones before it (a resumed run needs only its counters).
 * Batches drop the last partial one, as SwAV's loader does (drop_last=True).
 */
export class EpochSampler {
  readonly count: number;
  readonly batchSize: number;
  readonly seed: number;
  /** Full batches per epoch: floor(count / batchSize). */
  readonly stepsPerEpoch: number;
  private cachedEpoch = -1;
  private cached = new Uint32Array(0);

  constructor(count: number, batchSize: number, seed: number) {
    for (const [name, v, min] of [['count', count, 1], ['batch', batchSize, 1],
      ['seed', seed, 0]] as const) {
      if (!Number.isSafeInteger(v) || v < min || v > 0xffffffff) {
        throw new RangeError(`EpochSampler: ${name} must be an integer in [${min}, 2^32), ` +
          `got ${v}`);
      }
    }
    if (batchSize > count) {
      throw new RangeError(`EpochSampler: batch ${batchSize} is larger than the ${count} ` +
        `images, so no full batch exists`);
    }
    this.count = count;
    this.batchSize = batchSize;
    this.seed = seed;
    this.stepsPerEpoch = Math.floor(count / batchSize);
  }

  /** The order of epoch `epoch` (Fisher-Yates; the last epoch asked is cached). */
  permutation(epoch: number): Uint32Array {
    if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch > 0xffffffff) {
      throw new RangeError(`EpochSampler: epoch must be an integer in [0, 2^32), got ${epoch}`);
    }
    if (epoch !== this.cachedEpoch) {
      const p = new Uint32Array(this.count);
      for (let i = 0; i < p.length; i++) p[i] = i;
      const rng = keyedRandom(STREAM.permutation, this.seed, epoch);
      for (let i = p.length - 1; i > 0; i--) {
        const j = uniformInt(rng, i + 1);
        const t = p[i];
        p[i] = p[j];
        p[j] = t;
      }
      this.cached = p;
      this.cachedEpoch = epoch;
    }
    return this.cached;
  }

  /** Image indices of batch `step` of epoch `epoch` (a view into the cached permutation). */
  batch(epoch: number, step: number): Uint32Array {
    if (!Number.isSafeInteger(step) || step < 0 || step >= this.stepsPerEpoch) {
      throw new RangeError(`EpochSampler: step must be an integer in [0, ${this.stepsPerEpoch}) ` +
        `(${this.count} images in batches of ${this.batchSize}), got ${step}`);
    }
    const p = this.permutation(epoch);
    return p.subarray(step * this.batchSize, (step + 1) * this.batchSize);
  }
}
