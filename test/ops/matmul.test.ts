// Matrix products on the GPU against the float64 reference, forward and backward: sizes that
// break every tile, all four transposes, batches and broadcast batches, the fused bias + relu,
// both tilings, and a grid past 65535 workgroups.

import { describe, it, expect } from 'vitest';
import { matmul, REGISTER_TILING, SHARED_TILING, defaultMatmulTiling,
  type MatmulTiling } from '../../src/ops/matmul.js';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { transpose2d } from '../../src/ops/transpose.js';
import { relu } from '../../src/ops/elementwise.js';
import { grad } from '../../src/node.js';
import * as R from '../../src/reference/index.js';
import { TOL } from '../../src/reference/compare.js';
import { checkOp, expectClose, randomInput, upload, useEngine } from '../helpers/gpu.js';

const engine = useEngine();

/** Stored shape of an operand: [rows, cols] of op(x), swapped when transposed, batch first. */
function stored(batch: number, rows: number, cols: number, trans: boolean): number[] {
  const s = trans ? [cols, rows] : [rows, cols];
  return batch ? [batch, ...s] : s;
}

interface Case {
  m: number; k: number; n: number;
  /** Batch of a and of b; 0 means 2-D. */
  ba?: number; bb?: number;
  tA?: boolean; tB?: boolean;
  tiling?: MatmulTiling;
}

async function checkMatmul(c: Case, seed = 1): Promise<void> {
  const { m, k, n, ba = 0, bb = 0, tA = false, tB = false } = c;
  const a = randomInput(stored(ba, m, k, tA), seed);
  const b = randomInput(stored(bb, k, n, tB), seed + 1);
  const opts = { transA: tA, transB: tB };
  // Terms a_i b_i are products of two unit normals; a gradient's dot products run over N
  // (for da) or M, times the batch when a shared operand sums over it (for db).
  const batch = Math.max(ba, bb, 1);
  await checkOp(engine(), {
    name: `matmul ${JSON.stringify(c)}`, inputs: [a, b],
    gpu: ([x, y]) => matmul(x, y, { ...opts, tiling: c.tiling }),
    refForward: ([x, y]) => R.matmul(x, y, opts),
    refBackward: (dy, [x, y]) => {
      const g = R.matmulBackward(x, y, dy, opts);
      return [g.da, g.db];
    },
    tol: TOL.f32Matmul(k), gradTol: TOL.f32Matmul(Math.max(m, n) * batch),
  });
}

describe('matmul over sizes that break the tiles', () => {
  const sizes: [number, number, number][] = [
    [1, 1, 1], [7, 13, 5], [31, 17, 29], [1, 64, 1], [65, 3, 67], [64, 64, 64], [100, 129, 33],
  ];
  for (const [m, k, n] of sizes) {
    it(`${m}x${k} times ${k}x${n}`, async () => checkMatmul({ m, k, n }));
  }
});

describe('matmul transposes, all four ways', () => {
  for (const tA of [false, true]) {
    for (const tB of [false, true]) {
      it(`transA=${tA} transB=${tB}, 31x17x29`, async () =>
        checkMatmul({ m: 31, k: 17, n: 29, tA, tB }, 3));
      it(`transA=${tA} transB=${tB}, batched 3x 9x70x11`, async () =>
        checkMatmul({ m: 9, k: 70, n: 11, ba: 3, bb: 3, tA, tB }, 5));
    }
  }
});

describe('matmul batches', () => {
  it('batched 4x 33x7x40', async () => checkMatmul({ m: 33, k: 7, n: 40, ba: 4, bb: 4 }));
  it('batch of 1', async () => checkMatmul({ m: 5, k: 6, n: 7, ba: 1, bb: 1 }));
  for (const tA of [false, true]) {
    for (const tB of [false, true]) {
      it(`a 3-D, b 2-D broadcast (transA=${tA} transB=${tB})`, async () =>
        checkMatmul({ m: 19, k: 23, n: 13, ba: 5, tA, tB }, 7));
      it(`a 2-D broadcast, b 3-D (transA=${tA} transB=${tB})`, async () =>
        checkMatmul({ m: 19, k: 23, n: 13, bb: 5, tA, tB }, 9));
    }
  }
});

