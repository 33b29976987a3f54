// Softmax and log-softmax with temperature over the last axis, and the fused soft-target
// cross-entropy that SwAV's swapped prediction loss is made of (shaders/softmax.wgsl).

import { registerGrad } from '../graph/autodiff.js';
import type { Tensor } from '../graph/tensor.js';
import { checkArity, checkChoice, checkFinite, checkOptions, checkRank, checkSameShape,
  checkTensor, fail, groups, optionKeys } from './util.js';

/** Threads per workgroup of every kernel here; a power of two (ce_mean's tree needs it). */
const WG = 64;

export type CrossEntropyReduction = 'mean' | 'none';

export interface SoftCrossEntropyOptions {
  /** 'mean' (default): one value, the mean over rows; 'none': the [N] per-row losses. */
  reduction?: CrossEntropyReduction;
}

const CE_OPTIONS = { call: 'softCrossEntropy(logits, q, temperature, {})',
  keys: optionKeys<SoftCrossEntropyOptions>({ reduction: true }) };

function checkTemperature(op: string, temperature: unknown): number {
  return checkFinite(op, 'temperature', temperature, (t) => t > 0, 'must be > 0');
}

/** Rows and row length of a softmax over the last axis. */
function rowsOf(op: string, x: Tensor): [number, number] {
  checkTensor(op, 'x', x);
  if (x.rank < 1) {
    fail(op, `x must have rank >= 1 (softmax runs over the last axis), got ${x.describe()}`);
  }
  const cols = x.shape[x.rank - 1];
  return [x.size / cols, cols];
}

function softmaxOp(op: 'softmax' | 'logSoftmax', x: Tensor, temperature: number): Tensor {
  const [rows, cols] = rowsOf(op, x);
  const T = checkTemperature(op, temperature);
  const [y] = x.engine.record({
    op, inputs: [x], outputs: [x.shape], attrs: { temperature: T },
    encode: (ctx) => ctx.dispatch({
      shader: 'softmax', entry: 'softmax_forward',
      overrides: { WG, LOG: op === 'logSoftmax' ? 1 : 0 },
      bindings: { sm_x: ctx.input(0), sm_y: ctx.output(0) },
      uniforms: { rows, cols, inv_t: 1 / T },
      workgroups: groups(rows, WG),
    }),
  });
  return y;
}

/** softmax(x / T) over the last axis. */
export function softmax(x: Tensor, temperature = 1): Tensor {
  checkArity('softmax', arguments, 2, 'softmax(x, temperature)');
  return softmaxOp('softmax', x, temperature);
}

/** log softmax(x / T) over the last axis. */
export function logSoftmax(x: Tensor, temperature = 1): Tensor {
  checkArity('logSoftmax', arguments, 2, 'logSoftmax(x, temperature)');
  return softmaxOp('logSoftmax', x, temperature);
}

/** The backward of (log-)softmax from its output y: one thread per row, two passes. */
function softmaxBackward(op: 'softmax' | 'logSoftmax', dy: Tensor, y: Tensor,
  temperature: number): Tensor {
  const [rows, cols] = rowsOf(`${op}Backward`, y);
  const [dx] = y.engine.record({
    op: `${op}Backward`, inputs: [dy, y], outputs: [y.shape], attrs: { temperature },
    encode: (ctx) => ctx.dispatch({
      shader: 'softmax', entry: 'softmax_backward',
      overrides: { WG, LOG: op === 'logSoftmax' ? 1 : 0 },
      bindings: { smb_dy: ctx.input(0), smb_y: ctx.input(1), smb_dx: ctx.output(0) },
      uniforms: { rows, cols, inv_t: 1 / temperature },
      workgroups: groups(rows, WG),
    }),
  });
  return dx;
}

/**
 * Cross-entropy of soft targets q against softmax(logits / T), row by row:
 * loss_i = -sum_k q_ik log softmax(logits_i / T)_k. Rows of q need not sum to 1. One kernel
 * computes the losses and keeps each row's log-sum-exp and sum of q for the backward.
 */
