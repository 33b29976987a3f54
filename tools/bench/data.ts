// Seeded inputs for the benchmark cases, the same numbers in every contestant.

/** n uniform values in [-1, 1) from an LCG seeded by `seed`. */
export function randomData(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Output side of a convolution: floor((in + 2 pad - kernel) / stride) + 1. */
export function convOut(size: number, kernel: number, stride: number, padding: number): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

export const sizeOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
