// Sinkhorn-Knopp codes on the GPU against the float64 reference, over both schedules (one
// looping workgroup, or two passes per iteration), their marginals, eps down to 0.01 with
// scores in [-1, 1], B = 1 and K = 1, and a SwAV-sized batch of 4099 x 3000.

import { describe, expect, it } from 'vitest';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { sinkhorn, SINKHORN_SMALL_MAX } from '../../src/ops/sinkhorn.js';
import { TOL, type Tolerance } from '../../src/reference/compare.js';
import { mulberry32 } from '../../src/reference/random.js';
import * as R from '../../src/reference/sinkhorn.js';
import { type RefTensor, roundToF32, uniform } from '../../src/reference/tensor.js';
import { expectClose, upload, useEngine } from '../helpers/gpu.js';

const engine = useEngine();
const U = 2 ** -24;

/** Scores as SwAV has them: cosine similarities, uniform in [-1, 1], rounded to float32. */
function scores(B: number, K: number, seed: number): RefTensor {
  return roundToF32(uniform([B, K], mulberry32(seed), -1, 1));
}

/**
 * Q = exp(s/eps - u - v): exp turns the absolute error of its argument into the relative
 * error of Q, and that argument is looser than any other kernel's here. s/eps alone is up to
 * 1/eps in size, so its rounding is ~|s|/eps ulp (exp amplifies the f32 error of s by 1/eps);
 * the potentials u, v are as large, each a log of a sum of max(B, K) terms (f32Reduction's
 * relative error of the sum becomes an absolute one after log), and each iteration carries
 * the previous potential's error into the next. Hence rtol = 4 (iterations + 1)
 * (3/eps + log(BK) + f32Reduction(max(B, K)).rtol / u) u. atol covers codes that underflow
 * float32 (below 1e-38) while float64 keeps them.
 */
function codesTol(B: number, K: number, eps: number, iterations: number): Tolerance {
  const sum = TOL.f32Reduction(Math.max(B, K)).rtol / U;
  return { atol: 1e-30, rtol: 4 * (iterations + 1) * (3 / eps + Math.log(B * K) + sum) * U };
}

async function check(B: number, K: number, eps: number, iterations: number, seed: number,
  schedule: 'auto' | 'small' | 'passes' = 'auto'): Promise<Float32Array> {
  const e = engine();
  const s = scores(B, K, seed);
  const q = await sinkhorn(upload(e, s), { epsilon: eps, iterations, schedule }).read();
  expectClose(q, R.sinkhorn(s, eps, iterations), codesTol(B, K, eps, iterations),
    `sinkhorn [${B}, ${K}] eps ${eps} x${iterations} (${schedule})`);
  return q;
}

function marginals(q: Float32Array, B: number, K: number): { rows: Float64Array;
  cols: Float64Array } {
  const rows = new Float64Array(B);
  const cols = new Float64Array(K);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < K; k++) {
      rows[b] += q[b * K + k];
      cols[k] += q[b * K + k];
    }
  }
  return { rows, cols };
}

