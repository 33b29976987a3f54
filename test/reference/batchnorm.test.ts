// Batch norm: statistics, running averages, eval mode, and both backward modes.

import { describe, expect, it } from 'vitest';
import {
  batchNormBackward, batchNormEval, batchNormEvalBackward, batchNormTrain, updateRunningStats,
} from '../../src/reference/batchnorm.js';
import { mulberry32 } from '../../src/reference/random.js';
import { randn, ref, uniform } from '../../src/reference/tensor.js';
import { expectClose, expectGrads } from './helpers.js';

describe('batchNormTrain', () => {
  it('[N, C] by hand: channel 0 is [1, 3], channel 1 is [2, 6]', () => {
    const x = ref([2, 2], [1, 2, 3, 6]);
    const r = batchNormTrain(x, ref([2], [1, 2]), ref([2], [0, 10]), 0);
    expectClose(r.mean.data, [2, 4]);
    // Biased variances 1 and 4; unbiased (m = 2) 2 and 8.
    expectClose(r.invStd.data, [1, 0.5]);
    expectClose(r.varUnbiased.data, [2, 8]);
    // xhat = [-1, 1] in both channels; y = xhat gamma + beta
    expectClose(r.y.data, [-1, 8, 1, 12]);
  });

  it('[N, C, H, W] pools N, H and W; eps enters under the square root', () => {
    const x = ref([2, 1, 1, 2], [0, 2, 4, 6]);
    const r = batchNormTrain(x, ref([1], [1]), ref([1], [0]), 1);
    expectClose(r.mean.data, [3]);
    // Biased variance (9 + 1 + 1 + 9) / 4 = 5, so invStd = 1 / sqrt(6); unbiased 20 / 3.
    expectClose(r.invStd.data, [1 / Math.sqrt(6)]);
    expectClose(r.varUnbiased.data, [20 / 3]);
    expectClose(r.y.data, [-3, -1, 1, 3].map((v) => v / Math.sqrt(6)));
  });

  it('one value per channel is an error, as in PyTorch', () => {
    expect(() => batchNormTrain(ref([1, 2], [1, 2]), ref([2], [1, 1]), ref([2], [0, 0]), 1e-5))
      .toThrow(/more than one value per channel/);
  });

  it('updateRunningStats: r = (1 - m) r + m batch, with the unbiased variance', () => {
    const rm = ref([2], [0, 1]);
    const rv = ref([2], [1, 1]);
    updateRunningStats(rm, rv, ref([2], [2, 4]), ref([2], [2, 8]), 0.1);
    expectClose(rm.data, [0.2, 1.3]);
    expectClose(rv.data, [1.1, 1.7]);
  });

  it('eval mode uses the running statistics', () => {
    const y = batchNormEval(ref([1, 2], [3, 5]), ref([2], [2, 1]), ref([2], [1, 0]),
      ref([2], [1, 1]), ref([2], [4, 15]), 0);
    expectClose(y.data, [(3 - 1) / 2 * 2 + 1, (5 - 1) / Math.sqrt(15)]);
  });
});

describe('batch norm backward against finite differences', () => {
  for (const shape of [[2, 1], [5, 3], [2, 3, 3, 5], [1, 2, 1, 3], [3, 1, 2, 1]]) {
    it(`training mode (through the batch statistics) [${shape}]`, () => {
      const rng = mulberry32(shape.reduce((s, d) => s * 5 + d, 0));
      const x = randn(shape, rng);
      const C = shape[1];
      const gamma = uniform([C], rng, 0.5, 2);
      const beta = randn([C], rng);
      const eps = 1e-5;
      const { mean, invStd } = batchNormTrain(x, gamma, beta, eps);
      expectGrads('batchNorm backward', ([v, g, b]) => batchNormTrain(v, g, b, eps).y,
        [x, gamma, beta], (dy) => {
          const r = batchNormBackward(dy, x, gamma, mean, invStd);
          return [r.dx, r.dgamma, r.dbeta];
        });
    });

    it(`eval mode [${shape}]`, () => {
      const rng = mulberry32(shape.reduce((s, d) => s * 3 + d, 1));
      const x = randn(shape, rng);
      const C = shape[1];
      const gamma = randn([C], rng);
      const beta = randn([C], rng);
      const rm = randn([C], rng);
      const rv = uniform([C], rng, 0.5, 2);
      expectGrads('batchNorm eval backward',
        ([v, g, b]) => batchNormEval(v, g, b, rm, rv, 1e-5), [x, gamma, beta], (dy) => {
          const r = batchNormEvalBackward(dy, x, gamma, rm, rv, 1e-5);
          return [r.dx, r.dgamma, r.dbeta];
        });
    });
  }

  it('training-mode dx sums to zero per channel (the mean is removed)', () => {
    const rng = mulberry32(77);
    const x = randn([4, 2], rng);
    const gamma = ref([2], [1, 3]);
    const { mean, invStd } = batchNormTrain(x, gamma, ref([2], [0, 0]), 1e-5);
    const { dx } = batchNormBackward(randn([4, 2], rng), x, gamma, mean, invStd);
    for (let c = 0; c < 2; c++) {
      let s = 0;
      for (let n = 0; n < 4; n++) s += dx.data[n * 2 + c];
      expect(Math.abs(s)).toBeLessThan(1e-12);
    }
  });
});
