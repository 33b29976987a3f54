// Elementwise ops and reductions on the GPU against the float64 reference, forward and
// backward, over shapes that break the 256-wide workgroups and broadcast every way.

import { describe, it, expect } from 'vitest';
import * as ops from '../../src/ops/elementwise.js';
import * as red from '../../src/ops/reduce.js';
import * as R from '../../src/reference/index.js';
import { grad } from '../../src/node.js';
import { TOL } from '../../src/reference/compare.js';
import { checkOp, randomInput, useEngine, upload, expectClose } from '../helpers/gpu.js';

const engine = useEngine();

// Pairs that broadcast every way: scalar-like, row, column, leading axis, middle axis.
const BROADCASTS: [number[], number[]][] = [
  [[1], [1]], [[7], [7]], [[3, 5], [5]], [[3, 5], [3, 1]], [[1, 5], [4, 1]],
  [[2, 3, 13], [3, 1]], [[2, 1, 4, 3], [5, 1, 3]], [[257], [1]], [[6, 1, 97], [6, 11, 1]],
];

describe('binary elementwise ops with broadcasting', () => {
  const cases = [
    ['add', ops.add, R.add, R.addBackward],
    ['sub', ops.sub, R.sub, R.subBackward],
    ['mul', ops.mul, R.mul, R.mulBackward],
    ['div', ops.div, R.div, R.divBackward],
    ['maximum', ops.maximum, R.maximum, R.maximumBackward],
    ['minimum', ops.minimum, R.minimum, R.minimumBackward],
  ] as const;
  for (const [name, gpu, fwd, bwd] of cases) {
    for (const [sa, sb] of BROADCASTS) {
      it(`${name} ${JSON.stringify(sa)} with ${JSON.stringify(sb)}`, async () => {
        const a = randomInput(sa, 1);
        // Divisors kept away from 0, where the quotient's error bound is meaningless.
        const b = randomInput(sb, 2);
        if (name === 'div') for (let i = 0; i < b.data.length; i++) b.data[i] += 3;
        const bigSum = Math.max(a.data.length, b.data.length) * 4;
        await checkOp(engine(), {
          name, inputs: [a, b], gpu: ([x, y]) => gpu(x, y), refForward: ([x, y]) => fwd(x, y),
          refBackward: (dy, [x, y]) => { const g = bwd(dy, x, y); return [g.da, g.db]; },
          tol: TOL.f32Elementwise, gradTol: TOL.f32Reduction(bigSum, 3),
        });
      });
    }
  }
});

describe('axpby', () => {
  for (const [sa, sb] of BROADCASTS) {
    it(`0.75 a - 1.5 b, ${JSON.stringify(sa)} with ${JSON.stringify(sb)}`, async () => {
      const bigSum = Math.max(sa.reduce((p, q) => p * q, 1), sb.reduce((p, q) => p * q, 1)) * 4;
      await checkOp(engine(), {
        name: 'axpby', inputs: [randomInput(sa, 14), randomInput(sb, 15)],
        gpu: ([x, y]) => ops.axpby(0.75, x, -1.5, y),
        refForward: ([x, y]) => R.axpby(0.75, x, -1.5, y),
        refBackward: (dy, [x, y]) => {
          const g = R.axpbyBackward(dy, 0.75, x, -1.5, y);
          return [g.da, g.db];
        },
        tol: TOL.f32Elementwise, gradTol: TOL.f32Reduction(bigSum, 3),
      });
    });
  }
});

