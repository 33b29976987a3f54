// The kernel checks the page runs: each op family's kernels on the page's WebGPU adapter
// against the float64 references, forward and backward, one table entry per family.
//
// A family is one entry of CHECKS: a name, the ops it needs from the bundle, and a list of
// cases, each being the GPU call, the reference forward and (optionally) the reference
// backward. Adding a family is one entry here; FAMILIES lists every family the engine is
// meant to have, so the page can say which ones have no check yet, and a family whose ops
// the bundle does not export yet is reported as such rather than failed. Inputs are seeded,
// rounded to float32 before both sides see them, and compared with the reference's named
// tolerance tiers.

import type * as Swavgpu from '../../src/browser.js';
import type { Engine, Tensor } from '../../src/browser.js';
import * as R from '../../src/reference/index.js';
import { TOL, compare, type Tolerance } from '../../src/reference/compare.js';
import { mulberry32 } from '../../src/reference/random.js';
import type { RefTensor } from '../../src/reference/tensor.js';
import type * as BatchnormOps from '../../src/ops/batchnorm.js';
import type * as MatmulOps from '../../src/ops/matmul.js';
import type * as SinkhornOps from '../../src/ops/sinkhorn.js';
import type * as SoftmaxOps from '../../src/ops/softmax.js';

/** What the checks need of the engine's public API (the bundle's exports). */
export type Api = Pick<typeof Swavgpu, 'ops' | 'grad'>;

export interface CheckCase {
  name: string;
  inputs: RefTensor[];
  /** Which inputs get gradients; default all, when refBackward is given. */
  grads?: boolean[];
  gpu: (xs: Tensor[]) => Tensor;
  refForward: (xs: RefTensor[]) => RefTensor;
  refBackward?: (dy: RefTensor, xs: RefTensor[]) => (RefTensor | null)[];
  tol: Tolerance;
  gradTol?: Tolerance;
}

export interface CheckFamily {
  family: string;
  /** Names the bundle's `ops` must export for this family's cases to run. */
  requires: string[];
  cases: (api: Api) => CheckCase[];
}

/** One compared output: a forward, or the gradient of one input. */
export interface CheckRow {
  family: string;
  kernel: string;
  pass: boolean;
  maxAbsErr: number;
  maxRelErr: number;
  /** max_i |a_i - e_i| / (atol + rtol |e_i|): the share of its tolerance the worst element
   *  uses; below 1 passes. */
  usage: number;
  /** The tolerance as text, `atol + rtol |e|`. */
  tol: string;
  message: string;
}

/** The result of one run of the table. */
export interface CheckReport {
  rows: CheckRow[];
  /** Families in CHECKS whose ops the bundle does not export, with the missing names. */
  unavailable: Record<string, string[]>;
}

/** Every op family the engine is to have, in the order the page lists them. */
export const FAMILIES = ['elementwise', 'reduce', 'matmul', 'conv2d', 'batchnorm', 'l2norm',
  'pool', 'softmax', 'sinkhorn', 'augment', 'optim'] as const;

/** Seeded normal inputs rounded to float32, as the GPU will hold them. */
function input(shape: number[], seed: number, scale = 1, shift = 0): RefTensor {
  const t = R.randn(shape, mulberry32(seed));
  for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i] * scale + shift;
  return R.roundToF32(t);
}

const BINARY = ['add', 'sub', 'mul', 'div'] as const;
const UNARY = ['neg', 'relu', 'exp', 'log', 'sqrt', 'square', 'sigmoid', 'tanh', 'abs'] as const;
// Operand pairs that broadcast along rows, columns and a middle axis, none a tile multiple.
const BROADCASTS: [number[], number[]][] = [[[3, 5], [5]], [[2, 1, 4, 3], [5, 1, 3]],
  [[6, 1, 97], [6, 11, 1]]];

/**
 * The bundle's ops typed as the module `M` declares them, every member optional: families
 * whose ops are not exported from src/ops/index.ts yet still type-check (the type-only
 * import of their module is erased) and report themselves as unavailable.
 */
function opsOf<M>(api: Api): M {
  return api.ops as unknown as M;
}

