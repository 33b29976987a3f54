// Global average pooling and 2-D max pooling on the GPU against the float64 reference,
// forward and backward: padding, stride apart from the kernel, ties, H != W, argument checks.

import { describe, expect, it } from 'vitest';
import { grad, type Tensor } from '../../src/node.js';
import { globalAvgPool, maxPool2d, maxPool2dIndices, type MaxPool2dOptions }
  from '../../src/ops/pool.js';
import * as R from '../../src/reference/index.js';
import { TOL } from '../../src/reference/compare.js';
import { checkOp, expectClose, randomInput, upload, useEngine } from '../helpers/gpu.js';

const engine = useEngine();

describe('globalAvgPool', () => {
  const shapes = [[1, 1, 1, 1], [2, 3, 5, 7], [1, 5, 13, 1], [3, 2, 28, 28], [2, 67, 7, 7],
    [1, 1, 97, 89]];
  for (const shape of shapes) {
    it(`${JSON.stringify(shape)}`, async () => {
      const x = randomInput(shape, 1);
      const plane = shape[2] * shape[3];
      await checkOp(engine(), {
        name: 'globalAvgPool', inputs: [x], gpu: ([t]) => globalAvgPool(t),
        refForward: ([t]) => R.globalAvgPool(t),
        refBackward: (dy, [t]) => [R.globalAvgPoolBackward(dy, t.shape)],
        // A sum of H W terms of random sign, then one division; the backward is one division.
        tol: TOL.f32Reduction(plane, 1), gradTol: TOL.f32Elementwise,
      });
    });
  }

  // No test past 65 535 workgroups here: a pooling workgroup covers 64 x 8 = 512 values,
  // so reaching it takes 2^25 floats, the whole 128 MiB binding limit. The kernels rebuild
  // their index as batch norm's and l2norm's do, which are tested there.

  it('rejects inputs that are not [N, C, H, W]', () => {
    const e = engine();
    expect(() => globalAvgPool(e.zeros([2, 3]))).toThrow(
      /globalAvgPool: x must have rank 4, got .*\[2, 3\]/);
  });
});

/** The reference's saved indices, for the argmax output: flat h W + w of each window. */
function refIndices(x: R.RefTensor, o: MaxPool2dOptions): number[] {
  const [N, C, H, W] = x.shape;
  const [kh, kw] = pairOf(o.kernel);
  const [sh, sw] = o.stride === undefined ? [kh, kw] : pairOf(o.stride);
  const [ph, pw] = o.padding === undefined ? [0, 0] : pairOf(o.padding);
  const OH = Math.floor((H + 2 * ph - kh) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - kw) / sw) + 1;
  const out: number[] = [];
  for (let nc = 0; nc < N * C; nc++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        let best = -Infinity;
        let arg = -1;
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) {
            const h = oh * sh - ph + i;
            const w = ow * sw - pw + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const v = x.data[(nc * H + h) * W + w];
            if (arg < 0 || v > best) {
              best = v;
              arg = h * W + w;
            }
          }
        }
        out.push(arg);
      }
    }
  }
  return out;
}