describe('matmul with the workgroup-memory tiling (the GPU variant)', () => {
  const tilings: MatmulTiling[] = [
    SHARED_TILING,
    // Non-square workgroups and tiles, and a slice depth that does not divide K.
    { variant: 'shared', TM: 2, TN: 8, WG_X: 8, WG_Y: 4, BK: 8 },
  ];
  for (const tiling of tilings) {
    for (const [tA, tB] of [[false, false], [true, true], [true, false], [false, true]]) {
      it(`${JSON.stringify(tiling)} transA=${tA} transB=${tB}`, async () =>
        checkMatmul({ m: 70, k: 37, n: 45, ba: 2, bb: 2, tA, tB, tiling }, 11));
    }
    it(`${JSON.stringify(tiling)} broadcast b, 1x1x1 and primes`, async () => {
      await checkMatmul({ m: 31, k: 17, n: 29, ba: 3, tiling });
      await checkMatmul({ m: 1, k: 1, n: 1, tiling });
    });
  }
  it('other register tilings agree', async () => {
    for (const t of [{ TM: 1, TN: 1, WG_X: 4, WG_Y: 2 }, { TM: 3, TN: 5, WG_X: 2, WG_Y: 8 }]) {
      await checkMatmul({ m: 23, k: 19, n: 37, ba: 2, bb: 2, tA: true,
        tiling: { variant: 'register', ...t } });
    }
  });
  it('picks register tiles on lavapipe and workgroup memory elsewhere', () => {
    expect(defaultMatmulTiling('mesa software llvmpipe-llvm-15').variant).toBe('register');
    expect(defaultMatmulTiling('nvidia hopper NVIDIA H200').variant).toBe('shared');
  });
});

/** relu(op(a) op(b) + bias) and its gradients in float64. */
function refFused(a: R.RefTensor, b: R.RefTensor, bias: R.RefTensor, dy: R.RefTensor | null,
  opts: R.MatmulOptions, relu: boolean) {
  const z = R.matmul(a, b, opts);
  const n = bias.shape[0];
  const y = R.clone(z);
  for (let i = 0; i < y.data.length; i++) {
    y.data[i] += bias.data[i % n];
    if (relu) y.data[i] = Math.max(0, y.data[i]);
  }
  if (!dy) return { y };
  const dz = R.clone(dy);
  for (let i = 0; i < dz.data.length; i++) if (relu && y.data[i] <= 0) dz.data[i] = 0;
  const g = R.matmulBackward(a, b, dz, opts);
  const dbias = R.zeros([n]);
  for (let i = 0; i < dz.data.length; i++) dbias.data[i % n] += dz.data[i];
  return { y, da: g.da, db: g.db, dbias };
}

describe('matmul with a fused bias and relu', () => {
  const cases = [
    { m: 37, k: 21, n: 19, ba: 0, bb: 0, tA: false, tB: false, relu: true },
    { m: 37, k: 21, n: 19, ba: 3, bb: 0, tA: false, tB: true, relu: true },
    { m: 12, k: 9, n: 33, ba: 2, bb: 2, tA: true, tB: false, relu: false },
  ];
  for (const c of cases) {
    for (const tiling of [REGISTER_TILING, SHARED_TILING]) {
      it(`${JSON.stringify(c)} ${tiling.variant}`, async () => {
        const a = randomInput(stored(c.ba, c.m, c.k, c.tA), 21);
        const b = randomInput(stored(c.bb, c.k, c.n, c.tB), 22);
        const bias = randomInput([c.n], 23);
        const opts = { transA: c.tA, transB: c.tB };
        const rows = c.m * Math.max(c.ba, c.bb, 1);
        await checkOp(engine(), {
          name: `fused matmul ${JSON.stringify(c)}`, inputs: [a, b, bias],
          gpu: ([x, y, z]) => matmul(x, y, { ...opts, bias: z, relu: c.relu, tiling }),
          refForward: ([x, y, z]) => refFused(x, y, z, null, opts, c.relu).y,
          refBackward: (dy, [x, y, z]) => {
            const g = refFused(x, y, z, dy, opts, c.relu);
            return [g.da!, g.db!, g.dbias!];
          },
          tol: TOL.f32Matmul(c.k + 1), gradTol: TOL.f32Matmul(Math.max(rows, c.n)),
        });
      });
    }
  }
});

