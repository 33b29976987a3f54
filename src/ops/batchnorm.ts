// Batch normalisation over N (and H, W) per channel, with optional fused ReLU, in-place
// running statistics and its backward (shaders/batchnorm.wgsl).

import type { BufferRange } from '../gpu/context.js';
import { NotSupportedError } from '../gpu/errors.js';
import { registerGrad } from '../graph/autodiff.js';
import type { EncodeContext, Tensor } from '../graph/tensor.js';
import { shapeStr } from '../graph/tensor.js';
import { isCpuAdapter } from '../gpu/acquire.js';
import type { Engine } from '../graph/engine.js';
import { checkFinite, checkFlag, checkKeys, checkOptions, checkRank, checkTensor, fail, groups,
  optionKeys, showValue, vectorRange, type OptionsForm } from './util.js';

/** Threads per workgroup of the per-element kernels (apply, dx). */
const WG_ELEM = 64;
/** The per-element kernels' (apply, dx) consecutive elements per thread. */
export interface BatchNormTiling {
  RUN: number;
}

/**
 * On lavapipe a thread that loops over 32 elements ran 5-8x faster than one thread per
 * element ([128, 16, 28, 28]: 3.5 ms against 21 ms).
 */
export const BATCHNORM_CPU_TILING: BatchNormTiling = { RUN: 32 };
/**
 * GPUs want neighbouring threads on neighbouring addresses: one vec4 a thread where planes
 * allow (RUN 4 runs the vec4 kernels), four floats otherwise. Not measured on a GPU yet.
 */
export const BATCHNORM_GPU_TILING: BatchNormTiling = { RUN: 4 };

export function defaultBatchNormTiling(adapterInfo: string): BatchNormTiling {
  return isCpuAdapter(adapterInfo) ? BATCHNORM_CPU_TILING : BATCHNORM_GPU_TILING;
}

const forcedTiling = new WeakMap<object, BatchNormTiling>();

/**
 * Forces the batch-norm tiling of one engine (tests, benchmarks); null goes back to the
 * adapter's default. Applies to ops recorded afterwards. A RUN that is no multiple of 4
 * keeps the per-element kernels off vec4s.
 */
export function setBatchNormTiling(engine: Engine, t: BatchNormTiling | null): void {
  if (t === null) {
    forcedTiling.delete(engine);
    return;
  }
  checkKeys('setBatchNormTiling', 'tiling', t, optionKeys<BatchNormTiling>({ RUN: true }));
  if (!Number.isInteger(t.RUN) || t.RUN < 1 || t.RUN > 1024) {
    fail('setBatchNormTiling', `RUN must be an integer in 1..1024, got ${showValue(t.RUN)}`);
  }
  forcedTiling.set(engine, { ...t });
}

function runOf(engine: Engine): number {
  return (forcedTiling.get(engine) ?? defaultBatchNormTiling(engine.gpu.adapterInfo)).RUN;
}
/** Threads per workgroup of the per-channel and per-chunk kernels. */
const WG_CHAN = 64;
/**
 * Values of one channel that one thread sums in a fixed order; longer channels are split
 * into chunks that a second dispatch merges. On lavapipe chunks of 1024 to 8192 ran alike
 * (2.6-3.7 ms for [128, 16, 28, 28]); one thread per channel was 5x slower at C = 1
 * (N H W = 100 352: 1.2-2 ms against 0.25 ms), a workgroup tree per channel 2x slower.
 */
export const BN_CHUNK = 1024;

export interface BatchNormOptions {
  /** Batch statistics (and running-stat updates) when true; running statistics when false. */
  training: boolean;
  /** [C]; updated in place in training, read in eval. */
  runningMean?: Tensor;
  /** [C]; tracks the unbiased batch variance in training, read in eval. */
  runningVar?: Tensor;
  /** running = (1 - momentum) running + momentum batch (PyTorch's convention). Default 0.1. */
  momentum?: number;
  /** Added to the variance before the square root. Default 1e-5. */
  eps?: number;
  /** Applies max(y, 0) in the same kernel; the backward masks dy by y > 0. */
  relu?: boolean;
}

const OPTIONS: OptionsForm = { call: 'batchNorm(x, gamma, beta, {})', optional: false,
  keys: optionKeys<BatchNormOptions>({ training: true, runningMean: true, runningVar: true,
    momentum: true, eps: true, relu: true }) };

