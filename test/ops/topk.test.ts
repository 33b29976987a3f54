// Top-k on the GPU against the float64 reference: one-pass and segmented rows, ties, NaN,
// k = 1 and k = M, and a row count past 65535 workgroups.

import { describe, expect, it } from 'vitest';
import { NotSupportedError, OpArgumentError } from '../../src/gpu/errors.js';
import { topk } from '../../src/ops/topk.js';
import { add } from '../../src/ops/elementwise.js';
import { sum } from '../../src/ops/reduce.js';
import { grad } from '../../src/graph/autodiff.js';
import { TOL } from '../../src/reference/compare.js';
import { ref } from '../../src/reference/tensor.js';
import { topk as refTopk } from '../../src/reference/topk.js';
import { mulberry32 } from '../../src/reference/random.js';
import { expectClose, randomInput, upload, useEngine } from '../helpers/gpu.js';
import type { RefTensor } from '../../src/reference/tensor.js';

const engine = useEngine();

/** Runs topk on the GPU and checks both outputs bit for bit: it only moves values. */
async function check(x: RefTensor, k: number, name: string): Promise<void> {
  const e = engine();
  const { values, indices } = topk(upload(e, x), k);
  const want = refTopk(x, k);
  expect([...values.shape], `${name}: shape`).toEqual(want.values.shape);
  const [v, i] = await e.run([], [values, indices]);
  expectClose(i, want.indices, TOL.exact, `${name} indices`);
  expectClose(v, want.values, TOL.exact, `${name} values`);
}

/** Integers in [0, levels): many exact ties. */
function tiedInput(shape: number[], levels: number, seed: number): RefTensor {
  const rnd = mulberry32(seed);
  return ref(shape, () => Math.floor(rnd() * levels));
}

describe('topk against the reference', () => {
  // [rows, cols, k]: one row, one column, primes, k = M, rows that are not a multiple of
  // the 64-wide workgroup, rows at and just past the one-pass length 8192 (a last segment
  // shorter than k), and a row long enough for two segmented passes before the merge.
  const cases: [number[], number][] = [
    [[1, 1], 1], [[1, 7], 7], [[13, 1], 1], [[65, 31], 1], [[65, 31], 5], [[3, 64], 64],
    [[97, 127], 20], [[131, 1009], 64], [[5, 8192], 64], [[7, 8193], 20], [[3, 8209], 64],
    [[2, 5, 16411], 17], [[3, 40009], 64], [[11, 10007], 1], [[1, 600011], 64],
  ];
  for (const [shape, k] of cases) {
    it(`random ${JSON.stringify(shape)}, k = ${k}`, async () => {
      await check(randomInput(shape, shape.reduce((a, b) => a + b, k)), k, 'topk');
    });
  }

  it('ties go to the lower index, within and across segments', async () => {
    // Three levels over 12007 columns: every kept value has thousands of equals, spread
    // over the three segments of the first pass.
    await check(tiedInput([9, 12007], 3, 1), 20, 'ties, segmented');
    await check(tiedInput([33, 61], 4, 2), 13, 'ties, one pass');
    await check(ref([2, 5], [1, 1, 1, 1, 1, 0, 2, 0, 2, 0]), 3, 'ties, by hand');
  });

  it('orders -inf and NaN: NaN after every number', async () => {
    const x = ref([2, 6], [NaN, -Infinity, 3, NaN, Infinity, -1, NaN, NaN, -Infinity, 0, NaN, 5]);
    const e = engine();
    const { values, indices } = topk(upload(e, x), 6);
    const [v, i] = await e.run([], [values, indices]);
    expect([...i]).toEqual([4, 2, 5, 1, 0, 3, 5, 3, 2, 0, 1, 4]);
    expect([...v].slice(0, 4)).toEqual([Infinity, 3, -1, -Infinity]);
    expect(Number.isNaN(v[4]) && Number.isNaN(v[5])).toBe(true);
  });

  it('is deterministic: two runs give the same bits', async () => {
    const e = engine();
    const x = upload(e, tiedInput([50, 5000], 7, 3));
    const a = topk(x, 20);
    const b = topk(x, 20);
    const [ia, ib, va, vb] = await e.run([], [a.indices, b.indices, a.values, b.values]);
    expect(ia).toEqual(ib);
    expect(va).toEqual(vb);
  });

  it('has no gradient: a gradient through it is a loud error, not a dropped term', async () => {
    const e = engine();
    const x = e.tensor([1, 2, 3], [1, 3], { requiresGrad: true });
    const r = topk(x, 2);
    // sum(x) + sum(topk(x)) once gave d/dx = [1, 1, 1], silently missing topk's [0, 1, 1].
    const loss = add(sum(x), sum(r.values));
    expect(() => grad(loss, [x])).toThrow(NotSupportedError);
    expect(() => grad(loss, [x])).toThrow(/op 'topk' has no backward rule/);
    // Under noGrad (evaluation, kNN) it records nothing to differentiate, and runs.
    const v = e.noGrad(() => topk(x, 2).values);
    expect(v.requiresGrad).toBe(false);
    expect(Array.from(await v.read())).toEqual([3, 2]);
  });
});