export function softCrossEntropy(logits: Tensor, q: Tensor, temperature = 1,
  opts: SoftCrossEntropyOptions = {}): Tensor {
  const op = 'softCrossEntropy';
  checkRank(op, 'logits', logits, [2]);
  checkRank(op, 'q', q, [2]);
  checkSameShape(op, logits, q, 'logits', 'q');
  if (logits.engine !== q.engine) fail(op, 'logits and q belong to different engines');
  const T = checkTemperature(op, temperature);
  checkOptions(op, arguments, 3, CE_OPTIONS);
  const reduction = checkChoice(op, 'reduction', opts.reduction ?? 'mean', ['mean', 'none']);
  const [rows, cols] = logits.shape;
  const [loss] = logits.engine.record({
    op, inputs: [logits, q], outputs: [reduction === 'mean' ? [] : [rows], [rows, 2]],
    attrs: { temperature: T, reduction },
    encode: (ctx) => {
      const perRow = reduction === 'mean' ? ctx.scratch(rows * 4) : ctx.output(0);
      ctx.dispatch({
        shader: 'softmax', entry: 'ce_forward', overrides: { WG },
        bindings: { ce_x: ctx.input(0), ce_q: ctx.input(1), ce_loss: perRow,
          ce_stats: ctx.output(1) },
        uniforms: { rows, cols, inv_t: 1 / T },
        workgroups: groups(rows, WG),
      });
      if (reduction === 'mean') {
        ctx.dispatch({
          shader: 'softmax', entry: 'ce_mean', overrides: { WG },
          bindings: { mean_in: perRow, mean_out: ctx.output(0) },
          uniforms: { n: rows, scale: 1 / rows },
          workgroups: 1,
        });
      }
    },
  });
  return loss;
}

/** One of the two backward kernels of softCrossEntropy (one thread per row). */
function crossEntropyGrad(which: 'logits' | 'q', x: Tensor, q: Tensor, stats: Tensor,
  dl: Tensor, temperature: number, reduction: CrossEntropyReduction): Tensor {
  const [rows, cols] = x.shape;
  const uniforms = {
    rows, cols, inv_t: 1 / temperature,
    dl_stride: reduction === 'mean' ? 0 : 1, dl_scale: reduction === 'mean' ? 1 / rows : 1,
  };
  const workgroups = groups(rows, WG);
  if (which === 'logits') {
    const [dx] = x.engine.record({
      op: 'softCrossEntropyGradLogits', inputs: [x, q, stats, dl], outputs: [x.shape],
      attrs: { temperature, reduction },
      encode: (ctx) => ctx.dispatch({
        shader: 'softmax', entry: 'ce_grad_logits', overrides: { WG },
        bindings: { cg_x: ctx.input(0), cg_q: ctx.input(1), cg_stats: ctx.input(2),
          cg_dl: ctx.input(3), cg_out: ctx.output(0) },
        uniforms, workgroups,
      }),
    });
    return dx;
  }
  const [dq] = x.engine.record({
    op: 'softCrossEntropyGradQ', inputs: [x, stats, dl], outputs: [x.shape],
    attrs: { temperature, reduction },
    encode: (ctx) => ctx.dispatch({
      shader: 'softmax', entry: 'ce_grad_q', overrides: { WG },
      bindings: { cq_x: ctx.input(0), cq_stats: ctx.input(1), cq_dl: ctx.input(2),
        cq_out: ctx.output(0) },
      uniforms, workgroups,
    }),
  });
  return dq;
}

// ---- backward rules --------------------------------------------------------------------

// y = softmax(x / T): dx = y (dy - <dy, y>) / T, per row
registerGrad('softmax', ({ outputs: [y], grads: [g], attrs }) =>
  [softmaxBackward('softmax', g!, y, attrs.temperature as number)]);
// y = log softmax(x / T): dx = (dy - exp(y) sum(dy)) / T, per row
registerGrad('logSoftmax', ({ outputs: [y], grads: [g], attrs }) =>
  [softmaxBackward('logSoftmax', g!, y, attrs.temperature as number)]);
// l_i = -sum_k q_ik log p_ik, p = softmax(x / T):
//   dx_ik = dl_i (p_ik sum_j q_ij - q_ik) / T,  dq_ik = -dl_i log p_ik
// (dl_i = dl / N for the mean). The saved stats output carries no gradient.
registerGrad('softCrossEntropy', ({ inputs: [x, q], outputs: [, stats], grads: [g], attrs,
  needs }) => {
  const T = attrs.temperature as number;
  const red = attrs.reduction as CrossEntropyReduction;
  return [
    needs[0] ? crossEntropyGrad('logits', x, q, stats, g!, T, red) : null,
    needs[1] ? crossEntropyGrad('q', x, q, stats, g!, T, red) : null,
  ];
});
