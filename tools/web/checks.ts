// The kernel checks the page runs: each op family's kernels on the page's WebGPU adapter
// against the float64 references, forward and backward, one table entry per family.
//
// A family is one entry of CHECKS: a name and a list of cases, each case being the GPU call,
// the reference forward and (optionally) the reference backward. Adding a family is one
// entry here; FAMILIES lists every family the engine is meant to have, so the page can say
// which ones have no check yet. Inputs are seeded, rounded to float32 before both sides see
// them, and compared with the reference's named tolerance tiers.

import type * as Swavgpu from '../../src/browser.js';
import type { Engine, Tensor } from '../../src/browser.js';
import * as R from '../../src/reference/index.js';
import { TOL, compare, type Tolerance } from '../../src/reference/compare.js';
import { mulberry32 } from '../../src/reference/random.js';
import type { RefTensor } from '../../src/reference/tensor.js';

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
  cases: (api: Api) => CheckCase[];
}

/** One compared output: a forward, or the gradient of one input. */
export interface CheckRow {
  family: string;
  kernel: string;
  pass: boolean;
  maxAbsErr: number;
  maxRelErr: number;
  /** The tolerance as text, `atol + rtol |e|`. */
  tol: string;
  message: string;
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

const elementwise: CheckFamily = {
  family: 'elementwise',
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
  family: 'reduce',
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

/** The table of checks; add a family here once its ops and references exist. */
export const CHECKS: CheckFamily[] = [elementwise, reduce];

function tolText(t: Tolerance): string {
  return `${t.atol.toPrecision(2)} + ${t.rtol.toPrecision(2)} |e|`;
}

function row(family: string, kernel: string, actual: ArrayLike<number>, expected: RefTensor,
  tol: Tolerance): CheckRow {
  const r = compare(actual, expected.data, { ...tol, name: kernel, shape: expected.shape });
  return { family, kernel, pass: r.ok, maxAbsErr: r.maxAbsErr, maxRelErr: r.maxRelErr,
    tol: tolText(tol), message: r.message };
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
    return [{ family, kernel: `${c.name} forward`, pass: false, maxAbsErr: NaN, maxRelErr: NaN,
      tol: tolText(c.tol), message: `${c.name}: output shape [${y.shape.join(', ')}], ` +
      `reference [${expected.shape.join(', ')}]` }];
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
  onRow: (r: CheckRow) => void = () => {}): Promise<CheckRow[]> {
  const rows: CheckRow[] = [];
  for (const fam of CHECKS) {
    let cases: CheckCase[];
    try {
      cases = fam.cases(api);
    } catch (e) {
      const r = { family: fam.family, kernel: '(building cases)', pass: false, maxAbsErr: NaN,
        maxRelErr: NaN, tol: '', message: String(e) };
      rows.push(r);
      onRow(r);
      continue;
    }
    for (const c of cases) {
      let out: CheckRow[];
      try {
        out = await runCase(engine, api, fam.family, c);
      } catch (e) {
        out = [{ family: fam.family, kernel: c.name, pass: false, maxAbsErr: NaN,
          maxRelErr: NaN, tol: tolText(c.tol), message: (e as Error).message ?? String(e) }];
      }
      for (const r of out) {
        rows.push(r);
        onRow(r);
      }
    }
  }
  return rows;
}