describe('matmul with relu keeps NaN', () => {
  for (const tiling of [REGISTER_TILING, SHARED_TILING]) {
    it(`a NaN in a row of a makes that row NaN, not 0 (${tiling.variant})`, async () => {
      const e = engine();
      // Row 1 of a holds a NaN; every product is negative elsewhere, so relu gives 0 there.
      const a = e.tensor([1, 1, NaN, 1, 2, 2], [3, 2]);
      const b = e.tensor([-1, -2, -3, -1, -2, -3], [2, 3]);
      const y = matmul(a, b, { relu: true, bias: e.tensor([0, 0, 0], [3]), tiling });
      expect(Array.from(await y.read(), (v) => (v === 0 ? 0 : v)))
        .toEqual([0, 0, 0, NaN, NaN, NaN, 0, 0, 0]);
    });
  }
});

describe('matmul with relu: the gradient at a dead unit is 0', () => {
  it('even where the gradient coming in is infinite, as relu(matmul) gives', async () => {
    const e = engine();
    // y = relu(a b) = [[1, 0]]: the second unit is dead, and dy there is +inf.
    const a = e.tensor([1, 1], [1, 2], { requiresGrad: true });
    const b = e.tensor([1, -1, 0, -1], [2, 2]);
    const dy = e.tensor([2, Infinity], [1, 2]);
    const [fused] = grad(matmul(a, b, { relu: true }), [a], { seed: dy });
    const [plain] = grad(relu(matmul(a, b)), [a], { seed: dy });
    const [vf, vp] = await e.run([], [fused!, plain!]);
    expect(Array.from(vf)).toEqual([2, 0]);
    expect(Array.from(vp)).toEqual([2, 0]);
  });
});

describe('matmul dispatch past 65535 workgroups', () => {
  // Small workgroups reach the limit at a modest M; the folding is the same for any tiling.
  const tilings: MatmulTiling[] = [
    { variant: 'register', TM: 2, TN: 2, WG_X: 1, WG_Y: 2 },
    { variant: 'shared', TM: 1, TN: 2, WG_X: 1, WG_Y: 2, BK: 4 },
  ];
  for (const t of tilings) {
    it(`folds a tall, thin product over more than 65535 row tiles (${t.variant})`, async () => {
      const e = engine();
      const rowsPerWorkgroup = t.WG_Y * t.TM;
      // N = 2 and K = 3 keep every other size small: one column of M / rows workgroups.
      const m = 65_536 * rowsPerWorkgroup + 5;
      const workgroups = Math.ceil(m / rowsPerWorkgroup) * Math.ceil(2 / (t.WG_X * t.TN));
      expect(workgroups).toBeGreaterThan(65_535);
      const a = randomInput([m, 3], 31);
      const b = randomInput([3, 2], 32);
      const y = matmul(upload(e, a), upload(e, b), { tiling: t });
      expectClose(await y.read(), R.matmul(a, b), TOL.f32Matmul(3), 'tall matmul');
    });
  }
});

describe('transpose2d', () => {
  for (const shape of [[1, 1], [7, 13], [3, 31, 17]]) {
    it(`${JSON.stringify(shape)} and its backward`, async () => {
      const x = randomInput(shape, 41);
      const tr = (t: R.RefTensor) => {
        const [r, c] = t.shape.slice(-2);
        const bsz = t.shape.length === 3 ? t.shape[0] : 1;
        const out = R.zeros(t.shape.length === 3 ? [bsz, c, r] : [c, r]);
        for (let bi = 0; bi < bsz; bi++) {
          for (let i = 0; i < r; i++) {
            for (let j = 0; j < c; j++) {
              out.data[bi * r * c + j * r + i] = t.data[bi * r * c + i * c + j];
            }
          }
        }
        return out;
      };
      await checkOp(engine(), {
        name: 'transpose2d', inputs: [x], gpu: ([t]) => transpose2d(t),
        refForward: ([t]) => tr(t), refBackward: (dy) => [tr(dy)], tol: TOL.exact,
      });
    });
  }
});

