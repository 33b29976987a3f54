// SwAV's Sinkhorn-Knopp codes (shaders/sinkhorn.wgsl): no gradient, log domain, a few
// dispatches per call.

import { checkChoice, checkFinite, checkInt, checkOptions, checkRank, groups, optionKeys,
  type OptionsForm } from './util.js';
import type { Tensor } from '../graph/tensor.js';

/** Threads per workgroup of the column and row passes. */
const WG = 64;
/** Threads of the one workgroup that runs a whole small problem. */
const SMALL_WG = 256;
/**
 * Up to this many scores the whole loop runs in one workgroup (one dispatch); past it the
 * two passes per iteration win, since one workgroup keeps one core busy (lavapipe runs a
 * workgroup on one CPU core; a GPU on one of its many). Measured on lavapipe, 3 iterations,
 * per call: 256 x 30 0.36 ms in one workgroup vs 0.41 ms in passes; 128 x 128 0.76 vs
 * 0.62; 256 x 256 3.1 vs 1.5.
 */
export const SINKHORN_SMALL_MAX = 8192;

export interface SinkhornOptions {
  /** Entropic regularisation: codes are exp(scores / epsilon) before normalising. */
  epsilon?: number;
  /** Column-then-row normalisation rounds; SwAV uses 3. */
  iterations?: number;
  /** Force one schedule (tests); default chooses by size. */
  schedule?: 'auto' | 'small' | 'passes';
}

/** The reference's sinkhorn(scores, eps, iters) passes two of them one by one. */
const OPTIONS: OptionsForm = { call: 'sinkhorn(scores, {})',
  keys: optionKeys<SinkhornOptions>({ epsilon: true, iterations: true, schedule: true }),
  positional: ['epsilon', 'iterations'] };

/**
 * Codes Q [B, K] from prototype scores [B, K], as SwAV's distributed_sinkhorn computes them:
 * Q = exp(scores / eps), normalised to mass 1, then `iterations` rounds of columns to 1/K and
 * rows to 1/B, times B. Each row of Q sums to 1; columns approach B / K. Carries no gradient.
 */
export function sinkhorn(scores: Tensor, opts: SinkhornOptions = {}): Tensor {
  const op = 'sinkhorn';
  checkRank(op, 'scores', scores, [2]);
  checkOptions(op, arguments, 1, OPTIONS);
  const eps = checkFinite(op, 'epsilon', opts.epsilon ?? 0.05, (e) => e > 0, 'must be > 0');
  const iterations = checkInt(op, 'iterations', opts.iterations ?? 3, 1);
  const schedule = checkChoice(op, 'schedule', opts.schedule ?? 'auto',
    ['auto', 'small', 'passes']);
  const [B, K] = scores.shape;
  const small = schedule === 'small' || (schedule === 'auto' && B * K <= SINKHORN_SMALL_MAX);
  const uniforms = {
    rows: B, cols: K, inv_eps: 1 / eps, log_rows: Math.log(B), log_cols: Math.log(K),
    first: 1, iterations,
  };
  const [q] = scores.engine.record({
    op, inputs: [scores], outputs: [[B, K]], attrs: { epsilon: eps, iterations },
    differentiable: false,
    encode: (ctx) => {
      const u = ctx.scratch(B * 4);
      const v = ctx.scratch(K * 4);
      if (small) {
        ctx.dispatch({
          shader: 'sinkhorn', entry: 'small', overrides: { WG: SMALL_WG },
          bindings: { s: ctx.input(0), u, v, q: ctx.output(0) },
          uniforms, workgroups: 1,
        });
        return;
      }
      for (let it = 0; it < iterations; it++) {
        ctx.dispatch({
          shader: 'sinkhorn', entry: 'col_pass', overrides: { WG },
          bindings: { s: ctx.input(0), u, v },
          uniforms: { ...uniforms, first: it === 0 ? 1 : 0 },
          workgroups: groups(K, WG),
        });
        ctx.dispatch({
          shader: 'sinkhorn', entry: 'row_pass',
          overrides: { WG, WRITE_Q: it === iterations - 1 ? 1 : 0 },
          bindings: { s: ctx.input(0), u, v, q: ctx.output(0) },
          uniforms, workgroups: groups(B, WG),
        });
      }
    },
  });
  return q;
}