interface Layout {
  C: number;
  plane: number;
  m: number;
  n: number;
  nChunks: number;
  chunk: number;
}

function layoutOf(x: Tensor): Layout {
  const C = x.shape[1];
  const plane = x.rank === 4 ? x.shape[2] * x.shape[3] : 1;
  const m = x.shape[0] * plane;
  const nChunks = Math.ceil(m / BN_CHUNK);
  return { C, plane, m, n: x.size, nChunks, chunk: nChunks === 1 ? m : BN_CHUNK };
}

function params(l: Layout, eps: number, momentum: number): Record<string, number> {
  return { C: l.C, plane: l.plane, m: l.m, n: l.n, chunk: l.chunk, n_chunks: l.nChunks, eps,
    momentum };
}

function checkChannelVector(op: string, name: string, t: unknown, x: Tensor): Tensor {
  checkTensor(op, name, t);
  const C = x.shape[1];
  if (t.rank !== 1 || t.shape[0] !== C) {
    fail(op, `${name} must be [${C}] (one value per channel of x ${shapeStr(x.shape)}), got ` +
      `${t.describe()}`);
  }
  if (t.engine !== x.engine) fail(op, `${name} belongs to another engine than x`);
  return t;
}

/**
 * Batch normalisation of x [N, C] (statistics over N) or [N, C, H, W] (over N, H, W):
 * y = (x - mean) / sqrt(var + eps) gamma + beta, then max(y, 0) when `relu`.
 *
 * Training uses the batch's mean and biased variance; given running tensors, it updates
 * them in place in the same run, the variance with the unbiased batch variance. Eval uses
 * the running statistics. The node also outputs the mean and 1 / sqrt(var + eps) it used
 * ([C] each), saved for the backward.
 */
export function batchNorm(x: Tensor, gamma: Tensor, beta: Tensor,
  opts: BatchNormOptions): Tensor {
  const op = 'batchNorm';
  checkRank(op, 'x', x, [2, 4]);
  checkChannelVector(op, 'gamma', gamma, x);
  checkChannelVector(op, 'beta', beta, x);
  checkOptions(op, arguments, 3, OPTIONS);
  if (typeof opts.training !== 'boolean') {
    fail(op, `options.training must be true or false, got ${showValue(opts.training)}`);
  }
  const eps = checkFinite(op, 'eps', opts.eps ?? 1e-5, (v) => v > 0, 'must be > 0');
  const momentum = checkFinite(op, 'momentum', opts.momentum ?? 0.1, (v) => v >= 0 && v <= 1,
    'must lie in [0, 1]');
  const relu = checkFlag(op, 'options.relu', opts.relu, false);
  const { runningMean: rm, runningVar: rv } = opts;
  if ((rm === undefined) !== (rv === undefined)) {
    fail(op, 'runningMean and runningVar must be given together');
  }
  if (rm) checkChannelVector(op, 'runningMean', rm, x);
  if (rv) checkChannelVector(op, 'runningVar', rv, x);
  const l = layoutOf(x);
  const p = params(l, eps, momentum);
  const e = x.engine;
  const RUN = runOf(e);

  if (!opts.training) {
    if (!rm || !rv) fail(op, 'eval mode (training: false) needs runningMean and runningVar');
    const [y] = e.record({
      op, inputs: [x, gamma, beta, rm, rv], outputs: [x.shape, [l.C], [l.C]],
      attrs: { training: false, eps, relu },
      encode: (ctx) => {
        ctx.dispatch({
          shader: 'batchnorm', entry: 'stats_eval', overrides: { WG: WG_CHAN },
          bindings: { mean: ctx.output(1), inv_std: ctx.output(2), run_mean: ctx.input(3),
            run_var: ctx.input(4) },
          uniforms: p, workgroups: groups(l.C, WG_CHAN),
        });
        encodeApply(ctx, l, p, relu, RUN);
      },
    });
    return y;
  }

  if (l.m < 2) {
    fail(op, `training needs more than one value per channel, x is ${x.describe()} ` +
      `(the unbiased variance would divide by zero)`);
  }
  for (const [name, t] of [['runningMean', rm], ['runningVar', rv]] as const) {
    if (t && (t.node !== null || t.state !== 'ready')) {
      fail(op, `${name} ${t.describe()} is updated in place, so it must be a leaf tensor ` +
        `(state ${t.state}${t.node ? `, produced by ${t.node.op}` : ''})`);
    }
  }
  if (rm && rm === rv) fail(op, 'runningMean and runningVar must be different tensors');
  const running = rm !== undefined;
  const [y] = e.record({
    op, inputs: [x, gamma, beta], outputs: [x.shape, [l.C], [l.C]],
    mutates: running ? [rm, rv!] : [], attrs: { training: true, eps, momentum, relu },
    encode: (ctx) => {
      const out: Record<string, BufferRange> = { mean: ctx.output(1), inv_std: ctx.output(2) };
      if (running) {
        out.run_mean = ctx.mutated(0);
        out.run_var = ctx.mutated(1);
      }
      const suffix = running ? '_running' : '';
      if (l.nChunks === 1) {
        ctx.dispatch({
          shader: 'batchnorm', entry: `stats_single${suffix}`, overrides: { WG: WG_CHAN },
          bindings: { x: ctx.input(0), ...out }, uniforms: p,
          workgroups: groups(l.C, WG_CHAN),
        });
      } else {
        const partial = ctx.scratch(l.C * l.nChunks * 8);
        ctx.dispatch({
          shader: 'batchnorm', entry: 'stats_partial', overrides: { WG: WG_CHAN },
          bindings: { x: ctx.input(0), partial }, uniforms: p,
          workgroups: groups(l.C * l.nChunks, WG_CHAN),
        });
        ctx.dispatch({
          shader: 'batchnorm', entry: `stats_final${suffix}`, overrides: { WG: WG_CHAN },
          bindings: { partial, ...out }, uniforms: p, workgroups: groups(l.C, WG_CHAN),
        });
      }
      encodeApply(ctx, l, p, relu, RUN);
    },
  });
  return y;
}