describe('maximum and minimum', () => {
  it('NaN in either operand gives NaN; ties and a NaN send the gradient as the reference',
    async () => {
      const e = engine();
      const av = [1, -2, 3, NaN, NaN, 0, 5];
      const bv = [2, -2, NaN, 0, NaN, -0, 5];
      const dyv = [10, 20, 30, 40, 50, 60, 70];
      for (const [name, gpu, fwd, bwd] of [
        ['maximum', ops.maximum, R.maximum, R.maximumBackward],
        ['minimum', ops.minimum, R.minimum, R.minimumBackward]] as const) {
        const a = e.tensor(av, [7], { requiresGrad: true });
        const b = e.tensor(bv, [7], { requiresGrad: true });
        const y = gpu(a, b);
        const [ga, gb] = grad(y, [a, b], { seed: e.tensor(dyv, [7]) });
        y.keep();
        const [vy, va, vb] = await e.run([], [y, ga!, gb!]);
        const [ra, rb, rdy] = [av, bv, dyv].map((v) => R.ref([7], v));
        const want = bwd(rdy, ra, rb);
        // compare() never matches a NaN; toEqual does (and -0 is taken as 0 here).
        const values = (v: ArrayLike<number>) => Array.from(v, (x) => (x === 0 ? 0 : x));
        expect(values(vy), `${name} forward`).toEqual(values(fwd(ra, rb).data));
        expect(values(va), `${name} da`).toEqual(values(want.da.data));
        expect(values(vb), `${name} db`).toEqual(values(want.db.data));
      }
    });

  it('an infinite dy goes whole to the winner and leaves the other operand 0, not NaN',
    async () => {
      const e = engine();
      // a wins, b wins, a tie (to a), a NaN in a (to b); broadcast b over the rows.
      const av = [3, 1, 2, NaN, 3, 1, 2, NaN];
      const bv = [1, 3, 2, 0];
      const dyv = [Infinity, -Infinity, Infinity, Infinity, 1, 2, 3, 4];
      for (const [name, gpu, bwd] of [['maximum', ops.maximum, R.maximumBackward],
        ['minimum', ops.minimum, R.minimumBackward]] as const) {
        const a = e.tensor(av, [2, 4], { requiresGrad: true });
        const b = e.tensor(bv, [4], { requiresGrad: true });
        const [ga, gb] = grad(gpu(a, b), [a, b], { seed: e.tensor(dyv, [2, 4]) });
        const [va, vb] = await e.run([], [ga!, gb!]);
        const want = bwd(R.ref([2, 4], dyv), R.ref([2, 4], av), R.ref([4], bv));
        expect(Array.from(va), `${name} da`).toEqual(Array.from(want.da.data));
        expect(Array.from(vb), `${name} db`).toEqual(Array.from(want.db.data));
        expect(Array.from(va).some(Number.isNaN) || Array.from(vb).some(Number.isNaN),
          `${name}: no NaN`).toBe(false);
      }
      // The reference's own values, for maximum: a takes columns 0 and 2, b columns 1 and 3.
      const r = R.maximumBackward(R.ref([2, 4], dyv), R.ref([2, 4], av), R.ref([4], bv));
      expect(Array.from(r.da.data)).toEqual([Infinity, 0, Infinity, 0, 1, 0, 3, 0]);
      expect(Array.from(r.db.data)).toEqual([0, -Infinity, 0, Infinity]);
    });

  it('values closer than 1e-30 still send the gradient to the larger', async () => {
    const e = engine();
    // Differences below 1e-30 (and denormal ones): the old rule tested a - b + 1e-30 > 0.
    const av = [1.5e-30, 2e-30, 1e-39, -1e-39];
    const bv = [2e-30, 1.5e-30, 2e-39, -2e-39];
    const a = e.tensor(av, [4], { requiresGrad: true });
    const b = e.tensor(bv, [4], { requiresGrad: true });
    const [ga] = grad(ops.maximum(a, b), [a], { seed: e.tensor([1, 1, 1, 1], [4]) });
    expect(Array.from(await ga!.read())).toEqual([0, 1, 0, 1]);
  });
});

