// Batch norm on the GPU against the float64 reference: training and eval, fused ReLU,
// running statistics updated in place, the saved statistics, and the argument checks.

import { describe, expect, it } from 'vitest';
import { grad, type Engine, type Tensor } from '../../src/node.js';
import { BN_CHUNK, batchNorm, batchNormSaved, setBatchNormTiling }
  from '../../src/ops/batchnorm.js';
import * as R from '../../src/reference/index.js';
import { TOL, type Tolerance } from '../../src/reference/compare.js';
import { dispatchedEntries, expectClose, randomInput, upload, useEngine }
  from '../helpers/gpu.js';

const engine = useEngine();
const EPS = 1e-5;

/** x with a per-tensor offset, so that the variance is computed next to a large mean. */
function inputX(shape: number[], seed: number, offset = 3): R.RefTensor {
  const x = randomInput(shape, seed, 2);
  for (let i = 0; i < x.data.length; i++) x.data[i] += offset;
  return R.roundToF32(x);
}

function channelVector(C: number, seed: number, positive = false): R.RefTensor {
  const t = randomInput([C], seed);
  if (positive) for (let i = 0; i < C; i++) t.data[i] = Math.abs(t.data[i]) + 0.5;
  return R.roundToF32(t);
}

function maxAbs(t: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < t.length; i++) m = Math.max(m, Math.abs(t[i]));
  return m;
}

/** Values of a channel that one GPU thread sums in sequence: a chunk, then the merge. */
function sequenceLength(m: number): number {
  return m <= BN_CHUNK ? m : BN_CHUNK + Math.ceil(m / BN_CHUNK);
}

/**
 * Tolerance of y and the running statistics. The mean and the variance are sums of
 * positive terms (x carries a positive offset; squares), of n = sequenceLength(m) terms in
 * sequence, so their relative error is at most the reduction tier's 4 sqrt(n) u. An error
 * e |mean| in the mean moves y by e |mean| invStd |gamma|, and one of e in invStd moves it
 * by e |xhat gamma|: both are below e times `mag` = max|x| max(invStd) max|gamma|. On top,
 * the elementwise tier for the few rounded operations of the map itself.
 */
function forwardTol(m: number, mag: number): Tolerance {
  const e = TOL.f32Reduction(sequenceLength(m)).rtol;
  return { atol: e * mag + TOL.f32Elementwise.atol, rtol: TOL.f32Elementwise.rtol };
}

/**
 * dgamma and dbeta are sums of m terms dy xhat and dy of size ~1 and random sign: the
 * reduction tier with n = m (its atol covers cancellation), or the gradient tier, whichever
 * is looser: dgamma also carries the error of invStd and of the mean.
 */
function sumTol(m: number): Tolerance {
  const r = TOL.f32Reduction(m, 4);
  return { atol: Math.max(r.atol, TOL.gradient.atol), rtol: Math.max(r.rtol, TOL.gradient.rtol) };
}

interface Case {
  shape: number[];
  relu?: boolean;
  training?: boolean;
  seed?: number;
  offset?: number;
  needs?: [boolean, boolean, boolean];
}

