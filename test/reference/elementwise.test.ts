// Elementwise ops: forward values, broadcasting, and every backward rule against finite
// differences.

import { describe, expect, it } from 'vitest';
import {
  type UnaryOpName, add, addBackward, addScalar, addScalarBackward, div, divBackward,
  leakyRelu, leakyReluBackward, mul, mulBackward, relu, reluBackward, scale, scaleBackward,
  sigmoid, sub, subBackward, unary, unaryBackward, unaryOpNames, abs, absBackward, sqrt,
  maximum, maximumBackward, minimum, minimumBackward, axpby, axpbyBackward, reciprocal,
  reciprocalBackward, sign, signBackward, addRelu, addReluBackward,
} from '../../src/reference/elementwise.js';
import { mulberry32 } from '../../src/reference/random.js';
import { type RefTensor, ref, uniform } from '../../src/reference/tensor.js';
import { expectClose, expectGrads } from './helpers.js';

const binaries = [
  ['add', add, addBackward],
  ['sub', sub, subBackward],
  ['mul', mul, mulBackward],
  ['div', div, divBackward],
  ['maximum', maximum, maximumBackward],
  ['minimum', minimum, minimumBackward],
] as const;

// Broadcast pairs that exercise every rule: equal, scalar, leading axes, size-1 in the middle,
// both sides stretching, and a single element.
const shapePairs: [number[], number[]][] = [
  [[3, 5], [3, 5]],
  [[2, 3, 7], []],
  [[7], [2, 3, 7]],
  [[2, 1, 5], [2, 3, 1]],
  [[3, 1], [1, 4]],
  [[1], [1]],
];

describe('binary forward', () => {
  it('computes hand-checked values with a broadcast row', () => {
    const a = ref([2, 2], [1, 2, 3, 4]);
    const b = ref([2], [10, 20]);
    expect(Array.from(add(a, b).data)).toEqual([11, 22, 13, 24]);
    expect(Array.from(sub(a, b).data)).toEqual([-9, -18, -7, -16]);
    expect(Array.from(mul(a, b).data)).toEqual([10, 40, 30, 80]);
    expect(Array.from(div(a, b).data)).toEqual([0.1, 0.1, 0.3, 0.2]);
  });

  it('stretches both operands: [3,1] + [1,4] -> [3,4]', () => {
    const y = add(ref([3, 1], [0, 10, 20]), ref([1, 4], [1, 2, 3, 4]));
    expect(y.shape).toEqual([3, 4]);
    expect(Array.from(y.data)).toEqual([1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24]);
  });

  it('maximum and minimum: hand values, NaN in either operand gives NaN', () => {
    const a = ref([4], [1, -2, 3, NaN]);
    const b = ref([4], [2, -2, NaN, 0]);
    expect(Array.from(maximum(a, b).data)).toEqual([2, -2, NaN, NaN]);
    expect(Array.from(minimum(a, b).data)).toEqual([1, -2, NaN, NaN]);
    // Ties go to a; a NaN comparison is false, so b takes the gradient there.
    const g = maximumBackward(ref([4], [10, 20, 30, 40]), a, b);
    expect(Array.from(g.da.data)).toEqual([0, 20, 0, 0]);
    expect(Array.from(g.db.data)).toEqual([10, 0, 30, 40]);
    const h = minimumBackward(ref([4], [10, 20, 30, 40]), a, b);
    expect(Array.from(h.da.data)).toEqual([10, 20, 0, 0]);
    expect(Array.from(h.db.data)).toEqual([0, 0, 30, 40]);
  });

  it('addRelu: relu(a + b) with a broadcast row; NaN stays NaN', () => {
    // Sums -0.5, -1, 1.5, -3 and NaN + 1.
    const y = addRelu(ref([2, 2], [1, -2, 3, -4]), ref([2], [-1.5, 1]));
    expect(y.shape).toEqual([2, 2]);
    expect(Array.from(y.data)).toEqual([0, 0, 1.5, 0]);
    expect(Array.from(addRelu(ref([2], [NaN, 1]), ref([1], [1])).data)).toEqual([NaN, 2]);
  });

  it('names both shapes when they do not broadcast', () => {
    expect(() => mul(ref([2, 3], (i) => i), ref([2], [1, 2]))).toThrow(/\[2, 3\] and \[2\]/);
  });
});