describe('matmul argument checks', () => {
  it('names the op and the shapes', () => {
    const e = engine();
    const a = e.zeros([3, 4]);
    const b = e.zeros([5, 6]);
    expect(() => matmul(a, b)).toThrow(new RegExp('matmul: inner sizes differ: ' +
      'a \\[3, 4\\] \\(transA=false\\) gives K=4, b \\[5, 6\\] \\(transB=false\\) gives K=5'));
    expect(() => matmul(e.zeros([2, 3, 4]), e.zeros([3, 4, 5])))
      .toThrow(/matmul: batch sizes differ: a \[2, 3, 4\], b \[3, 4, 5\]/);
    expect(() => matmul(e.zeros([4]), b)).toThrow(/matmul: a must have rank 2 or 3, got .* \[4\]/);
    expect(() => matmul(a, e.zeros([4, 2]), { bias: e.zeros([3]) }))
      .toThrow(/matmul: bias must be \[2\] \(one value per output column\), got .* \[3\]/);
    expect(() => matmul(a, e.zeros([4, 2]), { tiling: { ...REGISTER_TILING, TM: 17 } }))
      .toThrow(/matmul: tiling.TM must be an integer in 1..16, got 17/);
    expect(() => matmul(a, e.zeros([4, 2]), { tiling: { ...REGISTER_TILING, TN: '8' as never } }))
      .toThrow(/matmul: tiling.TN must be an integer in 1..8, got "8"/);
    expect(() => transpose2d(e.zeros([2, 2, 2, 2])))
      .toThrow(/transpose2d: x must have rank 2 or 3/);
  });
});

describe('matmul options from plain JavaScript', () => {
  /** matmul as plain JavaScript sees it: any arguments. */
  const js = matmul as (...args: unknown[]) => ReturnType<typeof matmul>;
  const keys = 'matmul takes transA, transB, bias, relu, tiling';
  const operands = () => {
    const e = engine();
    return { a: e.tensor([1, 2, 3, 4], [2, 2]), b: e.tensor([1, 2, 3, 4], [2, 2]),
      bias: e.tensor([-12, 0], [2], { name: 'bias' }) };
  };

  it('an unknown key names the closest known one', () => {
    const { a, b } = operands();
    expect(() => js(a, b, { transposeB: true })).toThrow(OpArgumentError);
    expect(() => js(a, b, { transposeB: true })).toThrow(
      `matmul: unknown option "transposeB" (did you mean "transB"?); ${keys}`);
    // Two neighbours swapped are one slip: short keys were two edits away, past the bound.
    expect(() => js(a, b, { rleu: true })).toThrow(
      `matmul: unknown option "rleu" (did you mean "relu"?); ${keys}`);
    expect(() => js(a, b, { bais: null })).toThrow(
      `matmul: unknown option "bais" (did you mean "bias"?); ${keys}`);
    expect(() => js(a, b, { tiling: { ...REGISTER_TILING, tm: 4 } })).toThrow('matmul: ' +
      'unknown key "tm" in options.tiling (did you mean "TM"?); options.tiling takes variant, ' +
      'TM, TN, WG_X, WG_Y, BK');
  });

  it('options that are not one object, and values of the wrong type, are refused', () => {
    const { a, b, bias } = operands();
    const form = 'matmul(a, b, { transA, transB, bias, relu, tiling })';
    expect(() => js(a, b, true)).toThrow(
      `matmul: options must be one object, as in ${form}; got true`);
    expect(() => js(a, b, bias)).toThrow(
      `matmul: options must be one object, as in ${form}; got a Tensor (bias [2])`);
    expect(() => js(a, b, { relu: 'yes' })).toThrow('matmul: relu must be true or false, ' +
      'got "yes"');
    expect(() => js(a, b, { transB: 1 })).toThrow('matmul: transB must be true or false, got 1');
    expect(() => js(a, b, { bias: 0 })).toThrow('matmul: bias must be a Tensor, got 0');
    expect(() => js(a, b, { tiling: { ...REGISTER_TILING, variant: 'Shared' } })).toThrow(
      `matmul: tiling.variant must be 'register' or 'shared', got "Shared"`);
  });

  it('valid options still transpose, add the bias and apply relu', async () => {
    const { a, b, bias } = operands();
    // [[1, 2], [3, 4]] times itself: plain, b transposed, a transposed + bias + relu.
    expect(Array.from(await js(a, b, {}).read())).toEqual([7, 10, 15, 22]);
    expect(Array.from(await js(a, b, { transB: true }).read())).toEqual([5, 11, 11, 25]);
    expect(Array.from(await js(a, b, { transA: true, bias, relu: true }).read()))
      .toEqual([0, 14, 2, 20]);
  });
});