/** Runs batchNorm forward and backward in one run and checks every output. */
async function checkBatchNorm(e: Engine, c: Case): Promise<void> {
  const { shape, relu = false, training = true, seed = 1, offset = 3 } = c;
  const needs = c.needs ?? [true, true, true];
  const C = shape[1];
  const x = inputX(shape, seed, offset);
  const gamma = channelVector(C, seed + 1);
  const beta = channelVector(C, seed + 2);
  const rm = channelVector(C, seed + 3);
  const rv = channelVector(C, seed + 4, true);
  const dyRef = randomInput(shape, seed + 5);
  const X = upload(e, x, needs[0], 'x');
  const G = upload(e, gamma, needs[1], 'gamma');
  const B = upload(e, beta, needs[2], 'beta');
  const opts = training ? { training, relu } : { training, relu, runningMean: upload(e, rm),
    runningVar: upload(e, rv) };
  const y = batchNorm(X, G, B, opts);
  const saved = batchNormSaved(y);
  const wrt = [X, G, B].filter((_, i) => needs[i]);
  const grads = grad(y, wrt, { seed: upload(e, dyRef) }) as Tensor[];
  const values = await e.run([], [y, saved.mean, saved.invStd, ...grads]);

  const m = x.data.length / C;
  let yRef: R.RefTensor;
  let mean: R.RefTensor;
  let invStd: R.RefTensor;
  if (training) {
    ({ y: yRef, mean, invStd } = R.batchNormTrain(x, gamma, beta, EPS));
  } else {
    yRef = R.batchNormEval(x, gamma, beta, rm, rv, EPS);
    mean = rm;
    invStd = R.ref([C], (k) => 1 / Math.sqrt(rv.data[k] + EPS));
  }
  // The fused ReLU: y clamped at 0 and dy masked where it was.
  const dy = R.clone(dyRef);
  if (relu) {
    let clamped = 0;
    for (let i = 0; i < yRef.data.length; i++) {
      if (yRef.data[i] <= 0) {
        yRef.data[i] = 0;
        dy.data[i] = 0;
        clamped++;
      }
    }
    // The mask must matter: some outputs clamped, some not.
    expect(clamped, 'clamped outputs').toBeGreaterThan(0);
    expect(clamped, 'clamped outputs').toBeLessThan(yRef.data.length);
  }
  const mag = maxAbs(x.data) * maxAbs(invStd.data) * maxAbs(gamma.data);
  const name = `batchNorm ${training ? 'train' : 'eval'}${relu ? '+relu' : ''} ` +
    `${JSON.stringify(shape)}`;
  expectClose(values[0], yRef, forwardTol(m, mag), `${name} y`);
  expectClose(values[1], mean, forwardTol(m, maxAbs(x.data)), `${name} saved mean`);
  expectClose(values[2], invStd, forwardTol(m, 1), `${name} saved invStd`);
  const ref = training ? R.batchNormBackward(dy, x, gamma, mean, invStd)
    : R.batchNormEvalBackward(dy, x, gamma, rm, rv, EPS);
  const refs = [ref.dx, ref.dgamma, ref.dbeta].filter((_, i) => needs[i]);
  const tols = [TOL.gradient, sumTol(m), sumTol(m)].filter((_, i) => needs[i]);
  const names = ['dx', 'dgamma', 'dbeta'].filter((_, i) => needs[i]);
  refs.forEach((r, k) => expectClose(values[3 + k], r, tols[k], `${name} ${names[k]}`));
}

