// Adam as PyTorch's (L2 weight decay added to the gradient, bias-corrected moments), one
// kernel per parameter (shaders/optim.wgsl, entry adam).

import type { Tensor } from '../graph/tensor.js';
import { checkFinite, groups } from '../ops/util.js';
import { Optimizer, type OptimizerOptions } from './optimizer.js';
import { OPTIM_WG } from './sgd.js';

export interface AdamOptions extends OptimizerOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** L2 penalty added to the gradient (not AdamW's decoupled decay); default 0. */
  weightDecay?: number;
}

/**
 * With t = steps + 1 and d = g + wd p: m = b1 m + (1 - b1) d, v = b2 v + (1 - b2) d^2,
 * p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps). m and v start at zero; t
 * counts step() calls (a parameter skipped for a null gradient still advances it).
 */
export class Adam extends Optimizer {
  protected readonly slotKinds = ['exp_avg', 'exp_avg_sq'] as const;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;

  constructor(opts: AdamOptions) {
    super('Adam', opts);
    const inUnit = (b: number) => b >= 0 && b < 1;
    this.beta1 = checkFinite('Adam', 'beta1', opts.beta1 ?? 0.9, inUnit, 'must be in [0, 1)');
    this.beta2 = checkFinite('Adam', 'beta2', opts.beta2 ?? 0.999, inUnit, 'must be in [0, 1)');
    this.eps = checkFinite('Adam', 'eps', opts.eps ?? 1e-8, (e) => e >= 0, 'must be >= 0');
    this.weightDecay = checkFinite('Adam', 'weightDecay', opts.weightDecay ?? 0, (w) => w >= 0,
      'must be >= 0');
  }

  protected update(i: number, p: Tensor, g: Tensor, lr: number): void {
    const m = this.slot(i, p, 'exp_avg');
    const v = this.slot(i, p, 'exp_avg_sq');
    const t = this.steps + 1;
    const n = p.size;
    // Bias corrections and 1 - beta in float64, rounded once: 1 - 0.999 taken in float32
    // would be off by 5e-5 relative.
    const uniforms = {
      n, lr_t: lr / (1 - this.beta1 ** t), inv_sqrt_bc2: 1 / Math.sqrt(1 - this.beta2 ** t),
      beta1: this.beta1, one_minus_beta1: 1 - this.beta1, beta2: this.beta2,
      one_minus_beta2: 1 - this.beta2, eps: this.eps, weight_decay: this.weightDecay,
    };
    p.engine.record({
      op: 'adamUpdate', inputs: [g], outputs: [], attrs: { lr, step: t },
      mutates: [p, m, v], differentiable: false,
      encode: (ctx) => ctx.dispatch({
        shader: 'optim', entry: 'adam', overrides: { WG: OPTIM_WG },
        bindings: { a_param: ctx.mutated(0), a_grad: ctx.input(0), a_m: ctx.mutated(1),
          a_v: ctx.mutated(2) },
        uniforms, workgroups: groups(n, OPTIM_WG),
      }),
    });
  }
}