/** The mean and 1 / sqrt(var + eps) [C] a batchNorm output was computed with. */
export function batchNormSaved(y: Tensor): { mean: Tensor; invStd: Tensor } {
  if (!y.node || y.node.op !== 'batchNorm' || y.outputIndex !== 0) {
    fail('batchNormSaved', `${y.describe()} is not the output of batchNorm`);
  }
  return { mean: y.node.outputs[1], invStd: y.node.outputs[2] };
}

/**
 * vec4 views of the element buffers where every plane holds a multiple of 4 values (so no
 * vec4 straddles two channels), or null: then the per-element kernels run on vec4s (apply4,
 * grad_input4), a quarter of the loads and stores.
 */
function vec4Views(l: Layout, run: number, ranges: BufferRange[]): BufferRange[] | null {
  if (l.plane % 4 !== 0 || run % 4 !== 0) return null;
  const views = ranges.map((r) => vectorRange(r, 4));
  return views.every((v) => v !== null) ? views as BufferRange[] : null;
}

function encodeApply(ctx: EncodeContext, l: Layout, p: Record<string, number>,
  relu: boolean, RUN: number): void {
  const stats = { saved_mean: ctx.output(1), saved_inv_std: ctx.output(2),
    gamma: ctx.input(1), beta: ctx.input(2) };
  const v = vec4Views(l, RUN, [ctx.input(0), ctx.output(0)]);
  ctx.dispatch({
    shader: 'batchnorm', entry: v ? 'apply4' : 'apply',
    overrides: { WG: WG_ELEM, RUN, RELU: Number(relu) },
    bindings: v ? { ...stats, src4: v[0], y4: v[1] }
      : { ...stats, src: ctx.input(0), y: ctx.output(0) },
    uniforms: p, workgroups: groups(l.n, WG_ELEM * RUN),
  });
}

/**
 * The backward of batchNorm as one node: dx, dgamma, dbeta from dy and what the forward
 * saved (mean, invStd, and y when the ReLU was fused). In training, dx goes through the
 * batch statistics; in eval, they are constants.
 */
