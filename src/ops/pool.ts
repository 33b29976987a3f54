// Global average pooling and 2-D max pooling in NCHW, forward and backward
// (shaders/pool.wgsl).

import { NotSupportedError } from '../gpu/errors.js';
import { registerGrad } from '../graph/autodiff.js';
import type { Shape, Tensor } from '../graph/tensor.js';
import { shapeStr } from '../graph/tensor.js';
import { checkOptions, checkRank, fail, groups, optionKeys, showValue, type OptionsForm }
  from './util.js';

/** Threads per workgroup. */
const WG = 64;
/**
 * Consecutive values per thread of the average's kernels (see the note in pool.wgsl): each
 * forward output already loops over a plane; the backward writes one value per element,
 * where 32 per thread ran 3-4x faster than 8 on lavapipe.
 */
const RUN_OUT = 8;
const RUN_IN = 32;

type Pair = number | readonly [number, number];

export interface MaxPool2dOptions {
  /** Window size, one number for both axes or [kh, kw]. */
  kernel: Pair;
  /** Default: the kernel, as PyTorch. */
  stride?: Pair;
  /** -inf rows and columns on each side, [ph, pw]; at most half the kernel. Default 0. */
  padding?: Pair;
}

interface Geometry {
  N: number; C: number; H: number; W: number; OH: number; OW: number;
  kh: number; kw: number; sh: number; sw: number; ph: number; pw: number;
  n_in: number; n_out: number;
}

const OPTIONS: OptionsForm = { call: 'maxPool2d(x, {})', optional: false,
  keys: optionKeys<MaxPool2dOptions>({ kernel: true, stride: true, padding: true }),
  positional: ['kernel', 'stride', 'padding'] };

function pair(op: string, name: string, v: unknown, min: number): [number, number] {
  const p = typeof v === 'number' ? [v, v] : Array.isArray(v) && v.length === 2 ? v : null;
  if (!p || !p.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= min)) {
    fail(op, `${name} must be an integer >= ${min} or a pair [h, w] of them, got ` +
      showValue(v));
  }
  return [p[0] as number, p[1] as number];
}

function geometry(op: string, x: Tensor, opts: MaxPool2dOptions): Geometry {
  checkRank(op, 'x', x, [4]);
  if (opts.kernel === undefined) fail(op, 'options { kernel } are required');
  const [kh, kw] = pair(op, 'kernel', opts.kernel, 1);
  const [sh, sw] = opts.stride === undefined ? [kh, kw] : pair(op, 'stride', opts.stride, 1);
  const [ph, pw] = opts.padding === undefined ? [0, 0] : pair(op, 'padding', opts.padding, 0);
  // PyTorch's rule; it also makes every window hold at least one real element.
  if (2 * ph > kh || 2 * pw > kw) {
    fail(op, `padding [${ph}, ${pw}] must be at most half the kernel [${kh}, ${kw}]`);
  }
  const [N, C, H, W] = x.shape;
  // OH = floor((H + 2 ph - kh) / sh) + 1 (floor mode)
  const OH = Math.floor((H + 2 * ph - kh) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - kw) / sw) + 1;
  if (OH < 1 || OW < 1) {
    fail(op, `kernel [${kh}, ${kw}] with padding [${ph}, ${pw}] does not fit x ${x.describe()}`);
  }
  if (H * W > 2 ** 24) {
    throw new NotSupportedError(`${op}: the saved argmax is an f32 plane index, exact up to ` +
      `2^24; x ${x.describe()} has ${H * W} values per plane`);
  }
  return { N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, n_in: x.size, n_out: N * C * OH * OW };
}

function avgGeometry(x: Tensor): Geometry {
  const [N, C, H, W] = x.shape;
  return { N, C, H, W, OH: 1, OW: 1, kh: H, kw: W, sh: 1, sw: 1, ph: 0, pw: 0, n_in: x.size,
    n_out: N * C };
}