describe('batchNorm training: batch statistics, forward and backward', () => {
  const shapes = [
    [2, 1], // the smallest batch that has a variance
    [5, 3], [64, 37], [3, 1, 5, 7], [1, 3, 2, 2], [4, 3, 5, 7], [2, 5, 1, 1], [7, 2, 13, 3],
    // m = BN_CHUNK: one chunk exactly; m = BN_CHUNK + 1: a second chunk of one value.
    [2, 3, 32, 16], [BN_CHUNK + 1, 2],
  ];
  for (const shape of shapes) {
    it(`${JSON.stringify(shape)}`, async () => {
      await checkBatchNorm(engine(), { shape });
    });
  }

  it('N H W = 128 x 28 x 28 per channel: 98 chunks merged', async () => {
    await checkBatchNorm(engine(), { shape: [128, 2, 28, 28], seed: 11 });
  });

  it('a mean 1000 times the spread (two-pass variance, no cancellation)', async () => {
    await checkBatchNorm(engine(), { shape: [40, 3, 5, 5], offset: 2000, seed: 12 });
  });

  // Planes of 4 and 196 values run the vec4 kernels (apply4, grad_input4); 35 and 81 do not.
  it('fused ReLU: zero below, dy masked by the output', async () => {
    for (const shape of [[6, 5], [3, 4, 5, 7], [64, 2, 9, 9], [5, 3, 4, 4], [2, 7, 14, 14]]) {
      await checkBatchNorm(engine(), { shape, relu: true, seed: 13 });
    }
  });

  it('runs the vec4 kernels where every plane holds a multiple of 4 values', async () => {
    const e = engine();
    const entries = (shape: number[]) => dispatchedEntries(e, () => {
      const x = e.tensor(randomInput(shape, 3).data, shape, { requiresGrad: true });
      const y = batchNorm(x, e.tensor([1, 1, 1], [3]), e.tensor([0, 0, 0], [3]),
        { training: true, relu: true });
      return [y, ...grad(y, [x], { seed: e.tensor(randomInput(shape, 4).data, shape) }) as
        Tensor[]];
    });
    const perElement = (names: string[]) => names.filter((n) => /apply|grad_input/.test(n));
    expect(perElement(await entries([2, 3, 4, 4]))).toEqual(['apply4', 'grad_input4']);
    expect(perElement(await entries([2, 3, 14, 14]))).toEqual(['apply4', 'grad_input4']);
    expect(perElement(await entries([2, 3, 7, 7]))).toEqual(['apply', 'grad_input']);
    expect(perElement(await entries([5, 3]))).toEqual(['apply', 'grad_input']);
  });

  // The GPU tiling (one vec4 or four floats a thread) and odd runs, on lavapipe.
  for (const RUN of [1, 3, 4]) {
    it(`RUN ${RUN} elements a thread (planes of 4, 35 and 196 values; ReLU)`, async () => {
      const e = engine();
      setBatchNormTiling(e, { RUN });
      try {
        await checkBatchNorm(e, { shape: [5, 3, 4, 4], relu: true, seed: 60 + RUN });
        await checkBatchNorm(e, { shape: [3, 4, 5, 7], seed: 70 + RUN });
        await checkBatchNorm(e, { shape: [2, 7, 14, 14], relu: true, seed: 80 + RUN });
        const entries = await dispatchedEntries(e, () => [batchNorm(e.zeros([2, 3, 4, 4]),
          e.tensor([1, 1, 1], [3]), e.tensor([0, 0, 0], [3]), { training: true })]);
        expect(entries).toContain(RUN % 4 === 0 ? 'apply4' : 'apply');
      } finally {
        setBatchNormTiling(e, null);
      }
    });
  }

  it('one element a thread past 65535 workgroups (4 198 401 values, 65 601 workgroups)',
    async () => {
      const e = engine();
      setBatchNormTiling(e, { RUN: 1 });
      try {
        expect(Math.ceil(2049 * 2049 / 64)).toBeGreaterThan(65_535);
        await checkBatchNorm(e, { shape: [1, 1, 2049, 2049], relu: true, seed: 90 });
      } finally {
        setBatchNormTiling(e, null);
      }
      expect(() => setBatchNormTiling(e, { RUN: 0 }))
        .toThrow(/setBatchNormTiling: RUN must be an integer in 1..1024, got 0/);
      expect(() => setBatchNormTiling(e, { RUN: '4' as never }))
        .toThrow(/setBatchNormTiling: RUN must be an integer in 1..1024, got "4"/);
    });

  it('only dx (frozen affine) and only dgamma, dbeta (x a leaf without gradient)', async () => {
    await checkBatchNorm(engine(), { shape: [4, 3, 5, 7], needs: [true, false, false] });
    await checkBatchNorm(engine(), { shape: [4, 3, 5, 7], needs: [false, true, true] });
  });

  it('is deterministic: the same input gives bit-identical outputs and gradients', async () => {
    const e = engine();
    const x = inputX([16, 3, 40, 40], 14);
    const runOnce = async () => {
      const X = upload(e, x, true);
      const G = e.tensor([1, 2, 3], [3], { requiresGrad: true });
      const y = batchNorm(X, G, e.tensor([0, 0, 0], [3]), { training: true });
      const [dx, dg] = grad(y, [X, G], { seed: e.tensor(x.data, x.shape) }) as Tensor[];
      return e.run([], [y, dx, dg]);
    };
    const a = await runOnce();
    const b = await runOnce();
    a.forEach((v, k) => expect(Buffer.from(v.buffer).equals(Buffer.from(b[k].buffer))).toBe(true));
  });
});