describe('NaN stays NaN through every max and relu', () => {
  const values = (v: ArrayLike<number>) => Array.from(v, (x) => (x === 0 ? 0 : x));

  it('relu and addRelu: NaN out where NaN goes in; relu\'s gradient there is 0', async () => {
    const e = engine();
    const xv = [NaN, -1, 2, -NaN, 0];
    const x = e.tensor(xv, [5], { requiresGrad: true });
    const y = ops.relu(x);
    const [gx] = grad(y, [x], { seed: e.tensor([1, 2, 3, 4, 5], [5]) });
    y.keep();
    const [vy, vg] = await e.run([], [y, gx!]);
    const rx = R.ref([5], xv);
    expect(values(vy)).toEqual(values(R.relu(rx).data));
    expect(values(vy)).toEqual([NaN, 0, 2, NaN, 0]);
    expect(values(vg)).toEqual(values(R.reluBackward(R.ref([5], [1, 2, 3, 4, 5]), rx).data));
    // The vec4 path (8 values) and the broadcasting one ([4, 1] + [3]).
    const eight = ops.relu(e.tensor([NaN, -1, 1, NaN, -2, 2, NaN, -3], [8]));
    expect(values(await eight.read())).toEqual([NaN, 0, 1, NaN, 0, 2, NaN, 0]);
    const sum = ops.addRelu(e.tensor([1, NaN, -5, 0], [4, 1]), e.tensor([-2, 0, 3], [3]));
    expect(values(await sum.read())).toEqual([0, 1, 4, NaN, NaN, NaN, 0, 0, 0, 0, 0, 3]);
  });

  it('sign of NaN is NaN, so abs\'s gradient there is NaN, as the references', async () => {
    const e = engine();
    const xv = [NaN, -2, 0, 3, -NaN];
    const x = e.tensor(xv, [5], { requiresGrad: true });
    const [g] = grad(ops.abs(x), [x], { seed: e.tensor([1, 1, 1, 1, 1], [5]) });
    const rx = R.ref([5], xv);
    expect(values(await ops.sign(x).read())).toEqual(values(R.unary('sign', rx).data));
    expect(values(await g!.read()))
      .toEqual(values(R.absBackward(R.ref([5], [1, 1, 1, 1, 1]), rx).data));
  });

  it('max over an axis is NaN where the set holds one, its gradient to the first NaN',
    async () => {
      // Rows with NaN first, last, twice, none; the long row takes the two-pass path.
      for (const [shape, nanAt] of [[[4, 5], [0, 9, 11, 13]], [[2, 3000], [2999, 3001, 5000]]] as
        [number[], number[]][]) {
        const x = randomInput(shape, 12);
        for (const i of nanAt) x.data[i] = NaN;
        const e = engine();
        const t = upload(e, x, true);
        const y = red.max(t, 1);
        const dyRef = randomInput([shape[0]], 13);
        const [gx] = grad(y, [t], { seed: upload(e, dyRef) });
        y.keep();
        const [vy, vg] = await e.run([], [y, gx!]);
        expect(values(vy)).toEqual(values(R.max(x, 1).data));
        expect(values(vg)).toEqual(values(R.maxBackward(dyRef, x, 1).data));
        expect(vy.some(Number.isNaN)).toBe(true);
      }
    });
});

describe('fused addRelu', () => {
  // relu(a + b) against the composed references; the gradient reaches both operands where
  // the sum is positive (sums within f32 rounding of 0 are improbable at these sizes).
  for (const [sa, sb] of [[[1], [1]], [[4, 257], [4, 257]], [[2, 3, 13], [3, 1]],
    [[6, 1, 97], [6, 11, 1]]] as [number[], number[]][]) {
    it(`addRelu ${JSON.stringify(sa)} with ${JSON.stringify(sb)}`, async () => {
      await checkOp(engine(), {
        name: 'addRelu', inputs: [randomInput(sa, 11), randomInput(sb, 12)],
        gpu: ([x, y]) => ops.addRelu(x, y),
        refForward: ([x, y]) => R.unary('relu', R.add(x, y)),
        refBackward: (dy, [x, y]) => {
          const g = R.addBackward(R.unaryBackward('relu', dy, R.add(x, y)), x, y);
          return [g.da, g.db];
        },
        tol: TOL.f32Elementwise, gradTol: TOL.f32Reduction(sa.length * 700, 3),
      });
    });
  }
});