const elementwise: CheckFamily = {
  family: 'elementwise', requires: [...BINARY, ...UNARY, 'leakyRelu'],
  cases: ({ ops }) => [
    ...BINARY.flatMap((op) => BROADCASTS.map(([sa, sb], k): CheckCase => {
      // Divisors are kept near 3, away from 0 where a quotient's error bound means nothing.
      const b = op === 'div' ? input(sb, 20 + k, 1, 3) : input(sb, 20 + k);
      const terms = Math.max(R.size(sa), R.size(sb));
      const fwd = R[op];
      const bwd = R[`${op}Backward`];
      return {
        name: `${op} ${JSON.stringify(sa)} with ${JSON.stringify(sb)}`,
        inputs: [input(sa, 10 + k), b], gpu: ([x, y]) => ops[op](x, y),
        refForward: ([x, y]) => fwd(x, y),
        refBackward: (dy, [x, y]) => { const g = bwd(dy, x, y); return [g.da, g.db]; },
        // The gradient of a broadcast operand is a sum over the broadcast axes.
        tol: TOL.f32Elementwise, gradTol: TOL.f32Reduction(terms, 3),
      };
    })),
    ...UNARY.map((op): CheckCase => {
      // log and sqrt of positive numbers; every input away from the kinks of relu and abs.
      const x = input([4, 257], 30, 2);
      for (let i = 0; i < x.data.length; i++) {
        if (op === 'log' || op === 'sqrt') x.data[i] = Math.abs(x.data[i]) + 0.5;
        if (Math.abs(x.data[i]) < 1e-3) x.data[i] = 0.5;
      }
      return {
        name: `${op} [4, 257]`, inputs: [R.roundToF32(x)], gpu: ([t]) => ops[op](t),
        refForward: ([t]) => R.unary(op, t),
        refBackward: (dy, [t]) => [R.unaryBackward(op, dy, t)],
        // The backward is one more transcendental per element times dy (|dy| ~ 3 at most).
        tol: TOL.f32Elementwise, gradTol: { atol: 1e-5, rtol: 1e-4 },
      };
    }),
    {
      name: 'leakyRelu(0.1) [5, 7]', inputs: [input([5, 7], 40)],
      gpu: ([t]) => ops.leakyRelu(t, 0.1), refForward: ([t]) => R.leakyRelu(t, 0.1),
      refBackward: (dy, [t]) => [R.leakyReluBackward(dy, t, 0.1)], tol: TOL.f32Elementwise,
    },
  ],
};

// Reductions over leading, trailing and split axes, and one long enough to be chunked.
const REDUCTIONS: [number[], number[]][] = [[[13], [0]], [[3, 5], [1]], [[2, 3, 7], [0, 2]],
  [[2, 3000], [1]], [[5000, 3], [0]]];

const reduce: CheckFamily = {
  family: 'reduce', requires: ['sum', 'mean', 'max'],
  cases: ({ ops }) => [
    ...REDUCTIONS.flatMap(([shape, axes], k) => (['sum', 'mean'] as const).map((op): CheckCase => {
      const n = axes.reduce((a, i) => a * shape[i], 1);
      return {
        name: `${op} of ${JSON.stringify(shape)} over ${JSON.stringify(axes)}`,
        inputs: [input(shape, 50 + k)], gpu: ([t]) => ops[op](t, axes),
        refForward: ([t]) => R[op](t, axes, false),
        refBackward: (dy, [t]) => [R[`${op}Backward`](dy, t.shape, axes, false)],
        tol: TOL.f32Reduction(n, 1),
      };
    })),
    {
      // max is exact: it picks one of its float32 inputs.
      name: 'max of [6, 11] over [1]', inputs: [input([6, 11], 60)],
      gpu: ([t]) => ops.max(t, 1), refForward: ([t]) => R.max(t, 1, false), tol: TOL.exact,
    },
  ],
};