describe('batchNorm running statistics', () => {
  it('two training steps update them in place (momentum 0.3, unbiased variance)', async () => {
    const e = engine();
    const shape = [6, 4, 3, 5];
    const C = 4;
    const rmRef = channelVector(C, 20);
    const rvRef = channelVector(C, 21, true);
    const rm = upload(e, rmRef, false, 'running mean');
    const rv = upload(e, rvRef, false, 'running var');
    const gamma = channelVector(C, 22);
    const beta = channelVector(C, 23);
    let mag = 0;
    for (const step of [0, 1]) {
      const x = inputX(shape, 24 + step, 1 + step);
      mag = Math.max(mag, maxAbs(x.data));
      const y = batchNorm(upload(e, x), upload(e, gamma), upload(e, beta),
        { training: true, runningMean: rm, runningVar: rv, momentum: 0.3 });
      // Only y is read: the update runs in the same submission because the node mutates.
      await y.read();
      const r = R.batchNormTrain(x, gamma, beta, EPS);
      R.updateRunningStats(rmRef, rvRef, r.mean, r.varUnbiased, 0.3);
    }
    const m = 6 * 15;
    expectClose(await rm.read(), rmRef, forwardTol(m, mag), 'running mean after 2 steps');
    expectClose(await rv.read(), rvRef, forwardTol(m, mag * mag), 'running var after 2 steps');
  });

  it('two pending steps in one run apply in creation order', async () => {
    const e = engine();
    const C = 3;
    const rmRef = R.zeros([C]);
    const rvRef = R.full([C], 1);
    const rm = upload(e, rmRef);
    const rv = upload(e, rvRef);
    const ones = R.full([C], 1);
    const zero = R.zeros([C]);
    const xs = [inputX([5, C], 30), inputX([5, C], 31, -2)];
    for (const x of xs) {
      // Nothing reads these outputs: the nodes run because they mutate rm and rv.
      batchNorm(upload(e, x), upload(e, ones), upload(e, zero),
        { training: true, runningMean: rm, runningVar: rv });
      const r = R.batchNormTrain(x, ones, zero, EPS);
      R.updateRunningStats(rmRef, rvRef, r.mean, r.varUnbiased, 0.1);
    }
    const [a, b] = await e.run([], [rm, rv]);
    expectClose(a, rmRef, forwardTol(5, 8), 'running mean');
    expectClose(b, rvRef, forwardTol(5, 64), 'running var');
  });

  it('momentum 0 keeps them; momentum 1 replaces them with the batch statistics', async () => {
    const e = engine();
    const x = inputX([9, 2], 40);
    const one = R.full([2], 1);
    const r = R.batchNormTrain(x, one, R.zeros([2]), EPS);
    for (const momentum of [0, 1]) {
      const rm = e.tensor([5, -5], [2]);
      const rv = e.tensor([2, 3], [2]);
      batchNorm(upload(e, x), upload(e, one), e.zeros([2]),
        { training: true, runningMean: rm, runningVar: rv, momentum });
      const [a, b] = await e.run([], [rm, rv]);
      const tol = forwardTol(9, 64);
      expectClose(a, momentum ? r.mean : [5, -5], tol, `running mean, momentum ${momentum}`);
      expectClose(b, momentum ? r.varUnbiased : [2, 3], tol, `running var, momentum ${momentum}`);
    }
  });
});

describe('batchNorm eval: running statistics', () => {
  for (const [shape, relu] of [[[5, 3], false], [[3, 4, 5, 7], false], [[2, 3, 4, 4], true],
    [[1, 1, 1, 1], false], [[BN_CHUNK + 3, 2], true]] as [number[], boolean][]) {
    it(`${JSON.stringify(shape)}${relu ? ' with ReLU' : ''}`, async () => {
      await checkBatchNorm(engine(), { shape, relu, training: false, seed: 50, offset: 0 });
    });
  }

  it('only dx when gamma and beta are frozen', async () => {
    await checkBatchNorm(engine(), { shape: [3, 4, 5, 7], training: false,
      needs: [true, false, false] });
  });
});