describe('elementwise tilings', () => {
  // Runs that end mid-row and cross the innermost dimension's end (VPT 3 and 5 against
  // rows of 3, 13, 97), workgroups of one thread, and the GPU tiling.
  const tilings: [number, number][] = [[1, 3], [4, 5], [256, 1], [64, 16]];
  for (const [WG, VPT] of tilings) {
    it(`WG ${WG}, VPT ${VPT}: broadcast add, mul and a unary op`, async () => {
      const e = engine();
      ops.setElementwiseTiling(e, { WG, VPT });
      try {
        for (const [sa, sb] of [[[2, 3, 13], [3, 1]], [[6, 1, 97], [6, 11, 1]],
          [[257], [1]], [[7], [7]]] as [number[], number[]][]) {
          const a = randomInput(sa, 21);
          const b = randomInput(sb, 22);
          await checkOp(e, {
            name: 'mul', inputs: [a, b], gpu: ([x, y]) => ops.mul(x, y),
            refForward: ([x, y]) => R.mul(x, y),
            refBackward: (dy, [x, y]) => {
              const g = R.mulBackward(dy, x, y);
              return [g.da, g.db];
            },
            tol: TOL.f32Elementwise, gradTol: TOL.f32Reduction(4 * 700, 3),
          });
          await checkOp(e, {
            name: 'exp', inputs: [a], gpu: ([x]) => ops.exp(x),
            refForward: ([x]) => R.unary('exp', x),
            refBackward: (dy, [x]) => [R.unaryBackward('exp', dy, x)],
            tol: TOL.f32Elementwise, gradTol: { atol: 1e-5, rtol: 1e-4 },
          });
        }
      } finally {
        ops.setElementwiseTiling(e, null);
      }
    });
  }
  it('picks runs on lavapipe and one element per thread elsewhere; checks its arguments', () => {
    expect(ops.defaultElementwiseTiling('mesa software llvmpipe-llvm-15'))
      .toBe(ops.ELEMENTWISE_CPU_TILING);
    expect(ops.defaultElementwiseTiling('nvidia hopper')).toBe(ops.ELEMENTWISE_GPU_TILING);
    expect(() => ops.setElementwiseTiling(engine(), { WG: 64, VPT: 0 }))
      .toThrow(/setElementwiseTiling: VPT must be an integer in 1..1024, got 0/);
    expect(() => ops.setElementwiseTiling(engine(), { WG: '64' as never, VPT: 1 }))
      .toThrow(/setElementwiseTiling: WG must be an integer in 1..1024, got "64"/);
    expect(() => ops.setElementwiseTiling(engine(), { WG: 64, vpt: 16 } as never))
      .toThrow('setElementwiseTiling: unknown key "vpt" in tiling (did you mean "VPT"?); ' +
        'tiling takes WG, VPT');
  });
});