function batchNormBackward(dy: Tensor, x: Tensor, gamma: Tensor, mean: Tensor, invStd: Tensor,
  y: Tensor | null, training: boolean, needX: boolean, needAffine: boolean): Tensor[] {
  const l = layoutOf(x);
  const p = params(l, 0, 0);
  const relu = y !== null;
  const RUN = runOf(x.engine);
  const inputs = [dy, x, gamma, mean, invStd, ...(relu ? [y] : [])];
  const sums = training || needAffine;
  const outputs = [...(needX ? [x.shape] : []), ...(sums ? [[l.C], [l.C]] : [])];
  return x.engine.record({
    op: 'batchNormBackward', inputs, outputs, attrs: { training, relu },
    encode: (ctx) => {
      const RELU = Number(relu);
      // Without the ReLU the kernels never read y; dy stands in for the binding.
      const yb = relu ? ctx.input(5) : ctx.input(0);
      const dxOut = needX ? ctx.output(0) : null;
      let coef = null;
      if (sums) {
        const k = needX ? 1 : 0;
        const gpartial = ctx.scratch(l.C * l.nChunks * 8);
        coef = ctx.scratch(l.C * 16);
        ctx.dispatch({
          shader: 'batchnorm', entry: 'grad_partial', overrides: { WG: WG_CHAN, RELU },
          bindings: { gdy: ctx.input(0), gx: ctx.input(1), gy: yb, pmean: ctx.input(3),
            gpartial },
          uniforms: p, workgroups: groups(l.C * l.nChunks, WG_CHAN),
        });
        ctx.dispatch({
          shader: 'batchnorm', entry: 'grad_final', overrides: { WG: WG_CHAN },
          bindings: { gsum: gpartial, fmean: ctx.input(3), finv: ctx.input(4),
            fgamma: ctx.input(2), dgamma: ctx.output(k), dbeta: ctx.output(k + 1), coef },
          uniforms: p, workgroups: groups(l.C, WG_CHAN),
        });
      }
      if (!dxOut) return;
      if (training) {
        const v = vec4Views(l, RUN, [ctx.input(0), ctx.input(1), yb, dxOut]);
        ctx.dispatch({
          shader: 'batchnorm', entry: v ? 'grad_input4' : 'grad_input',
          overrides: { WG: WG_ELEM, RUN, RELU },
          bindings: v ? { gdy4: v[0], gx4: v[1], gy4: v[2], gcoef: coef!, dx4: v[3] }
            : { gdy: ctx.input(0), gx: ctx.input(1), gy: yb, gcoef: coef!, dx: dxOut },
          uniforms: p, workgroups: groups(l.n, WG_ELEM * RUN),
        });
      } else {
        ctx.dispatch({
          shader: 'batchnorm', entry: 'grad_input_eval', overrides: { WG: WG_ELEM, RUN, RELU },
          bindings: { gdy: ctx.input(0), gy: yb, egamma: ctx.input(2), einv: ctx.input(4),
            dx: dxOut },
          uniforms: p, workgroups: groups(l.n, WG_ELEM * RUN),
        });
      }
    },
  });
}

// With xhat = (x - mean) invStd and sums over the m values of a channel (dy masked by
// y > 0 when the ReLU is fused):
// training: dbeta = sum dy, dgamma = sum dy xhat,
//           dx = gamma invStd (dy - dbeta / m - xhat dgamma / m)
// eval:     same dgamma and dbeta, dx = gamma invStd dy
registerGrad('batchNorm', ({ inputs, outputs, attrs, grads, needs }) => {
  if (grads[1] || grads[2]) {
    throw new NotSupportedError('grad: batchNorm\'s saved mean and invStd outputs carry no ' +
      'backward rule; take gradients through y only');
  }
  if (needs[3] || needs[4]) {
    throw new NotSupportedError('grad: batchNorm in eval mode has no gradient for ' +
      'runningMean or runningVar (they are statistics, not parameters)');
  }
  const [x, gamma] = inputs;
  const [y, mean, invStd] = outputs;
  const training = attrs.training as boolean;
  const needAffine = needs[1] || needs[2];
  const res = batchNormBackward(grads[0]!, x, gamma, mean, invStd,
    attrs.relu ? y : null, training, needs[0], needAffine);
  const dx = needs[0] ? res[0] : null;
  const k = needs[0] ? 1 : 0;
  const dgamma = needAffine ? res[k] : null;
  const dbeta = needAffine ? res[k + 1] : null;
  return [dx, needs[1] ? dgamma : null, needs[2] ? dbeta : null, null, null];
});