// [m, k, n, batch of a, batch of b, transA, transB]: tile-breaking sizes, every transpose,
// a batch, and a 2-D operand broadcast over a batch.
const MATMULS: [number, number, number, number, number, boolean, boolean][] = [
  [1, 1, 1, 0, 0, false, false], [31, 17, 29, 0, 0, false, false], [31, 17, 29, 0, 0, true, true],
  [9, 70, 11, 3, 3, false, true], [19, 23, 13, 5, 0, true, false],
];

const matmul: CheckFamily = {
  family: 'matmul', requires: ['matmul', 'REGISTER_TILING', 'SHARED_TILING'],
  cases: (api) => {
    const { matmul: mm, REGISTER_TILING, SHARED_TILING } = opsOf<typeof MatmulOps>(api);
    const stored = (b: number, r: number, c: number, t: boolean) =>
      [...(b ? [b] : []), ...(t ? [c, r] : [r, c])];
    // Both tilings run on any adapter; the engine picks one per adapter for real work.
    return [REGISTER_TILING, SHARED_TILING].flatMap((tiling) => MATMULS.map(
      ([m, k, n, ba, bb, transA, transB], i): CheckCase => {
        const opts = { transA, transB };
        const batch = Math.max(ba, bb, 1);
        return {
          name: `matmul ${ba ? `${ba}x ` : ''}[${m}, ${k}]${transA ? ' transA' : ''} by ` +
            `${bb ? `${bb}x ` : ''}[${k}, ${n}]${transB ? ' transB' : ''} ` +
            `(${tiling.variant} tiles)`,
          inputs: [input(stored(ba, m, k, transA), 70 + i),
            input(stored(bb, k, n, transB), 80 + i)],
          gpu: ([a, b]) => mm(a, b, { ...opts, tiling }),
          refForward: ([a, b]) => R.matmul(a, b, opts),
          refBackward: (dy, [a, b]) => {
            const g = R.matmulBackward(a, b, dy, opts);
            return [g.da, g.db];
          },
          // Dot products of length k forward; of length n or m (times a shared batch) back.
          tol: TOL.f32Matmul(k), gradTol: TOL.f32Matmul(Math.max(m, n) * batch),
        };
      }));
  },
};

const U = 2 ** -24;

const softmax: CheckFamily = {
  family: 'softmax', requires: ['softmax', 'logSoftmax', 'softCrossEntropy'],
  cases: (api) => {
    const ops = opsOf<typeof SoftmaxOps>(api);
    // [rows, cols, temperature]: a SwAV-sized row at T = 0.1, and shapes off the 64 tile.
    const shapes: [number, number, number][] = [[1, 3000, 0.1], [65, 257, 0.1], [7, 13, 0.5]];
    return shapes.flatMap(([n, k, t], i): CheckCase[] => {
      const x = input([n, k], 90 + i);
      const zMax = x.data.reduce((m, v) => Math.max(m, Math.abs(v / t)), 0);
      // exp(z - lse) turns a few ulp of |z| <= zMax of absolute error into relative error.
      const expTol = { atol: TOL.f32Elementwise.atol,
        rtol: TOL.f32Elementwise.rtol + 4 * zMax * U };
      const logTol = { atol: TOL.f32Elementwise.atol + 4 * zMax * U + TOL.f32Reduction(k).rtol,
        rtol: TOL.f32Elementwise.rtol };
      // Soft targets: positive rows summing to 1, as Sinkhorn codes do.
      const q = R.softmax(input([n, k], 95 + i), 1);
      const rowTol = TOL.f32Reduction(k, zMax + 1);
      return [{
        name: `softmax [${n}, ${k}] at T = ${t}`, inputs: [x], gpu: ([a]) => ops.softmax(a, t),
        refForward: ([a]) => R.softmax(a, t),
        refBackward: (dy, [a]) => [R.softmaxBackward(dy, R.softmax(a, t), t)],
        tol: expTol, gradTol: TOL.gradient,
      }, {
        name: `logSoftmax [${n}, ${k}] at T = ${t}`, inputs: [x],
        gpu: ([a]) => ops.logSoftmax(a, t), refForward: ([a]) => R.logSoftmax(a, t),
        refBackward: (dy, [a]) => [R.logSoftmaxBackward(dy, R.logSoftmax(a, t), t)],
        tol: logTol, gradTol: TOL.gradient,
      }, {
        name: `softCrossEntropy [${n}, ${k}] at T = ${t}, mean`, inputs: [x, R.roundToF32(q)],
        gpu: ([a, b]) => ops.softCrossEntropy(a, b, t),
        refForward: ([a, b]) => R.ref([], [R.softCrossEntropy(a, b, t).mean]),
        refBackward: (dy, [a, b]) => {
          const g = R.softCrossEntropyBackward(a, b, t, dy.data[0]);
          return [g.dlogits, g.dq];
        },
        // Each row sums k terms of size ~zMax; the mean adds a sum over the rows.
        tol: { atol: rowTol.atol + 4 * zMax * U,
          rtol: rowTol.rtol + TOL.f32Reduction(n).rtol + 4 * zMax * U },
        gradTol: TOL.gradient,
      }];
    });
  },
};

