// Row-wise L2 normalisation on the GPU against the float64 reference, forward and backward,
// including zero rows (the eps floor), D = 1 and the argument checks.

import { describe, expect, it } from 'vitest';
import { grad, type Tensor } from '../../src/node.js';
import { l2Normalize } from '../../src/ops/l2norm.js';
import * as R from '../../src/reference/index.js';
import { TOL, type Tolerance } from '../../src/reference/compare.js';
import { checkOp, expectClose, randomInput, upload, useEngine } from '../helpers/gpu.js';

const engine = useEngine();

/**
 * y = x / ||x||: the norm is a sum of D positive squares (relative error <= the reduction
 * tier's 4 sqrt(D) u), then one sqrt and one division (the elementwise tier); |y| <= 1, so
 * the relative bound also serves as an absolute one.
 */
function forwardTol(D: number): Tolerance {
  const r = TOL.f32Reduction(D).rtol;
  return { atol: r + TOL.f32Elementwise.atol, rtol: r + TOL.f32Elementwise.rtol };
}

/**
 * dx = (dy - y <y, dy>) / n: the dot product <y, dy> has D terms of random sign, and the
 * subtraction cancels when dy lies along y. The gradient tier, loosened to the dot product's
 * absolute bound (4 D u) for long rows, divided by the smallest row norm.
 */
function gradTol(D: number, minNorm: number): Tolerance {
  const t = TOL.f32Matmul(D, 1);
  return { atol: Math.max(TOL.gradient.atol, t.atol) / Math.min(minNorm, 1),
    rtol: TOL.gradient.rtol };
}

function rowNorms(x: R.RefTensor): number[] {
  const [N, D] = x.shape;
  const out: number[] = [];
  for (let r = 0; r < N; r++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += x.data[r * D + j] ** 2;
    out.push(Math.sqrt(s));
  }
  return out;
}

