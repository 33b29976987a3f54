// Small seeded random numbers for tests, fuzzing and data order; not for cryptography.

/**
 * mulberry32: a 32-bit state generator, fast and good enough for shuffles and fuzzing.
 * The same seed gives the same sequence on every platform, since it uses only 32-bit
 * integer arithmetic (Math.imul and unsigned shifts).
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    // 2^32: maps the 32-bit result onto [0, 1) without ever reaching 1.
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [lo, hi), drawn from `rng`. */
export function randInt(rng: () => number, lo: number, hi: number): number {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi <= lo) {
    throw new RangeError(`randInt: need integers lo < hi, got lo=${lo} hi=${hi}`);
  }
  return lo + Math.floor(rng() * (hi - lo));
}