const batchnorm: CheckFamily = {
  family: 'batchnorm', requires: ['batchNorm'],
  cases: (api) => {
    const { batchNorm } = opsOf<typeof BatchnormOps>(api);
    // [N, C] with statistics over N, and [N, C, H, W] over N, H, W; none a tile multiple.
    const shapes = [[37, 5], [4, 3, 5, 7], [2, 6, 33, 35]];
    return shapes.map((shape, i): CheckCase => {
      const c = shape[1];
      const m = R.size(shape) / c;
      return {
        name: `batchNorm training ${JSON.stringify(shape)}`,
        inputs: [input(shape, 100 + i, 2, 1), input([c], 110 + i, 0.5, 1), input([c], 120 + i)],
        gpu: ([x, g, b]) => batchNorm(x, g, b, { training: true }),
        refForward: ([x, g, b]) => R.batchNormTrain(x, g, b, 1e-5).y,
        refBackward: (dy, [x, g, b]) => {
          const f = R.batchNormTrain(x, g, b, 1e-5);
          const r = R.batchNormBackward(dy, x, g, f.mean, f.invStd);
          return [r.dx, r.dgamma, r.dbeta];
        },
        // Mean and variance are sums of m terms; y carries their relative error times |xhat|.
        // dgamma and dbeta are sums of m terms dy xhat and dy (|dy xhat| up to ~4) on top of
        // the gradient tier.
        tol: TOL.f32Reduction(m, 4),
        gradTol: { atol: TOL.gradient.atol + TOL.f32Reduction(m, 4).atol, rtol: TOL.gradient.rtol },
      };
    });
  },
};

const sinkhorn: CheckFamily = {
  family: 'sinkhorn', requires: ['sinkhorn'],
  cases: (api) => {
    const { sinkhorn: sk } = opsOf<typeof SinkhornOps>(api);
    // [B, K]: SwAV's Fashion-MNIST head (256 x 30), primes, one row.
    const shapes: [number, number][] = [[256, 30], [13, 257], [1, 7]];
    const eps = 0.05;
    const iters = 3;
    return shapes.map(([b, k], i): CheckCase => {
      // exp(s / eps - u - v): exp turns the potentials' absolute error (a few ulp of 1/eps and
      // of log(BK), plus a log of a sum per iteration) into relative error of the codes.
      const sum = TOL.f32Reduction(Math.max(b, k)).rtol / U;
      const rtol = 4 * (iters + 1) * (3 / eps + Math.log(b * k) + sum) * U;
      return {
        name: `sinkhorn [${b}, ${k}], eps ${eps}, ${iters} iterations`,
        inputs: [R.roundToF32(R.uniform([b, k], mulberry32(130 + i), -1, 1))],
        gpu: ([s]) => sk(s, { epsilon: eps, iterations: iters }),
        refForward: ([s]) => R.sinkhorn(s, eps, iters),
        // Codes below float32's range underflow to 0 while float64 keeps them.
        tol: { atol: 1e-30, rtol },
      };
    });
  },
};

/** The table of checks; add a family here once its ops and references exist. */
export const CHECKS: CheckFamily[] = [elementwise, reduce, matmul, softmax, batchnorm, sinkhorn];

