// Softmax family: hand values, temperature, stability, and the backward rules.

import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/reference/random.js';
import {
  logSoftmax, logSoftmaxBackward, softCrossEntropy, softCrossEntropyBackward, softmax,
  softmaxBackward,
} from '../../src/reference/softmax.js';
import { type RefTensor, randn, ref, uniform } from '../../src/reference/tensor.js';
import { FD, expectClose, expectGrads } from './helpers.js';
import { checkGrad } from '../../src/reference/finite-diff.js';

describe('softmax forward', () => {
  it('softmax([0, ln 2]) = [1/3, 2/3]; with T = 0.5 it is [1/5, 4/5]', () => {
    expectClose(softmax(ref([1, 2], [0, Math.log(2)])).data, [1 / 3, 2 / 3]);
    expectClose(softmax(ref([1, 2], [0, Math.log(2)]), 0.5).data, [1 / 5, 4 / 5]);
    expectClose(logSoftmax(ref([1, 2], [0, Math.log(2)])).data,
      [-Math.log(3), Math.log(2) - Math.log(3)]);
  });

  it('is stable for large logits and tiny temperatures', () => {
    const y = softmax(ref([1, 3], [1000, 1000, -1000]), 0.01);
    expectClose(y.data, [0.5, 0.5, 0]);
    const l = logSoftmax(ref([1, 2], [0, 1]), 0.001);
    expectClose(l.data, [-1000, 0]);
  });

  it('refuses a temperature that is not a finite number > 0, as the engine', () => {
    // T = 0 gave NaN rows where the engine's softmax refuses it.
    const x = ref([1, 2], [1, 2]);
    expect(() => softmax(x, 0)).toThrow('softmax: temperature must be a finite number > 0, got 0');
    expect(() => logSoftmax(x, -1)).toThrow('logSoftmax: temperature must be a finite number > 0');
    expect(() => softmaxBackward(x, x, NaN)).toThrow(/softmaxBackward: temperature .* got NaN/);
    expect(() => logSoftmaxBackward(x, x, Infinity)).toThrow(/logSoftmaxBackward: temperature/);
    expect(() => softCrossEntropy(x, x, '1' as never)).toThrow(/softCrossEntropy: .*got "1"/);
    expect(() => softCrossEntropyBackward(x, x, 0, 1)).toThrow(/softCrossEntropyBackward: temp/);
  });

  it('a single class gives probability 1', () => {
    expect(Array.from(softmax(ref([2, 1], [5, -7])).data)).toEqual([1, 1]);
  });
});

describe('softCrossEntropy', () => {
  it('one-hot q gives -log p of the target; soft q mixes them', () => {
    const x = ref([2, 2], [0, Math.log(2), 0, Math.log(2)]);
    const q = ref([2, 2], [0, 1, 0.5, 0.5]);
    const r = softCrossEntropy(x, q);
    expectClose(r.perRow.data, [Math.log(1.5), 0.5 * Math.log(3) + 0.5 * Math.log(1.5)]);
    expectClose([r.mean], [(r.perRow.data[0] + r.perRow.data[1]) / 2]);
  });

  it('the dlogits formula by hand: dl (p sum q - q) / T', () => {
    const x = ref([1, 2], [0, Math.log(2)]);
    const q = ref([1, 2], [0.25, 0.5]);
    const { dlogits, dq } = softCrossEntropyBackward(x, q, 0.5, ref([1], [2]));
    // p = [1/5, 4/5] at T = 0.5; sum q = 0.75
    expectClose(dlogits.data, [(2 * (0.2 * 0.75 - 0.25)) / 0.5, (2 * (0.8 * 0.75 - 0.5)) / 0.5]);
    expectClose(dq.data, [-2 * Math.log(0.2), -2 * Math.log(0.8)]);
  });
});

describe('softmax backward against finite differences', () => {
  for (const [N, K] of [[1, 1], [3, 7], [2, 13], [4, 2]]) {
    for (const T of [1, 0.1, 3]) {
      it(`softmax and logSoftmax [${N}, ${K}] T=${T}`, () => {
        const x = randn([N, K], mulberry32(N * 10 + K));
        expectGrads('softmax backward', ([v]) => softmax(v, T), [x],
          (dy) => [softmaxBackward(dy, softmax(x, T), T)]);
        expectGrads('logSoftmax backward', ([v]) => logSoftmax(v, T), [x],
          (dy) => [logSoftmaxBackward(dy, logSoftmax(x, T), T)]);
      });

      it(`softCrossEntropy per-row and mean [${N}, ${K}] T=${T}`, () => {
        const rng = mulberry32(N * 100 + K);
        const x = randn([N, K], rng);
        // Unnormalised soft targets, so the sum_k q_ik term of the rule is exercised.
        const q = uniform([N, K], rng, 0, 1);
        expectGrads('softCrossEntropy backward', ([v, t]) => softCrossEntropy(v, t, T).perRow,
          [x, q], (dl) => {
            const g = softCrossEntropyBackward(x, q, T, dl);
            return [g.dlogits, g.dq];
          });
        const g = softCrossEntropyBackward(x, q, T, 1);
        const f = ([v, t]: RefTensor[]) => softCrossEntropy(v, t, T).mean;
        const r = checkGrad(f, [x, q], [g.dlogits, g.dq], { ...FD, name: 'mean loss' });
        expect(r.ok, r.message).toBe(true);
      });
    }
  }
});