describe('binary backward against finite differences', () => {
  for (const [name, f, back] of binaries) {
    for (const [sa, sb] of shapePairs) {
      it(`${name} [${sa}] x [${sb}]`, () => {
        const rng = mulberry32(11);
        // Keep divisors away from 0 so finite differences stay smooth.
        const a = uniform(sa, rng, -2, 2);
        const b = name === 'div' ? uniform(sb, rng, 0.5, 2) : uniform(sb, rng, -2, 2);
        expectGrads(`${name} backward`, ([x, y]) => f(x, y), [a, b], (dy) => {
          const g = back(dy, a, b);
          expect(g.da.shape).toEqual(sa);
          expect(g.db.shape).toEqual(sb);
          return [g.da, g.db];
        });
      });
    }
  }

  it('addRelu backward: dy where a + b > 0, summed over the broadcast axes', () => {
    const a = ref([2, 2], [1, -2, 3, -4]);
    const b = ref([2], [-1.5, 1]);
    const g = addReluBackward(ref([2, 2], [10, 20, 30, Infinity]), a, b);
    // Only [1, 0] (sum 1.5) passes; the infinite dy at [1, 1] (sum -3) is cut, not NaN.
    expect(Array.from(g.da.data)).toEqual([0, 0, 30, 0]);
    expect(Array.from(g.db.data)).toEqual([30, 0]);
    for (const [sa, sb] of shapePairs) {
      const rng = mulberry32(13);
      const x = uniform(sa, rng, -2, 2);
      const y = uniform(sb, rng, -2, 2);
      // Finite differences need the sums away from relu's kink at 0 (h = 1e-6).
      const kink = Math.min(...add(x, y).data.map(Math.abs));
      expect(kink, 'distance to the kink (choose another seed)').toBeGreaterThan(1e-3);
      expectGrads('addRelu backward', ([p, q]) => addRelu(p, q), [x, y], (dy) => {
        const r = addReluBackward(dy, x, y);
        return [r.da, r.db];
      });
    }
  });

  it('add backward sums the gradient over the broadcast axes (hand values)', () => {
    const a = ref([2, 2], [1, 2, 3, 4]);
    const b = ref([2], [0, 0]);
    const g = addBackward(ref([2, 2], [1, 2, 3, 4]), a, b);
    expect(Array.from(g.da.data)).toEqual([1, 2, 3, 4]);
    expect(Array.from(g.db.data)).toEqual([4, 6]);
  });
});