describe('l2Normalize forward and backward', () => {
  const shapes = [[1, 1], [1, 7], [5, 1], [3, 128], [13, 17], [256, 128], [2, 3001], [67, 5]];
  for (const shape of shapes) {
    it(`${JSON.stringify(shape)}`, async () => {
      const x = randomInput(shape, 1, 3);
      const norms = rowNorms(x).filter((n) => n > 0);
      await checkOp(engine(), {
        name: 'l2Normalize', inputs: [x], gpu: ([t]) => l2Normalize(t),
        refForward: ([t]) => R.l2Normalize(t),
        refBackward: (dy, [t]) => [R.l2NormalizeBackward(dy, t)],
        tol: forwardTol(shape[1]), gradTol: gradTol(shape[1], Math.min(...norms)),
      });
    });
  }

  it('a zero row stays zero and its gradient is dy / eps (the floor)', async () => {
    // Row 1 is zero; row 2 lies below eps = 1e-3 without being zero; rows 0, 3 are ordinary.
    const x = R.roundToF32(R.ref([4, 3], [1, 2, 3, 0, 0, 0, 2e-4, -3e-4, 1e-4, -1, 0.5, 4]));
    const eps = 1e-3;
    await checkOp(engine(), {
      name: 'l2Normalize eps', inputs: [x], gpu: ([t]) => l2Normalize(t, eps),
      refForward: ([t]) => R.l2Normalize(t, eps),
      refBackward: (dy, [t]) => [R.l2NormalizeBackward(dy, t, eps)],
      tol: forwardTol(3), gradTol: gradTol(3, 1),
    });
  });

  it('a NaN in a row makes the whole row NaN (not huge values over eps)', async () => {
    const e = engine();
    const xv = [NaN, 1, 2, 3, 3, 0, 4, 0];
    const y = await l2Normalize(e.tensor(xv, [2, 4])).read();
    const want = R.l2Normalize(R.ref([2, 4], xv));
    expect(Array.from(y.subarray(0, 4)).every(Number.isNaN)).toBe(true);
    expect(Array.from(want.data.subarray(0, 4)).every(Number.isNaN)).toBe(true);
    expectClose(y.subarray(4), R.ref([4], Array.from(want.data.subarray(4))), TOL.f32Elementwise,
      'the finite row');
  });

  it('the default eps 1e-12 on an all-zero input gives zeros, not NaN', async () => {
    const e = engine();
    const x = e.zeros([3, 4], { requiresGrad: true });
    const y = l2Normalize(x);
    const [dx] = grad(y, [x], { seed: e.tensor(new Float32Array(12).fill(1e-13), [3, 4]) });
    const [yv, dxv] = await e.run([], [y, dx!]);
    expect([...yv]).toEqual(new Array(12).fill(0));
    // dy / eps = 1e-13 / 1e-12 = 0.1 (both rounded to f32)
    expectClose(dxv, new Array(12).fill(0.1), TOL.f32Elementwise, 'dx of zero rows');
  });

  it('saves the unfloored row norms as a second output', async () => {
    const e = engine();
    const x = randomInput([9, 6], 2);
    const y = l2Normalize(upload(e, x));
    const norm = y.node!.outputs[1];
    expect([...norm.shape]).toEqual([9]);
    expectClose(await norm.read(), rowNorms(x), forwardTol(6), 'saved norms');
  });

  it('past 65 535 workgroups: 65 538 x 64 - 5 rows of one value, y = sign(x)', async () => {
    const e = engine();
    const N = 65_538 * 64 - 5;
    const data = new Float32Array(N);
    for (let i = 0; i < N; i++) data[i] = (i % 7) - 3;
    const x = e.tensor(data, [N, 1], { requiresGrad: true });
    const y = l2Normalize(x);
    const [dx] = grad(y, [x], { seed: e.tensor(new Float32Array(N).fill(1), [N, 1]) });
    const [yv, dxv] = await e.run([], [y, dx!]) as Float32Array[];
    let badY = -1;
    let badDx = -1;
    for (let i = 0; i < N; i++) {
      if (yv[i] !== Math.sign(data[i]) && badY < 0) badY = i;
      // D = 1: y = sign(x) is flat away from 0, so dx = 0; at x = 0, dx = dy / eps.
      const want = data[i] === 0 ? Math.fround(1 / 1e-12) : 0;
      if (Math.abs(dxv[i] - want) > 1e-6 * Math.abs(want) && badDx < 0) badDx = i;
    }
    expect(badY, `first wrong y at row ${badY}`).toBe(-1);
    expect(badDx, `first wrong dx at row ${badDx}`).toBe(-1);
  });
});

describe('l2Normalize argument checks', () => {
  const cases: [string, (x: Tensor) => unknown, RegExp][] = [
    ['rank 1 input', (x) => l2Normalize(x.engine.zeros([4])),
      /l2Normalize: x must have rank 2, got .*\[4\]/],
    ['rank 3 input', (x) => l2Normalize(x.engine.zeros([2, 3, 4])),
      /l2Normalize: x must have rank 2, got .*\[2, 3, 4\]/],
    ['eps = 0', (x) => l2Normalize(x, 0), /l2Normalize: eps must be > 0, got 0/],
    ['eps negative', (x) => l2Normalize(x, -1e-12), /l2Normalize: eps must be > 0, got -1e-12/],
    ['eps infinite', (x) => l2Normalize(x, Infinity),
      /l2Normalize: eps must be a finite number, got Infinity/],
    ['a third argument', (x) => (l2Normalize as (...a: unknown[]) => unknown)(x, 1e-12, 1),
      /l2Normalize: takes at most 2 arguments, as in l2Normalize\(x, eps\); got 1 after them/],
    ['not a tensor', () => l2Normalize([1, 2] as never),
      /l2Normalize: x must be a Tensor, got \[1, 2\]/],
    ['eps a string', (x) => l2Normalize(x, '1e-6' as never),
      /l2Normalize: eps must be a finite number, got "1e-6"/],
  ];
  for (const [what, call, message] of cases) {
    it(what, () => {
      expect(() => call(engine().zeros([2, 3]))).toThrow(message);
    });
  }
});
