// Small seeded random numbers for tests, fuzzing and data order; not for cryptography.

// mulberry32 lives with the references, which import nothing from the engine.
export { mulberry32 } from '../reference/random.js';

/** An integer in [lo, hi), drawn from `rng`. */
export function randInt(rng: () => number, lo: number, hi: number): number {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi <= lo) {
    throw new RangeError(`randInt: need integers lo < hi, got lo=${lo} hi=${hi}`);
  }
  return lo + Math.floor(rng() * (hi - lo));
}