function pairOf(v: number | readonly [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

/** Small integers: ties in most windows, and every value exact. */
function tiedInput(shape: number[], seed: number): R.RefTensor {
  const x = randomInput(shape, seed);
  for (let i = 0; i < x.data.length; i++) x.data[i] = Math.round(x.data[i]);
  return x;
}

describe('maxPool2d', () => {
  const cases: [string, number[], MaxPool2dOptions][] = [
    ['2x2 stride 2 (the default stride)', [2, 3, 8, 8], { kernel: 2 }],
    ['3x3 stride 2 padding 1 (ResNet stem)', [2, 2, 11, 9], { kernel: 3, stride: 2, padding: 1 }],
    ['3x3 stride 1: overlapping windows', [1, 3, 7, 5], { kernel: 3, stride: 1 }],
    ['stride above the kernel: skipped elements', [2, 2, 9, 10], { kernel: 2, stride: 3 }],
    ['per-axis kernel, stride and padding', [3, 2, 13, 6],
      { kernel: [3, 2], stride: [2, 1], padding: [1, 1] }],
    ['floor mode drops the last rows', [1, 4, 7, 7], { kernel: 2 }],
    ['kernel the size of x', [2, 3, 5, 4], { kernel: [5, 4] }],
    ['1x1 kernel: identity', [2, 3, 4, 5], { kernel: 1 }],
    ['N = C = 1, H = 1', [1, 1, 1, 13], { kernel: [1, 3], stride: [1, 2], padding: [0, 1] }],
  ];
  for (const [what, shape, o] of cases) {
    for (const ties of [false, true]) {
      it(`${what} ${JSON.stringify(shape)}${ties ? ', with ties' : ''}`, async () => {
        const x = ties ? tiedInput(shape, 2) : randomInput(shape, 3);
        const e = engine();
        await checkOp(e, {
          name: 'maxPool2d', inputs: [x], gpu: ([t]) => maxPool2d(t, o),
          // The reference takes the same options, numbers or pairs.
          refForward: ([t]) => R.maxPool2d(t, o),
          refBackward: (dy, [t]) => [R.maxPool2dBackward(dy, t, o)],
          // A max is exact. Each dx is a sum of the dy of the windows it won, in window
          // order: at most ceil(k / s)^2 terms (9 here), so the reduction tier.
          tol: TOL.exact, gradTol: TOL.f32Reduction(9, 4),
        });
        const y = maxPool2d(upload(e, x), o);
        expect([...await maxPool2dIndices(y).read()], 'saved argmax').toEqual(refIndices(x, o));
      });
    }
  }

  it('ties go to the first maximum in row-major window order', async () => {
    const e = engine();
    // One 3x3 window of equal values, padded: the first real element (0, 0) gets dy.
    const x = e.tensor(new Float32Array(4).fill(7), [1, 1, 2, 2], { requiresGrad: true });
    const y = maxPool2d(x, { kernel: 3, stride: 3, padding: 1 });
    const [dx] = grad(y, [x], { seed: e.tensor([5], [1, 1, 1, 1]) });
    const [yv, iv, dxv] = await e.run([], [y, maxPool2dIndices(y), dx!]);
    expect([...yv, ...iv]).toEqual([7, 0]);
    expect([...dxv]).toEqual([5, 0, 0, 0]);
  });

  it('a NaN anywhere in a window wins, its gradient to the first NaN', async () => {
    const e = engine();
    // Windows of 2x2: NaN second, NaN after -inf, two NaNs, none.
    const xv = [1, NaN, -Infinity, -Infinity, 2, 3, NaN, -Infinity,
      5, NaN, 0, 0, NaN, 4, 0, 7];
    const x = e.tensor(xv, [1, 1, 4, 4], { requiresGrad: true });
    const y = maxPool2d(x, { kernel: 2, stride: 2 });
    const [dx] = grad(y, [x], { seed: e.tensor([10, 20, 30, 40], [1, 1, 2, 2]) });
    const [yv, dxv] = await e.run([], [y, dx!]);
    const rx = R.ref([1, 1, 4, 4], xv);
    const opts = { kernel: 2, stride: 2 };
    expect(Array.from(yv)).toEqual(Array.from(R.maxPool2d(rx, opts).data));
    expect(Array.from(yv)).toEqual([NaN, NaN, NaN, 7]);
    expect(Array.from(dxv)).toEqual(Array.from(R.maxPool2dBackward(
      R.ref([1, 1, 2, 2], [10, 20, 30, 40]), rx, opts).data));
  });

  it('is deterministic where overlapping windows pick the same element', async () => {
    const e = engine();
    const x = tiedInput([2, 3, 33, 31], 4);
    const dy = randomInput([2, 3, 31, 29], 5);
    const once = async () => {
      const X = upload(e, x, true);
      const [dx] = grad(maxPool2d(X, { kernel: 3, stride: 1 }), [X], { seed: upload(e, dy) });
      return (await dx!.read()).slice();
    };
    const a = await once();
    expect(Buffer.from((await once()).buffer).equals(Buffer.from(a.buffer))).toBe(true);
    expectClose(a, R.maxPool2dBackward(dy, x, { kernel: 3, stride: 1 }),
      TOL.f32Reduction(9, 4), 'dx');
  });
});

describe('maxPool2d argument checks', () => {
  const cases: [string, (x: Tensor) => unknown, RegExp][] = [
    ['rank 3 input', (x) => maxPool2d(x.engine.zeros([2, 3, 4]), { kernel: 2 }),
      /maxPool2d: x must have rank 4, got .*\[2, 3, 4\]/],
    ['kernel 0', (x) => maxPool2d(x, { kernel: 0 }),
      /maxPool2d: kernel must be an integer >= 1 or a pair \[h, w\] of them, got 0/],
    ['fractional stride', (x) => maxPool2d(x, { kernel: 2, stride: 1.5 }),
      /maxPool2d: stride must be an integer >= 1 .*got 1.5/],
    ['kernel of three numbers', (x) => maxPool2d(x, { kernel: [2, 2, 2] as never }),
      /maxPool2d: kernel must be .*got \[2, 2, 2\]/],
    ['negative padding', (x) => maxPool2d(x, { kernel: 3, padding: -1 }),
      /maxPool2d: padding must be an integer >= 0 .*got -1/],
    ['padding past half the kernel', (x) => maxPool2d(x, { kernel: [3, 2], padding: [1, 2] }),
      /maxPool2d: padding \[1, 2\] must be at most half the kernel \[3, 2\]/],
    ['kernel larger than x', (x) => maxPool2d(x, { kernel: [7, 2] }),
      /maxPool2d: kernel \[7, 2\] with padding \[0, 0\] does not fit x .*\[2, 3, 5, 6\]/],
    ['no options', (x) => maxPool2d(x, undefined as never),
      /maxPool2d: options are required, as in maxPool2d\(x, \{ kernel, stride, padding \}\)/],
    ['no kernel', (x) => maxPool2d(x, {} as never), /maxPool2d: options \{ kernel \} are required/],
    // { strides: 1 } ran at the default stride (the kernel's); numbers in the options' place
    // are shown as the object they meant.
    ['a misspelt key', (x) => maxPool2d(x, { kernel: 2, strides: 1 } as never),
      /unknown option "strides" \(did you mean "stride"\?\); maxPool2d takes kernel, stride/],
    ['values one by one', (x) => (maxPool2d as (...a: unknown[]) => Tensor)(x, 2, 1),
      /options must be one object, as in maxPool2d\(x, \{ kernel: 2, stride: 1 \}\); got 2, 1/],
    ['indices of something else', (x) => maxPool2dIndices(globalAvgPool(x)),
      /maxPool2dIndices: .* is not the output of maxPool2d/],
  ];
  for (const [what, call, message] of cases) {
    it(what, () => {
      expect(() => call(engine().zeros([2, 3, 5, 6]))).toThrow(message);
    });
  }
});