describe('sinkhorn against the reference', () => {
  // [B, K]: one score, one row, one column, primes, SwAV's Fashion-MNIST head (256 x 30),
  // a row count past one 64-wide workgroup, K not a multiple of anything.
  const shapes: [number, number][] = [
    [1, 1], [1, 7], [7, 1], [5, 3], [13, 257], [256, 30], [131, 67],
  ];
  for (const [B, K] of shapes) {
    for (const schedule of ['small', 'passes'] as const) {
      it(`[${B}, ${K}] eps 0.05, 3 iterations, ${schedule}`, async () => {
        await check(B, K, 0.05, 3, B * 1000 + K, schedule);
      });
    }
  }

  it('B = 1, K = 1 gives exactly 1', async () => {
    const e = engine();
    const q = await sinkhorn(e.tensor([0.3], [1, 1]), { epsilon: 0.01 }).read();
    expect(q[0]).toBe(1);
  });

  it('eps = 0.01 with scores in [-1, 1]: exponents of +-100, no NaN or infinity', async () => {
    for (const schedule of ['small', 'passes'] as const) {
      const q = await check(97, 41, 0.01, 3, 5, schedule);
      expect(q.every(Number.isFinite), `${schedule}: every code finite`).toBe(true);
    }
    // Extreme: the largest and smallest scores side by side in every row and column.
    const e = engine();
    const s = roundToF32({ shape: [4, 4], data: Float64Array.from(
      [1, -1, 1, -1, -1, 1, -1, 1, 1, 1, -1, -1, -1, -1, 1, 1]) });
    const q = await sinkhorn(upload(e, s), { epsilon: 0.01, iterations: 5 }).read();
    expect(q.every(Number.isFinite)).toBe(true);
    expectClose(q, R.sinkhorn(s, 0.01, 5), codesTol(4, 4, 0.01, 5), 'extreme scores');
  });

  it('the two schedules give the same bits, run after run', async () => {
    const a = await check(300, 50, 0.05, 3, 7, 'small');
    const b = await check(300, 50, 0.05, 3, 7, 'passes');
    const c = await check(300, 50, 0.05, 3, 7, 'passes');
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(Array.from(c)).toEqual(Array.from(b));
  });

  it('4 194 307 rows of one prototype: past 65535 workgroups in the row pass', async () => {
    const e = engine();
    // With K = 1 every code is exactly 1 (each row holds one value and sums to 1); a row
    // the folded grid missed would keep stale or zero bytes.
    const B = 64 * 65536 + 3;
    const s = e.tensor(new Float32Array(B).map((_, i) => ((i % 201) - 100) / 100), [B, 1]);
    const q = await sinkhorn(s, { epsilon: 0.01, iterations: 1 }).read();
    expect(q.findIndex((v) => v !== 1), 'first code other than 1').toBe(-1);
  });

  it('a SwAV-sized batch: 4096 samples + a 3-row queue, 3000 prototypes', async () => {
    const B = 4099;
    const K = 3000;
    expect(B * K).toBeGreaterThan(SINKHORN_SMALL_MAX);
    await check(B, K, 0.05, 3, 11);
  });
});

describe('marginals', () => {
  it('rows sum to 1 and columns to B / K after enough iterations', async () => {
    const e = engine();
    for (const [B, K, schedule] of [[64, 10, 'small'], [512, 40, 'passes']] as const) {
      const q = await sinkhorn(upload(e, scores(B, K, 13)), { epsilon: 0.05, iterations: 50,
        schedule }).read();
      const m = marginals(q, B, K);
      // Each row is normalised last: its sum is 1 up to a sum of K rounded codes.
      expectClose(m.rows, new Float64Array(B).fill(1), TOL.f32Reduction(K), `${schedule} rows`);
      // Columns converge geometrically; after 50 rounds they are B / K to ~1e-4 (float64
      // reference: the same), which a float32 run matches up to its own rounding.
      expectClose(m.cols, new Float64Array(K).fill(B / K), { atol: 0, rtol: 2e-3 },
        `${schedule} columns`);
    }
  });
});