describe('unary elementwise ops', () => {
  const names = ['neg', 'relu', 'exp', 'log', 'sqrt', 'square', 'sigmoid', 'tanh', 'abs',
    'reciprocal', 'sign', 'copy'] as const;
  for (const name of names) {
    for (const shape of [[1], [13], [4, 257]]) {
      it(`${name} ${JSON.stringify(shape)}`, async () => {
        const x = randomInput(shape, 3, 2);
        // log and sqrt are taken of positive numbers; relu, abs and sign away from their
        // kink, reciprocal away from its pole.
        for (let i = 0; i < x.data.length; i++) {
          if (name === 'log' || name === 'sqrt') x.data[i] = Math.abs(x.data[i]) + 0.5;
          if (Math.abs(x.data[i]) < (name === 'reciprocal' ? 0.25 : 1e-3)) x.data[i] = 0.5;
        }
        const fn = ops[name] as (t: import('../../src/node.js').Tensor) =>
          import('../../src/node.js').Tensor;
        await checkOp(engine(), {
          name, inputs: [R.roundToF32(x)], gpu: ([t]) => fn(t),
          refForward: ([t]) => R.unary(name, t),
          refBackward: (dy, [t]) => [R.unaryBackward(name, dy, t)],
          tol: TOL.f32Elementwise, gradTol: { atol: 1e-5, rtol: 1e-4 },
        });
      });
    }
  }

  it('fillLike: the shape of its input, every value the given one, no gradient', async () => {
    const e = engine();
    const x = e.tensor(randomInput([3, 17], 5).data, [3, 17], { requiresGrad: true });
    const y = ops.fillLike(x, -2.5);
    expect([...y.shape]).toEqual([3, 17]);
    expect(Array.from(await y.read()).every((v) => v === -2.5)).toBe(true);
    expect(() => grad(red.mean(y), [x])).toThrow(/does not depend/);
  });

  it('scale, addScalar and leakyRelu', async () => {
    const x = randomInput([5, 7], 4);
    await checkOp(engine(), {
      name: 'scale', inputs: [x], gpu: ([t]) => ops.scale(t, -2.5),
      refForward: ([t]) => R.scale(t, -2.5), refBackward: (dy) => [R.scaleBackward(dy, -2.5)],
      tol: TOL.f32Elementwise,
    });
    await checkOp(engine(), {
      name: 'addScalar', inputs: [x], gpu: ([t]) => ops.addScalar(t, 0.75),
      refForward: ([t]) => R.addScalar(t, 0.75), refBackward: (dy) => [R.addScalarBackward(dy)],
      tol: TOL.f32Elementwise,
    });
    await checkOp(engine(), {
      name: 'leakyRelu', inputs: [x], gpu: ([t]) => ops.leakyRelu(t, 0.1),
      refForward: ([t]) => R.leakyRelu(t, 0.1),
      refBackward: (dy, [t]) => [R.leakyReluBackward(dy, t, 0.1)], tol: TOL.f32Elementwise,
    });
  });
});