/** y[n, c] = mean of x[n, c, :, :] for x [N, C, H, W]. */
export function globalAvgPool(x: Tensor): Tensor {
  const op = 'globalAvgPool';
  checkRank(op, 'x', x, [4]);
  const g = avgGeometry(x);
  const [y] = x.engine.record({
    op, inputs: [x], outputs: [[g.N, g.C]],
    encode: (ctx) => ctx.dispatch({
      shader: 'pool', entry: 'avg_forward', overrides: { WG, RUN: RUN_OUT },
      bindings: { ax: ctx.input(0), ay: ctx.output(0) }, uniforms: { ...g },
      workgroups: groups(g.n_out, WG * RUN_OUT),
    }),
  });
  return y;
}

// dx[n, c, h, w] = dy[n, c] / (H W)
registerGrad('globalAvgPool', ({ inputs: [x], grads: [dy] }) => {
  const g = avgGeometry(x);
  const [dx] = x.engine.record({
    op: 'globalAvgPoolBackward', inputs: [dy!], outputs: [x.shape],
    encode: (ctx) => ctx.dispatch({
      shader: 'pool', entry: 'avg_backward', overrides: { WG, RUN: RUN_IN },
      bindings: { ady: ctx.input(0), adx: ctx.output(0) }, uniforms: { ...g },
      workgroups: groups(g.n_in, WG * RUN_IN),
    }),
  });
  return [dx];
});

/**
 * 2-D max pooling of x [N, C, H, W] (floor mode; padding reads as -inf, so it never wins).
 * The node also outputs, per window, the flat index h W + w of its first maximum in
 * row-major window order, as f32 (PyTorch's return_indices); the gradient goes to it.
 */
export function maxPool2d(x: Tensor, opts: MaxPool2dOptions): Tensor {
  const op = 'maxPool2d';
  checkOptions(op, arguments, 1, OPTIONS);
  const g = geometry(op, x, opts);
  const outShape: Shape = [g.N, g.C, g.OH, g.OW];
  const [y] = x.engine.record({
    op, inputs: [x], outputs: [outShape, outShape], attrs: { geometry: g },
    encode: (ctx) => ctx.dispatch({
      shader: 'pool', entry: 'max_forward', overrides: { WG },
      bindings: { mx: ctx.input(0), my: ctx.output(0), argmax: ctx.output(1) },
      uniforms: { ...g }, workgroups: groups(g.N * g.C * g.OH, WG),
    }),
  });
  return y;
}

/** The saved argmax (flat h W + w per window, as f32) of a maxPool2d output. */
export function maxPool2dIndices(y: Tensor): Tensor {
  if (!y.node || y.node.op !== 'maxPool2d' || y.outputIndex !== 0) {
    fail('maxPool2dIndices', `${y.describe()} is not the output of maxPool2d`);
  }
  return y.node.outputs[1];
}

// dx[i] = sum of dy over the windows whose first maximum is i. The saved indices are
// piecewise constant in x: no gradient flows through them.
registerGrad('maxPool2d', ({ inputs: [x], outputs: [, argmax], grads: [dy], attrs }) => {
  const g = attrs.geometry as Geometry;
  if (!dy) return [null];
  if (dy.shape.some((d, i) => d !== argmax.shape[i])) {
    fail('maxPool2d backward', `dy ${shapeStr(dy.shape)} is not ${shapeStr(argmax.shape)}`);
  }
  const [dx] = x.engine.record({
    op: 'maxPool2dBackward', inputs: [dy, argmax], outputs: [x.shape],
    encode: (ctx) => ctx.dispatch({
      shader: 'pool', entry: 'max_backward', overrides: { WG },
      bindings: { mdy: ctx.input(0), margmax: ctx.input(1), mdx: ctx.output(0) },
      uniforms: { ...g }, workgroups: groups(g.N * g.C * g.H, WG),
    }),
  });
  return [dx];
});
