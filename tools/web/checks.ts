// The kernel checks the page runs: each op family's kernels on the page's WebGPU adapter
// against the float64 references, forward and backward, one table entry per family.
//
// A family is one entry of CHECKS: a name and a list of cases. An op case is the GPU call,
// the reference forward and (optionally) the reference backward, run as forward + backward
// in one engine run; a run case (optimizers, augmentation) does its own GPU work and
// returns outputs with their references. Adding a family is one entry here. Inputs are
// seeded, rounded to float32 before both sides see them, and compared with the reference's
// named tolerance tiers.

import type * as Swavgpu from '../../src/browser.js';
import type { Engine, Tensor } from '../../src/browser.js';
import { augmentReference } from '../../src/reference/augment.js';
import * as R from '../../src/reference/index.js';
import { TOL, compare, type Tolerance } from '../../src/reference/compare.js';
import { mulberry32 } from '../../src/reference/random.js';
import type { RefTensor } from '../../src/reference/tensor.js';

/** What the checks need of the engine's public API (the bundle's exports). */
export type Api = Pick<typeof Swavgpu, 'ops' | 'grad' | 'optim' | 'GpuImages'>;

/** An op, its reference forward and backward. */
export interface OpCase {
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

/** One output of a run case and what it should be. */
export interface CheckOutput {
  kernel: string;
  actual: ArrayLike<number>;
  expected: RefTensor;
  tol: Tolerance;
}

/** GPU work that is not one op with a gradient (optimizer steps, image augmentation). */
export interface RunCase {
  name: string;
  tol: Tolerance;
  run: (engine: Engine, api: Api) => Promise<CheckOutput[]>;
}

export type CheckCase = OpCase | RunCase;

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
  /** Wall time of the whole table, milliseconds. */
  ms: number;
}

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
    ...BINARY.flatMap((op) => BROADCASTS.map(([sa, sb], k): OpCase => {
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
    ...UNARY.map((op): OpCase => {
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
    ...REDUCTIONS.flatMap(([shape, axes], k) => (['sum', 'mean'] as const).map((op): OpCase => {
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
  family: 'matmul',
  cases: (api) => {
    const { matmul: mm, REGISTER_TILING, SHARED_TILING } = api.ops;
    const stored = (b: number, r: number, c: number, t: boolean) =>
      [...(b ? [b] : []), ...(t ? [c, r] : [r, c])];
    // Both tilings run on any adapter; the engine picks one per adapter for real work.
    return [REGISTER_TILING, SHARED_TILING].flatMap((tiling) => MATMULS.map(
      ([m, k, n, ba, bb, transA, transB], i): OpCase => {
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
  family: 'softmax',
  cases: (api) => {
    const { ops } = api;
    // [rows, cols, temperature]: a SwAV-sized row at T = 0.1, and shapes off the 64 tile.
    const shapes: [number, number, number][] = [[1, 3000, 0.1], [65, 257, 0.1], [7, 13, 0.5]];
    return shapes.flatMap(([n, k, t], i): OpCase[] => {
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
  family: 'batchnorm',
  cases: (api) => {
    const { batchNorm } = api.ops;
    // [N, C] with statistics over N, and [N, C, H, W] over N, H, W; none a tile multiple.
    const shapes = [[37, 5], [4, 3, 5, 7], [2, 6, 33, 35]];
    return shapes.map((shape, i): OpCase => {
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
  family: 'sinkhorn',
  cases: (api) => {
    const { sinkhorn: sk } = api.ops;
    // [B, K]: SwAV's Fashion-MNIST head (256 x 30), primes, one row.
    const shapes: [number, number][] = [[256, 30], [13, 257], [1, 7]];
    const eps = 0.05;
    const iters = 3;
    return shapes.map(([b, k], i): OpCase => {
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

type Pair = [number, number];

// [x, w, stride, padding, dilation, bias]: per-axis stride, padding and dilation, 1x1 and
// non-square kernels, one input channel, channel counts past one tile.
const CONVS: [number[], number[], Pair, Pair, Pair, boolean][] = [
  [[2, 3, 9, 11], [5, 3, 3, 3], [1, 1], [1, 1], [1, 1], true],
  [[2, 4, 7, 5], [3, 4, 1, 1], [1, 1], [0, 0], [1, 1], false],
  [[2, 3, 11, 13], [7, 3, 3, 3], [2, 1], [1, 0], [1, 2], true],
  [[2, 19, 9, 9], [17, 19, 3, 3], [2, 2], [1, 1], [1, 1], true],
  [[4, 1, 28, 28], [8, 1, 3, 3], [1, 1], [1, 1], [1, 1], true],
];

const conv2d: CheckFamily = {
  family: 'conv2d',
  cases: ({ ops }) => CONVS.map(([xs, ws, stride, padding, dilation, bias], i): OpCase => {
    const opts = { stride, padding, dilation };
    const [o, c, kh, kw] = ws;
    const out = R.conv2dOutputShape(xs, ws, opts);
    return {
      name: `conv2d ${JSON.stringify(xs)} * ${JSON.stringify(ws)} stride ${stride} ` +
        `padding ${padding} dilation ${dilation}${bias ? ' + bias' : ''}`,
      inputs: [input(xs, 140 + i), input(ws, 150 + i), ...(bias ? [input([o], 160 + i)] : [])],
      gpu: ([x, w, b]) => ops.conv2d(x, w, b ?? null, opts),
      refForward: ([x, w, b]) => R.conv2d(x, w, b ?? null, opts),
      refBackward: (dy, [x, w]) => [R.conv2dBackwardInput(dy, w, x.shape, opts),
        R.conv2dBackwardWeight(dy, x, w.shape, opts), ...(bias ? [R.conv2dBackwardBias(dy)] : [])],
      // Dot products of C KH KW terms forward; of O KH KW (dx) or N H' W' (dw, db) back.
      tol: TOL.f32Matmul(c * kh * kw),
      gradTol: TOL.f32Matmul(Math.max(o * kh * kw, out[0] * out[2] * out[3])),
    };
  }),
};

const l2norm: CheckFamily = {
  family: 'l2norm',
  cases: ({ ops }) => [[1, 1], [7, 13], [65, 300]].map(([n, d], i): OpCase => {
    const x = input([n, d], 170 + i);
    let minNorm = Infinity;
    for (let r = 0; r < n; r++) {
      let q = 0;
      for (let j = 0; j < d; j++) q += x.data[r * d + j] ** 2;
      minNorm = Math.min(minNorm, Math.sqrt(q));
    }
    // Forward: a sum of d squares, a sqrt and a division; |y| <= 1. Backward: a dot product
    // of d terms that cancels when dy lies along y, divided by the row norm.
    const red = TOL.f32Reduction(d).rtol;
    const dot = TOL.f32Matmul(d, 1);
    return {
      name: `l2Normalize [${n}, ${d}]`, inputs: [x], gpu: ([t]) => ops.l2Normalize(t),
      refForward: ([t]) => R.l2Normalize(t),
      refBackward: (dy, [t]) => [R.l2NormalizeBackward(dy, t)],
      tol: { atol: red + TOL.f32Elementwise.atol, rtol: red + TOL.f32Elementwise.rtol },
      gradTol: { atol: Math.max(TOL.gradient.atol, dot.atol) / Math.min(minNorm, 1),
        rtol: TOL.gradient.rtol },
    };
  }),
};

const pool: CheckFamily = {
  family: 'pool',
  cases: ({ ops }) => [
    ...[[2, 3, 5, 7], [3, 2, 28, 28], [1, 1, 97, 89]].map((shape, i): OpCase => ({
      name: `globalAvgPool ${JSON.stringify(shape)}`, inputs: [input(shape, 180 + i)],
      gpu: ([t]) => ops.globalAvgPool(t), refForward: ([t]) => R.globalAvgPool(t),
      refBackward: (dy, [t]) => [R.globalAvgPoolBackward(dy, t.shape)],
      // A sum of H W terms, then a division; the backward is one division.
      tol: TOL.f32Reduction(shape[2] * shape[3], 1), gradTol: TOL.f32Elementwise,
    })),
    ...([[[2, 3, 9, 11], [3, 3], [2, 2], [1, 1]], [[1, 2, 8, 13], [2, 3], [2, 1], [0, 1]]] as
      [number[], Pair, Pair, Pair][]).map(([shape, kernel, stride, padding], i): OpCase => ({
      name: `maxPool2d ${JSON.stringify(shape)} kernel ${kernel} stride ${stride} ` +
        `padding ${padding}`,
      inputs: [input(shape, 190 + i)],
      gpu: ([t]) => ops.maxPool2d(t, { kernel, stride, padding }),
      refForward: ([t]) => R.maxPool2d(t, { kernel, stride, padding }),
      refBackward: (dy, [t]) => [R.maxPool2dBackward(dy, t, { kernel, stride, padding })],
      // The max picks one input; its gradient routes dy values and sums where windows overlap.
      tol: TOL.exact, gradTol: TOL.f32Reduction(4, 3),
    })),
  ],
};

/** Seeded u8 images with some pure 0 and 255, to reach the clamps. */
function pixels(count: number, height: number, width: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: count * height * width }, () => {
    const r = rng();
    return r < 0.1 ? 0 : r > 0.9 ? 255 : Math.floor(rng() * 256);
  });
}

const augment: CheckFamily = {
  family: 'augment',
  cases: () => [[28, 28, 28], [28, 28, 12], [13, 17, 9]].map(([h, w, size], i): RunCase => {
    // Boxes on the edges, a flip, jitter in both orders and a blur.
    const crops = [
      { x0: 0, y0: 0, w, h, flip: false, brightness: 1, contrast: 1, contrastFirst: false,
        sigma: 0 },
      { x0: 2, y0: 1, w: w - 5, h: h - 3, flip: true, brightness: 1.3, contrast: 0.7,
        contrastFirst: true, sigma: 0.8 },
      { x0: w - 6, y0: h - 5, w: 6, h: 5, flip: false, brightness: 0.6, contrast: 1.4,
        contrastFirst: false, sigma: 0 },
    ];
    const [mean, std] = [0.286, 0.353];
    // Bilinear sampling carries ~8 u of the image side per coordinate, times the jitter's
    // gain (1.4 at most); the crop mean is a sum of size^2 terms; all over std.
    const U = 2 ** -24;
    const atol = (1.4 * (8 * U * Math.max(h, w) + 4 * size * U) + 64 * U) / std;
    const tol = { atol: atol + TOL.f32Elementwise.atol, rtol: TOL.f32Elementwise.rtol };
    return {
      name: `multiCrop ${h}x${w} to ${size}x${size}`, tol,
      run: async (engine, api) => {
        const px = pixels(4, h, w, 200 + i);
        const images = new api.GpuImages(engine, { images: px, count: 4, height: h, width: w });
        // Both sides get the float32 crop parameters the kernel reads.
        const packed = api.ops.unpackCrops(api.ops.packCrops(crops, h, w));
        const indices = [3, 0, 2];
        const y = api.ops.multiCrop(images, indices, packed, { size, mean, std });
        const actual = await y.read();
        images.dispose();
        const want = augmentReference(px, h, w, indices, packed, size, mean, std);
        return [{ kernel: `multiCrop ${h}x${w} to ${size}x${size}, 3 crops`, actual,
          expected: want, tol }];
      },
    };
  }),
};

type OptimizerOf = (api: Api) => Swavgpu.optim.Optimizer;
type RefStep = (p: Float64Array, g: Float64Array, state: (Float64Array | null)[], step: number)
  => void;

// [name, shape, optimizer, reference step]: momentum and weight decay, LARS's one-workgroup
// and multi-pass norms (past 16384 values), Adam's bias correction over steps.
const OPTIMIZERS: [string, number[], OptimizerOf, RefStep][] = [
  ['SGD momentum 0.9, weight decay 1e-4', [13, 257],
    (api) => new api.optim.SGD({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 }),
    (p, g, st) => {
      st[0] = R.sgdStep(p, g, st[0], { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
    }],
  ['LARS', [13, 257],
    (api) => new api.optim.LARS({ lr: 4.8, momentum: 0.9, weightDecay: 1e-6, trust: 0.001 }),
    (p, g, st) => {
      st[0] = R.larsStep(p, g, st[0], { lr: 4.8, momentum: 0.9, weightDecay: 1e-6,
        trust: 0.001 });
    }],
  ['LARS, multi-pass norms', [130, 131],
    (api) => new api.optim.LARS({ lr: 4.8, momentum: 0.9, weightDecay: 1e-6, trust: 0.001 }),
    (p, g, st) => {
      st[0] = R.larsStep(p, g, st[0], { lr: 4.8, momentum: 0.9, weightDecay: 1e-6,
        trust: 0.001 });
    }],
  ['Adam, weight decay 1e-2', [13, 257],
    (api) => new api.optim.Adam({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8,
      weightDecay: 1e-2 }),
    (p, g, st, step) => {
      st[0] ??= new Float64Array(p.length);
      st[1] ??= new Float64Array(p.length);
      R.adamStep(p, g, st[0], st[1], step + 1, { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8,
        weightDecay: 1e-2 });
    }],
];

const optim: CheckFamily = {
  family: 'optim',
  cases: () => OPTIMIZERS.map(([name, shape, make, refStep], i): RunCase => ({
    // A few float32 roundings per step of parameters and moments; LARS adds its norms'
    // relative error to a ratio that scales lr-sized steps: all inside the elementwise tier.
    name: `${name} ${JSON.stringify(shape)}, 3 steps`, tol: TOL.f32Elementwise,
    run: async (engine, api) => {
      const p0 = input(shape, 210 + i);
      const p = engine.param(p0.data, shape, `${name} p`);
      const ref = Float64Array.from(p0.data);
      const state: (Float64Array | null)[] = [null, null];
      const opt = make(api);
      for (let s = 0; s < 3; s++) {
        const g = input(shape, 220 + 10 * i + s);
        opt.step([p], [engine.tensor(g.data, shape)]);
        refStep(ref, g.data, state, s);
      }
      const actual = await p.read();
      p.dispose();
      return [{ kernel: `${name} ${JSON.stringify(shape)}, parameter after 3 steps`, actual,
        expected: R.ref(shape, ref), tol: TOL.f32Elementwise }];
    },
  })),
};

/** The table of checks: one entry per op family. */
export const CHECKS: CheckFamily[] = [elementwise, reduce, matmul, conv2d, batchnorm, l2norm,
  pool, softmax, sinkhorn, augment, optim];

function tolText(t: Tolerance): string {
  return `${t.atol.toPrecision(2)} + ${t.rtol.toPrecision(2)} |e|`;
}

/** The share of its tolerance the worst element uses: below 1 passes. */
export function usageOf(actual: ArrayLike<number>, expected: ArrayLike<number>,
  tol: Tolerance): number {
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

/** Runs one case (an op's forward and backward in one engine run) and returns its rows. */
export async function runCase(engine: Engine, api: Api, family: string, c: CheckCase):
  Promise<CheckRow[]> {
  if ('run' in c) {
    const outs = await c.run(engine, api);
    return outs.map((o) => row(family, o.kernel, o.actual, o.expected, o.tol));
  }
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
  const t0 = performance.now();
  const rows: CheckRow[] = [];
  for (const fam of CHECKS) {
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
  return { rows, ms: performance.now() - t0 };
}