describe('reductions', () => {
  const cases: [number[], number[]][] = [
    [[1], [0]], [[13], [0]], [[3, 5], [1]], [[3, 5], [0]], [[2, 3, 7], [0, 2]],
    [[4, 1, 5, 3], [1, 3]], [[2, 3000], [1]], [[5000, 3], [0]], [[3, 4], [0, 1]],
    // Long sets over axes that do not merge, so that the second chunk of 1 024 starts in the
    // middle of a row of the innermost reduced axis (41, 53 wide).
    [[37, 3, 41], [0, 2]], [[2, 29, 3, 53], [1, 3]],
  ];
  for (const [shape, axes] of cases) {
    for (const op of ['sum', 'mean'] as const) {
      it(`${op} of ${JSON.stringify(shape)} over ${JSON.stringify(axes)}`, async () => {
        const x = randomInput(shape, 5);
        const n = axes.reduce((a, i) => a * shape[i], 1);
        const refSum = (t: R.RefTensor) => R.sum(t, axes, false);
        await checkOp(engine(), {
          name: op, inputs: [x], gpu: ([t]) => red[op](t, axes),
          refForward: ([t]) => (op === 'sum' ? refSum(t) : R.mean(t, axes, false)),
          refBackward: (dy, [t]) => [op === 'sum' ? R.sumBackward(dy, t.shape, axes, false)
            : R.meanBackward(dy, t.shape, axes, false)],
          tol: TOL.f32Reduction(n, 1),
        });
      });
    }
  }

  // Max and its gradient copy values: exact. Shapes: 1, primes, the middle axis, keepDims, a
  // reduction long enough for the forward's two-pass (chunked) path.
  const maxCases: [number[], number, boolean][] = [
    [[1], 0, false], [[13], 0, false], [[6, 11], 1, false], [[6, 11], 0, true],
    [[3, 7, 5], 1, false], [[3, 7, 5], 2, true], [[2, 3000], 1, false], [[5000, 3], 0, false],
  ];
  for (const [shape, axis, keepDims] of maxCases) {
    it(`max of ${JSON.stringify(shape)} over ${axis}${keepDims ? ' (keepDims)' : ''}: value and ` +
      'gradient to the first maximum', async () => {
      await checkOp(engine(), {
        name: 'max', inputs: [randomInput(shape, 6)], gpu: ([t]) => red.max(t, axis, keepDims),
        refForward: ([t]) => R.max(t, axis, keepDims),
        refBackward: (dy, [t]) => [R.maxBackward(dy, t, axis, keepDims)],
        tol: TOL.exact,
      });
    });
  }

  it('max over several axes: the gradient goes to the first maximum in row-major order, ' +
    'ties included', async () => {
    // Ties within and across rows: values from a set of 3, so every set has several maxima.
    const x = randomInput([4, 5, 6], 8);
    for (let i = 0; i < x.data.length; i++) x.data[i] = Math.floor(Math.abs(x.data[i]) * 2) % 3;
    await checkMaxOver02(x);
  });

  it('max over axes that do not merge, a set long enough for chunks that start mid-row',
    async () => {
      await checkMaxOver02(randomInput([37, 3, 41], 9));
    });

  it('max of -infinities is -infinity, and its gradient goes to the first of them', async () => {
    const e = engine();
    const inf = Number.NEGATIVE_INFINITY;
    const x = e.tensor([inf, inf, inf, -1, inf, 2], [2, 3], { requiresGrad: true });
    const y = red.max(x, 1);
    const [dx] = grad(y, [x], { seed: e.tensor([5, 7], [2]) });
    const [vy, vdx] = await e.run([], [y, dx!]);
    expect(Array.from(vy)).toEqual([inf, 2]);
    expect(Array.from(vdx)).toEqual([5, 0, 0, 0, 0, 7]);
    // The two-pass path (a long set, few outputs) starts from -infinity as well.
    const long = e.tensor(new Float32Array(5000).fill(inf), [1, 5000]);
    expect(Array.from(await red.max(long, 1).read())).toEqual([inf]);
  });

  it('max gradient with more outputs than 65 535 workgroups of threads hold', async () => {
    const e = engine();
    // 4 200 000 outputs at 64 threads a workgroup: 65 625 workgroups, folded.
    const n = 4_200_000;
    const data = new Float32Array(2 * n).map((_, i) => (i % 2 === (i >> 1) % 2 ? 1 : 0));
    const x = e.tensor(data, [n, 2], { requiresGrad: true });
    const y = red.max(x, 1);
    const [dx] = grad(y, [x], { seed: e.tensor(new Float32Array(n).fill(3), [n]) });
    const v = await dx!.read();
    let bad = -1;
    for (let i = 0; i < 2 * n; i++) if (v[i] !== 3 * data[i]) { bad = i; break; }
    expect(bad, `first wrong element at ${bad}`).toBe(-1);
  });
});

/** max over axes 0 and 2 of a rank-3 x and its gradient, against the reference. */
async function checkMaxOver02(x: R.RefTensor): Promise<void> {
  // Row-major first over axes (0, 2) is first over axis 0 of the firsts over axis 2.
  const inner = R.max(x, 2);
  await checkOp(engine(), {
    name: 'max over [0, 2]', inputs: [x], gpu: ([t]) => red.max(t, [0, 2]),
    refForward: () => R.max(inner, 0),
    refBackward: (dy) => [R.maxBackward(R.maxBackward(dy, inner, 0), x, 2)],
    tol: TOL.exact,
  });
}

