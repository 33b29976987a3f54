// Stochastic gradient descent with momentum, Nesterov and weight decay, as PyTorch's SGD
// with dampening 0 (shaders/optim.wgsl, entry sgd).

import type { BufferRange } from '../gpu/context.js';
import type { EncodeContext, Tensor } from '../graph/tensor.js';
import { checkFinite, fail, groups } from '../ops/util.js';
import { Optimizer, type OptimizerOptions } from './optimizer.js';

/** Threads per workgroup of the update kernels. */
export const OPTIM_WG = 256;

export interface SgdOptions extends OptimizerOptions {
  /** Default 0: no momentum buffer. */
  momentum?: number;
  /** L2 penalty added to the gradient; default 0. */
  weightDecay?: number;
  /** Nesterov momentum (needs momentum > 0); default false. */
  nesterov?: boolean;
}

export interface SgdUpdate {
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

/**
 * Dispatches the SGD update of p (mutated range) from g, with momentum buffer `buf` when
 * given. With `coef` (LARS), the direction is (g + coef[1] p) coef[0] and weightDecay is
 * ignored. Shared by SGD and LARS.
 */
export function dispatchSgd(ctx: EncodeContext, n: number, ranges: { p: BufferRange;
  g: BufferRange; buf: BufferRange | null; coef?: BufferRange }, u: SgdUpdate): void {
  const bindings: Record<string, BufferRange> = { param: ranges.p, grad: ranges.g,
    // The kernel never touches buf without momentum, but the binding must be filled.
    buf: ranges.buf ?? ctx.scratch(4) };
  if (ranges.coef) bindings.coef = ranges.coef;
  ctx.dispatch({
    shader: 'optim', entry: ranges.coef ? 'lars' : 'sgd',
    overrides: { WG: OPTIM_WG, HAS_BUF: ranges.buf ? 1 : 0, NESTEROV: u.nesterov ? 1 : 0 },
    bindings,
    uniforms: { n, lr: u.lr, momentum: u.momentum, weight_decay: u.weightDecay },
    workgroups: groups(n, OPTIM_WG),
  });
}

/** Checks momentum, weight decay and Nesterov as PyTorch does. */
export function checkSgdOptions(op: string, opts: { momentum?: number; weightDecay?: number;
  nesterov?: boolean }): { momentum: number; weightDecay: number; nesterov: boolean } {
  const momentum = checkFinite(op, 'momentum', opts.momentum ?? 0, (m) => m >= 0, 'must be >= 0');
  const weightDecay = checkFinite(op, 'weightDecay', opts.weightDecay ?? 0, (w) => w >= 0,
    'must be >= 0');
  const nesterov = opts.nesterov ?? false;
  if (typeof nesterov !== 'boolean') {
    fail(op, `nesterov must be a boolean, got ${String(nesterov)}`);
  }
  if (nesterov && momentum === 0) fail(op, 'Nesterov momentum needs momentum > 0');
  return { momentum, weightDecay, nesterov };
}

/** SGD: d = g + wd p; buf = momentum buf + d; p -= lr (buf, or d + momentum buf). */
export class SGD extends Optimizer {
  protected readonly slotKinds = ['momentum_buffer'] as const;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;

  constructor(opts: SgdOptions) {
    super('SGD', opts);
    ({ momentum: this.momentum, weightDecay: this.weightDecay, nesterov: this.nesterov } =
      checkSgdOptions('SGD', opts));
  }

  protected update(i: number, p: Tensor, g: Tensor, lr: number): void {
    const buf = this.momentum > 0 ? this.slot(i, p, 'momentum_buffer') : null;
    const u: SgdUpdate = { lr, momentum: this.momentum, weightDecay: this.weightDecay,
      nesterov: this.nesterov };
    p.engine.record({
      op: 'sgdUpdate', inputs: [g], outputs: [], attrs: { ...u },
      mutates: buf ? [p, buf] : [p], differentiable: false,
      encode: (ctx) => dispatchSgd(ctx, p.size, { p: ctx.mutated(0), g: ctx.input(0),
        buf: buf ? ctx.mutated(1) : null }, u),
    });
  }
}