describe('batchNorm with relu keeps NaN', () => {
  // Planes of 16 (the vec4 kernel) and of 5 (the scalar one).
  for (const shape of [[2, 3, 4, 4], [2, 3, 1, 5]]) {
    it(`training ${JSON.stringify(shape)}: a NaN makes its channel NaN, not 0`, async () => {
      const e = engine();
      const x = randomInput(shape, 31);
      const plane = shape[2] * shape[3];
      x.data[plane + 2] = NaN; // image 0, channel 1
      const y = batchNorm(upload(e, x), e.tensor([1, 1, 1], [3]), e.tensor([0, 0, 0], [3]),
        { training: true, relu: true });
      const v = await y.read();
      for (let n = 0; n < shape[0]; n++) {
        for (let c = 0; c < 3; c++) {
          const at = v.subarray((n * 3 + c) * plane, (n * 3 + c + 1) * plane);
          if (c === 1) expect(Array.from(at).every(Number.isNaN)).toBe(true);
          else expect(Array.from(at).every((t) => t >= 0)).toBe(true);
        }
      }
    });
  }

  it('eval: only the NaN element is NaN', async () => {
    const e = engine();
    const x = e.tensor([-1, NaN, 2, -3, 4, NaN, 0, 1], [2, 4]);
    const y = batchNorm(x, e.tensor([1, 1, 1, 1], [4]), e.tensor([0, 0, 0, 0], [4]),
      { training: false, relu: true, runningMean: e.tensor([0, 0, 0, 0], [4]),
        runningVar: e.tensor([1, 1, 1, 1], [4]) });
    const v = await y.read();
    expect(Array.from(v, Number.isNaN)).toEqual([false, true, false, false, false, true, false,
      false]);
    const s = 1 / Math.sqrt(1 + 1e-5);
    expect(Array.from(v).filter((t) => !Number.isNaN(t)).map((t) => t / s))
      .toEqual([0, 2, 0, 4, 0, 1].map((t) => expect.closeTo(t, 6)));
  });
});

describe('batchNorm past 65 535 workgroups', () => {
  it('[2, 4 194 400]: one statistics thread per channel, 65 538 workgroups of 64', async () => {
    const e = engine();
    const C = 65_538 * 64 - 32;
    // Exact multiples of 1/64 from a multiplicative hash: randn is too slow at 8 million.
    const cheap = (n: number, salt: number) => R.ref([n], (i) =>
      ((Math.imul(i + salt, 2654435761) >>> 0) % 2001 - 1000) / 64);
    const x = cheap(2 * C, 1);
    x.shape = [2, C];
    const gamma = cheap(C, 2);
    const beta = cheap(C, 3);
    const y = batchNorm(upload(e, x), upload(e, gamma), upload(e, beta), { training: true });
    const saved = batchNormSaved(y);
    const [yv, mv] = await e.run([], [y, saved.mean]);
    const r = R.batchNormTrain(x, gamma, beta, EPS);
    // Two values per channel, multiples of 1/64: their sum and differences are exact, so
    // y's error is invStd's (relative) times |xhat gamma| <= 1 x 15.7.
    expectClose(mv, r.mean, forwardTol(2, 16), 'mean');
    expectClose(yv, r.y, forwardTol(2, 16), 'y');
  });
});

