// Softmax, log-softmax and the soft-target cross-entropy on the GPU against the float64
// reference, forward and backward, over row counts and lengths that break the 64-wide
// workgroups, temperatures down to 0.1, and a batch past 65535 workgroups.

import { describe, expect, it } from 'vitest';
import { OpArgumentError } from '../../src/gpu/errors.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { grad } from '../../src/graph/autodiff.js';
import * as ops from '../../src/ops/softmax.js';
import { TOL, type Tolerance } from '../../src/reference/compare.js';
import { mulberry32 } from '../../src/reference/random.js';
import * as R from '../../src/reference/softmax.js';
import { type RefTensor, ref, roundToF32, uniform } from '../../src/reference/tensor.js';
import { checkOp, expectClose, randomInput, upload, useEngine } from '../helpers/gpu.js';

const engine = useEngine();
const U = 2 ** -24;

function maxAbs(t: RefTensor, temperature: number): number {
  let m = 0;
  for (const v of t.data) m = Math.max(m, Math.abs(v / temperature));
  return m;
}

/**
 * softmax = exp(z - lse): the argument carries a few ulp of |z| <= zMax as absolute error
 * (z = x * (1/T), lse's own rounding), which exp turns into the same relative error of the
 * output; so f32Elementwise plus 4 zMax u relative.
 */
function expTol(zMax: number): Tolerance {
  return { atol: TOL.f32Elementwise.atol, rtol: TOL.f32Elementwise.rtol + 4 * zMax * U };
}

/**
 * log-softmax = z - lse: an absolute error of a few ulp of zMax, plus lse's log of a sum of
 * K terms in (0, 1] (relative error of the sum ~ f32Reduction(K) becomes absolute after log).
 */
function logTol(zMax: number, K: number): Tolerance {
  return { atol: TOL.f32Elementwise.atol + 4 * zMax * U + TOL.f32Reduction(K).rtol,
    rtol: TOL.f32Elementwise.rtol };
}

/** Soft targets: positive, rows summing to about 1 but not exactly (SwAV's codes do not). */
function softTargets(shape: [number, number], seed: number): RefTensor {
  const rng = mulberry32(seed);
  const [N, K] = shape;
  const q = uniform(shape, rng, 0, 1);
  for (let r = 0; r < N; r++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += q.data[r * K + k];
    const total = 0.9 + 0.2 * rng();
    for (let k = 0; k < K; k++) q.data[r * K + k] *= total / s;
  }
  return roundToF32(q);
}

// [rows, cols, temperature, input scale]: one row, one column, primes, a SwAV-sized row of
// 3000 prototypes at T = 0.1, rows not a multiple of 64, exactly 64 rows.
const CASES: [number, number, number, number][] = [
  [1, 1, 1, 1], [1, 3000, 0.1, 1], [7, 13, 0.5, 2], [64, 3, 1, 1], [65, 257, 0.1, 1],
  [300, 31, 0.25, 3],
];

describe('softmax and log-softmax', () => {
  for (const [N, K, T, scale] of CASES) {
    it(`softmax [${N}, ${K}] at T = ${T}`, async () => {
      const x = randomInput([N, K], 10 + N, scale);
      await checkOp(engine(), {
        name: 'softmax', inputs: [x], gpu: ([t]) => ops.softmax(t, T),
        refForward: ([t]) => R.softmax(t, T),
        refBackward: (dy, [t]) => [R.softmaxBackward(dy, R.softmax(t, T), T)],
        tol: expTol(maxAbs(x, T)), gradTol: TOL.gradient,
      });
    });
    it(`logSoftmax [${N}, ${K}] at T = ${T}`, async () => {
      const x = randomInput([N, K], 20 + N, scale);
      await checkOp(engine(), {
        name: 'logSoftmax', inputs: [x], gpu: ([t]) => ops.logSoftmax(t, T),
        refForward: ([t]) => R.logSoftmax(t, T),
        refBackward: (dy, [t]) => [R.logSoftmaxBackward(dy, R.logSoftmax(t, T), T)],
        tol: logTol(maxAbs(x, T), K), gradTol: TOL.gradient,
      });
    });
  }

  it('softmax over the last axis of a rank-3 tensor', async () => {
    const x = randomInput([2, 3, 5], 31);
    const flat = (t: RefTensor) => ref([6, 5], t.data);
    await checkOp(engine(), {
      name: 'softmax rank 3', inputs: [x], gpu: ([t]) => ops.softmax(t, 0.5),
      refForward: ([t]) => ref([2, 3, 5], R.softmax(flat(t), 0.5).data),
      tol: expTol(maxAbs(x, 0.5)),
    });
  });

  it('4 194 307 rows of one: past 65535 workgroups, forward and backward', async () => {
    const e = engine();
    // A softmax over one value is exactly 1 (its log 0) and passes no gradient; a row the
    // folded grid missed would keep the pool's stale or zero bytes.
    const N = 64 * 65536 + 3;
    const x = e.tensor(new Float32Array(N).map((_, i) => (i % 7) - 3), [N, 1],
      { requiresGrad: true });
    const y = ops.softmax(x, 0.5);
    const ly = ops.logSoftmax(x, 0.5);
    const seed = e.tensor(new Float32Array(N).fill(1), [N, 1]);
    const [dx] = grad(y, [x], { seed });
    y.keep();
    const [yv, lv, dv] = await e.run([], [y, ly, dx!]);
    expect(yv.findIndex((v) => v !== 1), 'first softmax value other than 1').toBe(-1);
    expect(lv.findIndex((v) => v !== 0), 'first log-softmax value other than 0').toBe(-1);
    expect(dv.findIndex((v) => v !== 0), 'first gradient other than 0').toBe(-1);
  });

  it('stays finite for logits of 1e4 at T = 0.05 (max-shifted)', async () => {
    const e = engine();
    const x = ref([2, 4], [1e4, -1e4, 0, 1e4 - 1, 3, 2, 1, 0]);
    const y = await ops.softmax(upload(e, x), 0.05).read();
    expect(y.every(Number.isFinite)).toBe(true);
    expectClose(y, R.softmax(x, 0.05), expTol(maxAbs(x, 0.05)), 'softmax of 1e4');
  });
});