describe('broadcastTo', () => {
  // Scalar to many, rows, columns, a middle axis, several at once; sizes that end runs of 16
  // mid-row and inner dimensions shorter and longer than a run.
  const SHAPES: [number[], number[]][] = [
    [[1], [1]], [[1], [1021]], [[5], [3, 5]], [[3, 1], [3, 7]], [[2, 1, 13], [2, 17, 13]],
    [[1, 3, 1, 1], [4, 3, 5, 2]], [[6, 1], [2, 6, 97]], [[], [2, 3]],
  ];
  for (const [from, to] of SHAPES) {
    it(`${JSON.stringify(from)} to ${JSON.stringify(to)}, with its gradient`, async () => {
      await checkOp(engine(), {
        name: 'broadcastTo', inputs: [randomInput(from, 7)],
        gpu: ([x]) => red.broadcastTo(x, to), refForward: ([x]) => R.broadcastTo(x, to),
        refBackward: (dy, [x]) => [R.reduceToShape(dy, x.shape)],
        tol: TOL.exact, gradTol: TOL.f32Reduction(dyTerms(from, to), 3),
      });
    });
  }
  it('under every tiling, folded past 65 535 workgroups at one element each', async () => {
    const e = engine();
    const x = randomInput([3, 1, 7], 8);
    const to = [5, 3, 4001, 7];
    const expected = R.broadcastTo(x, to);
    for (const t of [{ WG: 64, VPT: 16 }, { WG: 256, VPT: 1 }, { WG: 1, VPT: 1 },
      { WG: 3, VPT: 5 }]) {
      ops.setElementwiseTiling(e, t);
      const y = red.broadcastTo(upload(e, x), to);
      ops.setElementwiseTiling(e, null);
      expectClose(await y.read(), expected, TOL.exact, `broadcastTo ${JSON.stringify(t)}`);
    }
    expect(expected.data.length).toBeGreaterThan(65_535);
  });
  it('refuses a target with fewer axes (it would drop data) or a bad shape', () => {
    const e = engine();
    const x = e.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    // [2, 3] to [3] once returned the first row alone.
    expect(() => red.broadcastTo(x, [3]))
      .toThrow(/broadcastTo: leaf#\d+ \[2, 3\] has 2 axes, more than the target \[3\]/);
    expect(() => red.broadcastTo(e.tensor([1, 2, 3], [1, 3, 1]), [3, 4]))
      .toThrow(/has 3 axes, more than the target \[3, 4\]/);
    expect(() => red.broadcastTo(x, [2, -3])).toThrow(/shape must be an array of non-negative/);
    expect(() => red.broadcastTo(x, 3 as unknown as number[])).toThrow(/got 3 /);
    expect(() => red.broadcastTo(x, [4, 3])).toThrow(/does not broadcast to \[4, 3\]/);
  });
});

/** Terms each gradient element of a broadcast from `from` to `to` sums. */
function dyTerms(from: number[], to: number[]): number {
  return to.reduce((a, b) => a * b, 1) / Math.max(1, from.reduce((a, b) => a * b, 1));
}

describe('dispatch past the workgroup-count limit', () => {
  it('folds 70 000 workgroups of 256 threads and fills every element', async () => {
    const e = engine();
    // 70 000 x 256 elements at one per thread need 70 000 workgroups: more than 65 535 in
    // one dimension (runs per thread would need more than the 128 MiB a binding may hold).
    const n = 70_000 * 256;
    const x = e.tensor(new Float32Array(n).fill(1.5), [n]);
    ops.setElementwiseTiling(e, { WG: 256, VPT: 1 });
    // A broadcast operand takes the strided path, one element per thread.
    const y = ops.add(ops.scale(x, 2), e.tensor([-1], [1]));
    ops.setElementwiseTiling(e, null);
    const v = await y.read();
    let bad = -1;
    for (let i = 0; i < n; i++) if (v[i] !== 2) { bad = i; break; }
    expect(bad, `first wrong element at ${bad}`).toBe(-1);
    // The last workgroup's threads are all present too.
    expect(v[n - 1]).toBe(2);
  });
  it('folds the vec4 path past 65 535 workgroups, with a tail of 3 floats', async () => {
    const e = engine();
    // One vec4 per workgroup of one thread: 75 001 workgroups, the last one 3 floats wide.
    const n = 300_003;
    const x = e.tensor(new Float32Array(n).map((_, i) => i % 1000), [n]);
    ops.setElementwiseTiling(e, { WG: 1, VPT: 1 });
    const y = ops.add(ops.scale(x, 2), x);
    ops.setElementwiseTiling(e, null);
    const v = await y.read();
    let bad = -1;
    for (let i = 0; i < n; i++) if (v[i] !== 3 * (i % 1000)) { bad = i; break; }
    expect(bad, `first wrong element at ${bad}`).toBe(-1);
    expect(Math.ceil(n / 4)).toBeGreaterThan(65_535);
  });
});