describe('batchNorm argument checks', () => {
  const cases: [string, (e: Engine) => unknown, RegExp][] = [
    ['gamma of the wrong length', (e) => batchNorm(e.zeros([4, 3]), e.zeros([4]), e.zeros([3]),
      { training: true }),
    /batchNorm: gamma must be \[3\] \(one value per channel of x \[4, 3\]\), got .*\[4\]/],
    ['beta of rank 2', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3, 1]),
      { training: true }), /batchNorm: beta must be \[3\].*got .*\[3, 1\]/],
    ['rank 3 input', (e) => batchNorm(e.zeros([4, 3, 5]), e.zeros([3]), e.zeros([3]),
      { training: true }), /batchNorm: x must have rank 2 or 4, got .*\[4, 3, 5\]/],
    ['eps = 0', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3]),
      { training: true, eps: 0 }), /batchNorm: eps must be > 0, got 0/],
    ['eps NaN', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3]),
      { training: true, eps: NaN }), /batchNorm: eps must be a finite number, got NaN/],
    ['momentum above 1', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3]),
      { training: true, momentum: 1.5 }), /batchNorm: momentum must lie in \[0, 1\], got 1.5/],
    ['momentum below 0', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3]),
      { training: true, momentum: -0.1 }), /momentum must lie in \[0, 1\], got -0.1/],
    ['running mean of the wrong shape', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]),
      e.zeros([3]), { training: true, runningMean: e.zeros([2]), runningVar: e.zeros([3]) }),
    /batchNorm: runningMean must be \[3\].*got .*\[2\]/],
    ['running var of the wrong shape', (e) => batchNorm(e.zeros([2, 3, 4, 4]), e.zeros([3]),
      e.zeros([3]), { training: false, runningMean: e.zeros([3]), runningVar: e.zeros([1, 3]) }),
    /batchNorm: runningVar must be \[3\].*got .*\[1, 3\]/],
    ['one running tensor without the other', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]),
      e.zeros([3]), { training: true, runningMean: e.zeros([3]) }),
    /runningMean and runningVar must be given together/],
    ['eval without running statistics', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]),
      e.zeros([3]), { training: false }), /eval mode \(training: false\) needs runningMean/],
    ['training on one value per channel', (e) => batchNorm(e.zeros([1, 3, 1, 1]), e.zeros([3]),
      e.zeros([3]), { training: true }),
    /training needs more than one value per channel, x is .*\[1, 3, 1, 1\]/],
    ['running statistics that are not leaves', (e) => {
      // The saved mean of another batchNorm: a pending node output of shape [2].
      const nonLeaf = batchNormSaved(batchNorm(e.zeros([2, 2]), e.zeros([2]), e.zeros([2]),
        { training: true })).mean;
      return batchNorm(e.zeros([4, 2]), e.zeros([2]), e.zeros([2]),
        { training: true, runningMean: nonLeaf, runningVar: e.zeros([2]) });
    }, /runningMean .* is updated in place, so it must be a leaf tensor \(state pending, produced/],
    ['training not a boolean', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3]),
      { training: 'yes' } as never), /options.training must be true or false, got "yes"/],
    ['relu not a boolean', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3]),
      { training: true, relu: 1 } as never), /options.relu must be true or false, got 1/],
    ['relu a string', (e) => batchNorm(e.zeros([4, 3]), e.zeros([3]), e.zeros([3]),
      { training: true, relu: 'false' } as never),
    /options.relu must be true or false, got "false"/],
  ];
  for (const [what, call, message] of cases) {
    it(what, () => {
      expect(() => call(engine())).toThrow(message);
    });
  }
});

describe('batchNorm options from plain JavaScript', () => {
  /** batchNorm as plain JavaScript sees it: any arguments. */
  const js = batchNorm as (...args: unknown[]) => Tensor;
  const keys = 'training, runningMean, runningVar, momentum, eps, relu';
  // x [[1, 2], [3, 4]]: each column has mean +-1 around its own and biased variance 1.
  const args = (e: Engine) => [e.tensor([1, 2, 3, 4], [2, 2]), e.tensor([1, 1], [2]),
    e.tensor([0, 0], [2])];

  it('options are required, one object, of known keys', () => {
    const e = engine();
    expect(() => js(...args(e))).toThrow(
      `batchNorm: options are required, as in batchNorm(x, gamma, beta, { ${keys} })`);
    expect(() => js(...args(e), true)).toThrow(
      `batchNorm: options must be one object, as in batchNorm(x, gamma, beta, { ${keys} }); ` +
      'got true');
    expect(() => js(...args(e), { train: true })).toThrow(
      `batchNorm: unknown option "train" (did you mean "training"?); batchNorm takes ${keys}`);
    expect(() => js(...args(e), { training: true, running_mean: e.zeros([2]) })).toThrow(
      'batchNorm: unknown option "running_mean" (did you mean "runningMean"?)');
    expect(() => js(...args(e), { training: true }, 1e-3)).toThrow('batchNorm: the options ' +
      'object must be the last argument, as in batchNorm(x, gamma, beta, { ... }); got 0.001 ' +
      'after it');
    expect(() => setBatchNormTiling(e, { run: 4 } as never)).toThrow('setBatchNormTiling: ' +
      'unknown key "run" in tiling (did you mean "RUN"?); tiling takes RUN');
  });

  it('valid options still set eps and the fused relu', async () => {
    const e = engine();
    // (x - mean) / sqrt(1 + 3) = -+0.5, then relu.
    expect(Array.from(await js(...args(e), { training: true, eps: 3 }).read()))
      .toEqual([-0.5, -0.5, 0.5, 0.5]);
    expect(Array.from(await js(...args(e), { training: true, eps: 3, relu: true }).read()))
      .toEqual([0, 0, 0.5, 0.5]);
  });
});
