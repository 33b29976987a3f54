// Seeded random numbers, so every reference test and user check draws the same inputs.

/**
 * Mulberry32: a 32-bit state generator, small and fast, good enough for test inputs (not for
 * cryptography). Returns floats in [0, 1) built from 32 random bits.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