describe('unary ops', () => {
  it('hand-checked forward values', () => {
    const x = ref([4], [-2, 0, 0.25, 4]);
    expect(Array.from(relu(x).data)).toEqual([0, 0, 0.25, 4]);
    expect(Array.from(abs(x).data)).toEqual([2, 0, 0.25, 4]);
    expect(Array.from(sqrt(ref([3], [0, 0.25, 4])).data)).toEqual([0, 0.5, 2]);
    expect(Array.from(leakyRelu(x, 0.1).data)).toEqual([-0.2, 0, 0.25, 4]);
    expect(Array.from(scale(x, -2).data)).toEqual([4, -0, -0.5, -8]);
    expect(Array.from(addScalar(x, 1).data)).toEqual([-1, 1, 1.25, 5]);
    expectClose(unary('exp', ref([2], [0, Math.log(3)])).data, [1, 3]);
    expectClose(unary('log', ref([2], [1, Math.E])).data, [0, 1]);
    expectClose(unary('tanh', ref([1], [Math.log(2)])).data, [3 / 5]);
    expectClose(unary('square', ref([1], [-3])).data, [9]);
    expectClose(unary('neg', ref([1], [5])).data, [-5]);
    expectClose(sigmoid(ref([3], [0, Math.log(3), -Math.log(3)])).data, [0.5, 0.75, 0.25]);
    expectClose(unary('reciprocal', ref([2], [4, -0.5])).data, [0.25, -2]);
    expect(Array.from(unary('sign', ref([3], [-3, 0, 0.1])).data)).toEqual([-1, 0, 1]);
    expect(Array.from(axpby(2, ref([2], [1, 2]), -3, ref([1], [10])).data)).toEqual([-28, -26]);
  });

  it('reciprocal and sign by name: hand values at 0, -0, infinities and NaN', () => {
    const x = ref([6], [4, -0.5, 0, -0, Infinity, NaN]);
    expect(Array.from(reciprocal(x).data)).toEqual([0.25, -2, Infinity, -Infinity, 0, NaN]);
    const s = sign(ref([6], [-3, 0, 0.1, -0, -Infinity, NaN]));
    expect(Array.from(s.data)).toEqual([-1, 0, 1, -0, -1, NaN]);
    expect(Object.is(s.data[3], -0)).toBe(true);
  });

  it('reciprocal and sign backward: -dy / x^2, and 0 whatever dy', () => {
    const g = reciprocalBackward(ref([3], [1, 2, 3]), ref([3], [2, -0.5, 4]));
    expect(Array.from(g.data)).toEqual([-0.25, -8, -0.1875]);
    const z = signBackward(ref([3], [Infinity, NaN, 1]), ref([3], [-1, 0, 2]));
    expect(Array.from(z.data)).toEqual([0, 0, 0]);
    const x = uniform([2, 5], mulberry32(21), 0.5, 2);
    expectGrads('reciprocal backward', ([v]) => reciprocal(v), [x],
      (dy) => [reciprocalBackward(dy, x)]);
  });

  it('axpby backward against finite differences, broadcast both ways', () => {
    for (const [sa, sb] of shapePairs) {
      const rng = mulberry32(17);
      const a = uniform(sa, rng, -2, 2);
      const b = uniform(sb, rng, -2, 2);
      expectGrads('axpby backward', ([x, y]) => axpby(0.75, x, -1.5, y), [a, b], (dy) => {
        const g = axpbyBackward(dy, 0.75, a, -1.5, b);
        return [g.da, g.db];
      });
    }
  });

  it('sigmoid does not overflow at large |x|', () => {
    const y = sigmoid(ref([2], [-1000, 1000]));
    expect(Array.from(y.data)).toEqual([0, 1]);
  });

  it('kink policy: relu\'(0) = 0, abs\'(0) = 0, leakyRelu\'(0) = slope', () => {
    const x = ref([3], [-1, 0, 1]);
    const dy = ref([3], [1, 1, 1]);
    expect(Array.from(reluBackward(dy, x).data)).toEqual([0, 0, 1]);
    expect(Array.from(absBackward(dy, x).data)).toEqual([-1, 0, 1]);
    expect(Array.from(leakyReluBackward(dy, x, 0.1).data)).toEqual([0.1, 0.1, 1]);
  });

  for (const op of unaryOpNames) {
    it(`${op} backward [3, 7]`, () => {
      const rng = mulberry32(5);
      // log and sqrt need positive inputs; relu/abs avoid a band around the kink at 0.
      const positive = op === 'log' || op === 'sqrt';
      const x = positive ? uniform([3, 7], rng, 0.2, 3) : uniform([3, 7], rng, -3, 3);
      if (op === 'relu' || op === 'abs' || op === 'sign' || op === 'reciprocal') {
        for (let i = 0; i < x.data.length; i++) if (Math.abs(x.data[i]) < 0.01) x.data[i] = 0.5;
      }
      expectGrads(`${op} backward`, ([v]) => unary(op as UnaryOpName, v), [x],
        (dy) => [unaryBackward(op, dy, x)]);
    });
  }

  it('leakyRelu, scale and addScalar backward [1] and [2, 5]', () => {
    for (const shape of [[1], [2, 5]]) {
      const x = uniform(shape, mulberry32(9), -2, 2);
      x.data[0] = 0.7;
      expectGrads('leakyRelu backward', ([v]) => leakyRelu(v, 0.2), [x],
        (dy) => [leakyReluBackward(dy, x, 0.2)]);
      expectGrads('scale backward', ([v]) => scale(v, -1.5), [x],
        (dy) => [scaleBackward(dy, -1.5)]);
      expectGrads('addScalar backward', ([v]) => addScalar(v, 3), [x],
        (dy) => [addScalarBackward(dy)]);
    }
  });

  it('relu and sign gradients select dy, so an infinite or NaN dy gives 0 where shut', () => {
    // As the engine's reluGrad (select(0, dy, x > 0)) and sign's fill with 0; dy * 0 was NaN.
    const dy = ref([4], [Infinity, NaN, -Infinity, 5]);
    const x = ref([4], [-1, 0, 2, NaN]);
    expect(Array.from(reluBackward(dy, x).data)).toEqual([0, 0, -Infinity, 0]);
    expect(Array.from(unaryBackward('sign', dy, x).data)).toEqual([0, 0, 0, 0]);
    // A multiplying rule keeps IEEE arithmetic: abs'(0) = 0 times an infinite dy is NaN.
    expect(Array.from(absBackward(ref([1], [Infinity]), ref([1], [0])).data)).toEqual([NaN]);
  });

  it('an unknown op name is an error listing the known ones', () => {
    const x = ref([1], [1]);
    expect(() => unary('gelu' as never, x)).toThrow('unary: unknown op "gelu"; the known ones ' +
      'are neg, relu, exp, log, sqrt, square, sigmoid, tanh, abs, reciprocal, sign, copy');
    // Names inherited from Object.prototype are not ops either.
    expect(() => unaryBackward('toString' as never, x, x))
      .toThrow(/unaryBackward: unknown op "toString"; the known ones are neg, relu/);
  });

  it('backward rejects a dy of another shape', () => {
    const x: RefTensor = ref([2], [1, 2]);
    expect(() => reluBackward(ref([3], [1, 2, 3]), x)).toThrow(/reluBackward.*\[3\].*\[2\]/);
  });
});