describe('topk dispatch past the workgroup-count limit', () => {
  it('4 200 007 rows of 3 (65 626 workgroups of 64) fill every row', async () => {
    const rows = 4_200_007;
    const rnd = mulberry32(9);
    const data = new Float32Array(rows * 3);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(rnd() * 5);
    const e = engine();
    const { values, indices } = topk(e.tensor(data, [rows, 3]), 2);
    const [v, i] = await e.run([], [values, indices]);
    // The same rule written out for 3 columns (the reference's sort is slow at this size):
    // the best, then the better of the other two, lower index first on ties.
    const wantI = new Float64Array(rows * 2);
    const wantV = new Float64Array(rows * 2);
    for (let r = 0; r < rows; r++) {
      const p = 3 * r;
      let b = 0;
      if (data[p + 1] > data[p + b]) b = 1;
      if (data[p + 2] > data[p + b]) b = 2;
      const [o1, o2] = b === 0 ? [1, 2] : b === 1 ? [0, 2] : [0, 1];
      const s = data[p + o2] > data[p + o1] ? o2 : o1;
      wantI[2 * r] = b;
      wantI[2 * r + 1] = s;
      wantV[2 * r] = data[p + b];
      wantV[2 * r + 1] = data[p + s];
    }
    expectClose(i, wantI, TOL.exact, 'indices');
    expectClose(v, wantV, TOL.exact, 'values');
  });
});

describe('topk argument errors', () => {
  it('names the op, k and the shape', () => {
    const e = engine();
    const x = e.zeros([4, 10], { name: 'scores' });
    expect(() => topk(x, 0)).toThrow(OpArgumentError);
    expect(() => topk(x, 0)).toThrow('topk: k must be an integer >= 1, got 0');
    expect(() => topk(x, 2.5)).toThrow('topk: k must be an integer >= 1, got 2.5');
    expect(() => topk(x, 11)).toThrow(
      'topk: k = 11 is larger than the row length 10 of scores [4, 10]');
    const wide = e.zeros([1, 100], { name: 'wide' });
    expect(() => topk(wide, 65)).toThrow(NotSupportedError);
    expect(() => topk(wide, 65)).toThrow('topk: k = 65 is past the largest supported k (64');
    expect(() => topk(3 as never, 1)).toThrow('topk: x must be a Tensor, got 3');
    expect(() => (topk as (...a: unknown[]) => unknown)(x, 2, -1))
      .toThrow('topk: takes at most 2 arguments, as in topk(x, k); got -1 after them');
    expect(() => topk(x, '2' as never)).toThrow('topk: k must be an integer >= 1, got "2"');
  });

  it('refuses rows past 2^24 columns, where f32 indices stop being exact', () => {
    const e = engine();
    // 64 MiB of zeros: refused before any GPU work, then freed.
    const x = e.zeros([1, 2 ** 24 + 1], { name: 'x' });
    expect(() => topk(x, 1)).toThrow(NotSupportedError);
    expect(() => topk(x, 1)).toThrow('past 2^24, where f32 indices stop being exact');
    x.dispose();
  });
});