describe('softCrossEntropy', () => {
  for (const [N, K, T, scale] of CASES) {
    for (const reduction of ['mean', 'none'] as const) {
      it(`[${N}, ${K}] at T = ${T}, reduction ${reduction}`, async () => {
        const x = randomInput([N, K], 40 + N, scale);
        const q = softTargets([N, K], 50 + N);
        const zMax = maxAbs(x, T);
        // Each row's loss sums K terms q (lse - z) of size up to ~zMax, each with a few ulp
        // of zMax of absolute error; the mean adds a sum over N rows.
        const rowTol = TOL.f32Reduction(K, zMax + 1);
        const tol = { atol: rowTol.atol + 4 * zMax * U,
          rtol: rowTol.rtol + TOL.f32Reduction(N).rtol + 4 * zMax * U };
        await checkOp(engine(), {
          name: `softCrossEntropy ${reduction}`, inputs: [x, q],
          gpu: ([a, b]) => ops.softCrossEntropy(a, b, T, { reduction }),
          refForward: ([a, b]) => {
            const r = R.softCrossEntropy(a, b, T);
            return reduction === 'mean' ? ref([], [r.mean]) : r.perRow;
          },
          refBackward: (dy, [a, b]) => {
            const g = R.softCrossEntropyBackward(a, b, T, reduction === 'mean' ? dy.data[0] : dy);
            return [g.dlogits, g.dq];
          },
          tol, gradTol: TOL.gradient,
        });
      });
    }
  }

  it('computes only the logits gradient when q needs none (one backward kernel)', async () => {
    const e = engine();
    const x = randomInput([5, 11], 61);
    const q = softTargets([5, 11], 62);
    const xs = upload(e, x, true);
    const loss = ops.softCrossEntropy(xs, upload(e, q), 0.1);
    const [dx] = grad(loss, [xs]);
    expect(dx!.node!.op).toBe('softCrossEntropyGradLogits');
    const ref = R.softCrossEntropyBackward(x, q, 0.1, 1).dlogits;
    expectClose(await dx!.read(), ref, TOL.gradient, 'dlogits');
    // Forward: the row kernel and the mean; grad's seed of ones; backward: one kernel.
    expect(e.lastRun.dispatches, 'dispatches of the run').toBe(4);
  });

  it('is deterministic: the same input gives the same bits', async () => {
    const e = engine();
    const x = upload(e, randomInput([1000, 30], 63));
    const q = upload(e, softTargets([1000, 30], 64));
    const a = await ops.softCrossEntropy(x, q, 0.1).read();
    const b = await ops.softCrossEntropy(x, q, 0.1).read();
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('runs 4 194 307 rows: past 65535 workgroups in the forward and backward kernels', async () => {
    const e = engine();
    // 64 * 65536 + 3 rows of 2: the row kernels, forward and backward, need 65537
    // workgroups of 64 threads.
    const N = 64 * 65536 + 3;
    const rng = mulberry32(65);
    const x = ref([N, 2], (i) => Math.fround(rng() * 4 - 2));
    const q = ref([N, 2], (i) => (i % 2 === 0 ? 0.25 : 0.75));
    const xs = upload(e, x, true);
    const loss = ops.softCrossEntropy(xs, upload(e, q), 0.5, { reduction: 'none' });
    const [dx] = grad(loss, [xs], { seed: e.tensor(new Float32Array(N).fill(1), [N]) });
    loss.keep();
    const [lv, gv] = await e.run([], [loss, dx!]);
    const r = R.softCrossEntropy(x, q, 0.5);
    expectClose(lv, r.perRow, { atol: 1e-6, rtol: 1e-5 }, 'per-row loss');
    const ones = ref([N], new Float64Array(N).fill(1));
    expectClose(gv, R.softCrossEntropyBackward(x, q, 0.5, ones).dlogits, TOL.gradient, 'dlogits');
  });
});

describe('argument checks', () => {
  it('names the op, the argument and the value', () => {
    const e = engine();
    const x = e.zeros([3, 4]);
    const q = e.zeros([3, 4]);
    const bad: [() => unknown, RegExp][] = [
      [() => ops.softmax(x, 0), /softmax: temperature must be > 0, got 0/],
      [() => ops.logSoftmax(x, -1), /logSoftmax: temperature must be > 0, got -1/],
      [() => ops.softmax(x, NaN), /softmax: temperature must be a finite number, got NaN/],
      // PyTorch's softmax(x, dim) habit: a third argument was dropped without a word.
      [() => (ops.softmax as (...a: unknown[]) => unknown)(x, 0.5, -1),
        /softmax: takes at most 2 arguments, as in softmax\(x, temperature\); got -1 after/],
      [() => (ops.logSoftmax as (...a: unknown[]) => unknown)(x, 1, 'x'),
        /logSoftmax: takes at most 2 arguments.*got "x" after them/],
      [() => ops.softCrossEntropy(x, q, Infinity),
        /softCrossEntropy: temperature must be a finite number, got Infinity/],
      [() => ops.softCrossEntropy(x, e.zeros([3, 5])),
        /softCrossEntropy: logits and q must have the same shape, got \[3, 4\] and \[3, 5\]/],
      [() => ops.softCrossEntropy(e.zeros([12]), e.zeros([12])),
        /softCrossEntropy: logits must have rank 2, got .* \[12\]/],
      [() => ops.softCrossEntropy(x, q, 1, { reduction: 'sum' as 'mean' }),
        /softCrossEntropy: reduction must be 'mean' or 'none', got "sum"/],
      // A string is shown quoted: "got 0.5" read as if 0.5 itself had been refused.
      [() => ops.softmax(x, '0.5' as never),
        /softmax: temperature must be a finite number, got "0.5"$/],
      [() => ops.logSoftmax(x, null as never),
        /logSoftmax: temperature must be a finite number, got null$/],
      [() => ops.softCrossEntropy(x, q, 1, { reduction: 1 as never }),
        /softCrossEntropy: reduction must be 'mean' or 'none', got 1$/],
    ];
    for (const [f, msg] of bad) {
      expect(f).toThrow(OpArgumentError);
      expect(f).toThrow(msg);
    }
  });
});

describe('softCrossEntropy options from plain JavaScript', () => {
  /** softCrossEntropy as plain JavaScript sees it: any arguments. */
  const js = ops.softCrossEntropy as (...args: unknown[]) => Tensor;
  // Zero logits: every row's softmax is uniform over 4, so loss_i = (sum of q_i) ln 4.
  const args = () => {
    const e = engine();
    return [e.zeros([3, 4]), e.tensor([1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0], [3, 4])];
  };

  it('an unknown key, a non-object and a trailing argument are refused', () => {
    const form = 'softCrossEntropy(logits, q, temperature, { reduction })';
    expect(() => js(...args(), 1, { reduce: 'none' })).toThrow(OpArgumentError);
    expect(() => js(...args(), 1, { reduce: 'none' })).toThrow('softCrossEntropy: unknown ' +
      'option "reduce" (did you mean "reduction"?); softCrossEntropy takes reduction');
    expect(() => js(...args(), 1, 'none')).toThrow(
      `softCrossEntropy: options must be one object, as in ${form}; got "none"`);
    expect(() => js(...args(), { reduction: 'none' })).toThrow('softCrossEntropy: temperature ' +
      'must be a finite number, got { reduction: "none" }');
    expect(() => js(...args(), 1, {}, 'none')).toThrow('softCrossEntropy: the options object ' +
      'must be the last argument');
  });

  it('valid options still choose the reduction', async () => {
    const ln4 = Math.log(4);
    const rows = await js(...args(), 1, { reduction: 'none' }).read();
    expectClose(rows, Float64Array.from([ln4, 2 * ln4, 0]), TOL.f32Reduction(4), 'per row');
    const mean = await js(...args(), 1, {}).read();
    expectClose(mean, Float64Array.from([ln4]), TOL.f32Reduction(4), 'mean');
  });
});
