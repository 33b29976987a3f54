// LARS as SwAV trains with it: apex's LARC wrapper (clip = false) around SGD with
// momentum, the trust ratio computed on the GPU from ||p|| and ||g|| (shaders/optim.wgsl).

import type { Tensor } from '../graph/tensor.js';
import { checkFinite, fail } from '../ops/util.js';
import { Optimizer, type OptimizerOptions } from './optimizer.js';
import { checkSgdOptions, dispatchSgd, OPTIM_WG, type SgdUpdate } from './sgd.js';

/** Up to this many elements, ||p|| and ||g|| are reduced by one workgroup straight away. */
const DIRECT_MAX = OPTIM_WG * 64;
/** Workgroups of the first pass for larger tensors; each thread then sums a strided chunk. */
const MAX_PARTIAL_GROUPS = 64;

export interface LarsOptions extends OptimizerOptions {
  momentum?: number;
  /** Weight decay, folded into the adapted gradient (not SGD's); default 0. */
  weightDecay?: number;
  /** Trust coefficient; SwAV's 0.001 by default. */
  trust?: number;
  /** Added to the trust ratio's denominator; apex's 1e-8 by default. */
  eps?: number;
  /**
   * Parameters that skip the adaptation and the weight decay (plain SGD with momentum);
   * default none, as in SwAV. `isBiasOrNorm` excludes biases and norm scales and shifts.
   */
  exclude?: (param: Tensor) => boolean;
}

/** Biases and batch-norm affine parameters: the rank-1 tensors of a network. */
export function isBiasOrNorm(param: Tensor): boolean {
  return param.rank <= 1;
}

/**
 * With pn = ||p||, gn = ||g|| (both nonzero): a = trust pn / (gn + wd pn + eps) and the
 * gradient becomes (g + wd p) a; if either norm is 0 it stays g, with no weight decay.
 * Then SGD with momentum (dampening 0, no Nesterov, no weight decay of its own):
 * buf = momentum buf + g', p -= lr buf.
 */
export class LARS extends Optimizer {
  protected readonly slotKinds = ['momentum_buffer'] as const;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly trust: number;
  readonly eps: number;
  readonly exclude: (param: Tensor) => boolean;

  constructor(opts: LarsOptions) {
    super('LARS', opts);
    ({ momentum: this.momentum, weightDecay: this.weightDecay } = checkSgdOptions('LARS',
      { momentum: opts.momentum, weightDecay: opts.weightDecay }));
    this.trust = checkFinite('LARS', 'trust', opts.trust ?? 0.001, (t) => t > 0, 'must be > 0');
    this.eps = checkFinite('LARS', 'eps', opts.eps ?? 1e-8, (e) => e >= 0, 'must be >= 0');
    const exclude = opts.exclude ?? (() => false);
    if (typeof exclude !== 'function') {
      fail('LARS', `exclude must be a function (param) => boolean, got ${typeof exclude}`);
    }
    this.exclude = exclude;
  }

  protected update(i: number, p: Tensor, g: Tensor, lr: number): void {
    const buf = this.momentum > 0 ? this.slot(i, p, 'momentum_buffer') : null;
    const u: SgdUpdate = { lr, momentum: this.momentum, weightDecay: 0, nesterov: false };
    const n = p.size;
    const excluded = this.exclude(p);
    const norms = { n, chunk: 0, n_partial: 0, trust: this.trust,
      weight_decay: this.weightDecay, eps: this.eps };
    p.engine.record({
      op: excluded ? 'larsExcludedUpdate' : 'larsUpdate', inputs: [g], outputs: [],
      attrs: { ...u, weightDecay: this.weightDecay, trust: this.trust, excluded },
      mutates: buf ? [p, buf] : [p], differentiable: false,
      encode: (ctx) => {
        const ranges = { p: ctx.mutated(0), g: ctx.input(0), buf: buf ? ctx.mutated(1) : null };
        if (excluded) {
          dispatchSgd(ctx, n, ranges, u);
          return;
        }
        const coef = ctx.scratch(8);
        if (n <= DIRECT_MAX) {
          ctx.dispatch({
            shader: 'optim', entry: 'lars_coef_direct', overrides: { WG: OPTIM_WG },
            bindings: { np_p: ranges.p, np_g: ranges.g, coef_out: coef },
            uniforms: norms, workgroups: 1,
          });
        } else {
          const nGroups = Math.min(MAX_PARTIAL_GROUPS, Math.ceil(n / DIRECT_MAX));
          const chunk = Math.ceil(n / (nGroups * OPTIM_WG));
          const nPartial = nGroups * OPTIM_WG;
          const partials = ctx.scratch(nPartial * 8);
          ctx.dispatch({
            shader: 'optim', entry: 'norms_partial', overrides: { WG: OPTIM_WG },
            bindings: { np_p: ranges.p, np_g: ranges.g, partials },
            uniforms: { ...norms, chunk }, workgroups: nGroups,
          });
          ctx.dispatch({
            shader: 'optim', entry: 'lars_coef_partial', overrides: { WG: OPTIM_WG },
            bindings: { partials, coef_out: coef },
            uniforms: { ...norms, n_partial: nPartial }, workgroups: 1,
          });
        }
        dispatchSgd(ctx, n, { ...ranges, coef }, u);
      },
    });
  }
}