function tolText(t: Tolerance): string {
  return `${t.atol.toPrecision(2)} + ${t.rtol.toPrecision(2)} |e|`;
}

function usageOf(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (err === 0) continue;
    // A NaN or a mismatched infinity counts as infinitely far out.
    const u = Number.isFinite(err) ? err / (tol.atol + tol.rtol * Math.abs(expected[i])) : Infinity;
    worst = Math.max(worst, Number.isNaN(u) ? Infinity : u);
  }
  return worst;
}

function row(family: string, kernel: string, actual: ArrayLike<number>, expected: RefTensor,
  tol: Tolerance): CheckRow {
  const r = compare(actual, expected.data, { ...tol, name: kernel, shape: expected.shape });
  return { family, kernel, pass: r.ok, maxAbsErr: r.maxAbsErr, maxRelErr: r.maxRelErr,
    usage: actual.length === expected.data.length ? usageOf(actual, expected.data, tol) : Infinity,
    tol: tolText(tol), message: r.message };
}

/** A row for a case that threw or produced the wrong shape. */
function failed(family: string, kernel: string, tol: Tolerance, message: string): CheckRow {
  return { family, kernel, pass: false, maxAbsErr: NaN, maxRelErr: NaN, usage: NaN,
    tol: tolText(tol), message };
}

/** Runs one case (forward and backward in one engine run) and returns its rows. */
export async function runCase(engine: Engine, api: Api, family: string, c: CheckCase):
  Promise<CheckRow[]> {
  const want = c.grads ?? c.inputs.map(() => !!c.refBackward);
  const xs = c.inputs.map((t, i) => engine.tensor(t.data, t.shape,
    { requiresGrad: !!c.refBackward && want[i], name: `${c.name} input ${i}` }));
  const y = c.gpu(xs);
  const expected = c.refForward(c.inputs);
  if (y.shape.join() !== expected.shape.join()) {
    return [failed(family, `${c.name} forward`, c.tol, `${c.name}: output shape ` +
      `[${y.shape.join(', ')}], reference [${expected.shape.join(', ')}]`)];
  }
  if (!c.refBackward) return [row(family, `${c.name} forward`, await y.read(), expected, c.tol)];
  const dyRef = input(expected.shape, 99);
  const dy = engine.tensor(dyRef.data, dyRef.shape, { name: `${c.name} dy` });
  const gs = api.grad(y, xs.filter((_, i) => want[i]), { seed: dy }) as Tensor[];
  const refGrads = c.refBackward(dyRef, c.inputs);
  const values = await engine.run([], [y.keep(), ...gs]);
  const rows = [row(family, `${c.name} forward`, values[0], expected, c.tol)];
  let k = 1;
  c.inputs.forEach((_, i) => {
    if (!want[i]) return;
    const r = refGrads[i];
    if (r) {
      rows.push(row(family, `${c.name} backward input ${i}`, values[k], r, c.gradTol ?? c.tol));
    }
    k++;
  });
  for (const t of [...xs, dy, y, ...gs]) t.dispose();
  return rows;
}

/** Runs every case of every family; `onRow` sees each row as it comes (for the page). */
export async function runChecks(engine: Engine, api: Api,
  onRow: (r: CheckRow) => void = () => {}): Promise<CheckReport> {
  const rows: CheckRow[] = [];
  const unavailable: Record<string, string[]> = {};
  for (const fam of CHECKS) {
    const missing = fam.requires.filter((n) => !(n in api.ops));
    if (missing.length) {
      unavailable[fam.family] = missing;
      continue;
    }
    let cases: CheckCase[];
    try {
      cases = fam.cases(api);
    } catch (e) {
      const r = failed(fam.family, '(building its cases)', TOL.exact, String(e));
      rows.push(r);
      onRow(r);
      continue;
    }
    for (const c of cases) {
      let out: CheckRow[];
      try {
        out = await runCase(engine, api, fam.family, c);
      } catch (e) {
        out = [failed(fam.family, c.name, c.tol, (e as Error).message ?? String(e))];
      }
      for (const r of out) {
        rows.push(r);
        onRow(r);
      }
    }
  }
  return { rows, unavailable };
}