describe('options', () => {
  // Scores whose codes at eps 0.5 and 10 iterations differ from the defaults' (0.05, 3).
  const S = [1, 2, 3, 4, 0.5, -1];
  /** sinkhorn as plain JavaScript sees it: any arguments. */
  const js = sinkhorn as (...args: unknown[]) => unknown;

  it('refuses the reference\'s positional form sinkhorn(scores, eps, iters), showing the ' +
    'object it meant', () => {
    const s = engine().tensor(S, [2, 3]);
    const f = () => js(s, 0.5, 10);
    expect(f).toThrow(OpArgumentError);
    expect(f).toThrow('sinkhorn: options must be one object, as in ' +
      'sinkhorn(scores, { epsilon: 0.5, iterations: 10 }); got 0.5, 10 in their place');
    expect(() => js(s, 0.5)).toThrow('sinkhorn: options must be one object, ' +
      'as in sinkhorn(scores, { epsilon: 0.5 }); got 0.5');
    expect(() => js(s, null)).toThrow('sinkhorn: options must be one object, ' +
      'as in sinkhorn(scores, { epsilon, iterations, schedule }); got null');
    expect(() => js(s, { epsilon: 0.5 }, 10)).toThrow('sinkhorn: the ' +
      'options object must be the last argument, as in sinkhorn(scores, { ... }); got 10 after it');
  });

  it('reads a class instance and an object of another realm by their keys; refuses a Map',
    async () => {
      const e = engine();
      const s = roundToF32({ shape: [2, 3], data: Float64Array.from(S) });
      const want = await sinkhorn(upload(e, s), { epsilon: 0.5, iterations: 10 }).read();
      class Opts { epsilon = 0.5; iterations = 10; }
      const { runInNewContext } = await import('node:vm');
      const foreign: unknown = runInNewContext('({ epsilon: 0.5, iterations: 10 })');
      expect(Object.getPrototypeOf(foreign)).not.toBe(Object.prototype);
      for (const o of [new Opts(), foreign]) {
        expect(await (js(upload(e, s), o) as ReturnType<typeof sinkhorn>).read()).toEqual(want);
      }
      // A Map's entries are no keys: read as {}, it would have run with the defaults.
      expect(() => js(upload(e, s), new Map([['epsilon', 0.5]]))).toThrow(
        'sinkhorn: options must be one object, as in sinkhorn(scores, { epsilon, iterations, ' +
        'schedule }); got a Map');
    });

  it('refuses unknown keys, naming the closest known one', () => {
    const s = engine().tensor(S, [2, 3]);
    expect(() => js(s, { eps: 0.5 })).toThrow('sinkhorn: unknown option "eps" ' +
      '(did you mean "epsilon"?); sinkhorn takes epsilon, iterations, schedule');
    expect(() => js(s, { iters: 10 })).toThrow('sinkhorn: unknown option ' +
      '"iters" (did you mean "iterations"?); sinkhorn takes epsilon, iterations, schedule');
    expect(() => js(s, { epsilon: 0.5, temperature: 0.1 })).toThrow(
      'sinkhorn: unknown option "temperature"; sinkhorn takes epsilon, iterations, schedule');
  });

  it('the object form gives the reference\'s codes for eps 0.5 and 10 iterations', async () => {
    const e = engine();
    const s = roundToF32({ shape: [2, 3], data: Float64Array.from(S) });
    const q = await sinkhorn(upload(e, s), { epsilon: 0.5, iterations: 10 }).read();
    expectClose(q, R.sinkhorn(s, 0.5, 10), codesTol(2, 3, 0.5, 10), 'eps 0.5, 10 iterations');
    // Not the defaults' codes: with eps 0.05 the first code underflows to about 1e-27.
    const d = await sinkhorn(upload(e, s), undefined).read();
    expectClose(d, R.sinkhorn(s, 0.05, 3), codesTol(2, 3, 0.05, 3), 'defaults');
    expect(Math.abs(q[0] - d[0])).toBeGreaterThan(1e-5);
  });
});

describe('recording', () => {
  it('carries no gradient and takes 1 or 2 x iterations dispatches', async () => {
    const e = engine();
    const s = e.tensor(scores(8, 5, 17).data, [8, 5], { requiresGrad: true });
    const small = sinkhorn(s);
    expect(small.requiresGrad).toBe(false);
    await small.read();
    expect(e.lastRun.dispatches).toBe(1);
    await sinkhorn(s, { iterations: 4, schedule: 'passes' }).read();
    expect(e.lastRun.dispatches).toBe(8);
  });

  it('rejects bad arguments, naming the op, the argument and the value', () => {
    const e = engine();
    const s = e.zeros([3, 4]);
    const bad: [() => unknown, RegExp][] = [
      [() => sinkhorn(s, { epsilon: 0 }), /sinkhorn: epsilon must be > 0, got 0/],
      [() => sinkhorn(s, { epsilon: -0.05 }), /sinkhorn: epsilon must be > 0, got -0.05/],
      [() => sinkhorn(s, { epsilon: NaN }), /sinkhorn: epsilon must be a finite number, got NaN/],
      [() => sinkhorn(s, { iterations: 0 }), /sinkhorn: iterations must be an integer >= 1, got 0/],
      [() => sinkhorn(s, { iterations: 2.5 }),
        /sinkhorn: iterations must be an integer >= 1, got 2.5/],
      [() => sinkhorn(s, { iterations: '3' as never }),
        /sinkhorn: iterations must be an integer >= 1, got "3"/],
      [() => sinkhorn(s, { schedule: 'fast' as never }),
        /sinkhorn: schedule must be 'auto', 'small' or 'passes', got "fast"/],
      [() => sinkhorn(e.zeros([12])), /sinkhorn: scores must have rank 2, got .* \[12\]/],
      [() => sinkhorn(e.zeros([2, 3, 4])), /sinkhorn: scores must have rank 2, got .* \[2, 3, 4\]/],
    ];
    for (const [f, msg] of bad) {
      expect(f).toThrow(OpArgumentError);
      expect(f).toThrow(msg);
    }
  });
});
