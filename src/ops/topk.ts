// Top-k along the last axis (shaders/topk.wgsl): values and indices, no gradient.

import { NotSupportedError } from '../gpu/errors.js';
import type { Tensor } from '../graph/tensor.js';
import { checkArity, checkInt, checkTensor, fail, groups } from './util.js';

const WG = 64;
/** Largest k: the kernel's private list (KMAX in topk.wgsl). */
export const TOPK_MAX_K = 64;
/** Indices travel as f32, which holds every integer up to 2^24 exactly. */
export const TOPK_MAX_COLS = 2 ** 24;
/**
 * Columns one invocation scans in a segmented pass: at least 64 k for every k allowed, so
 * each pass shrinks a row 64-fold; rows up to twice this long are done in one pass. Long
 * segments make the heap's insertions rare (about k ln(SEG / k) of SEG entries); on
 * lavapipe 4096 took two thirds of the CPU time of 1024 for [1000, 10000] and k = 20.
 */
const SEG = 4096;

export interface TopK {
  /** [..., k]: the k largest values of each row, descending. */
  values: Tensor;
  /** [..., k]: their positions in the row, as f32 integers; ties go to the lower index. */
  indices: Tensor;
}

interface Pass {
  cols: number;
  segLen: number;
  nSeg: number;
  gather: boolean;
}

/** The passes for rows of `cols`: segment while a row is long, then one merging pass. */
function plan(cols: number, k: number): Pass[] {
  const passes: Pass[] = [];
  let len = cols;
  let gather = false;
  while (len > 2 * SEG) {
    const nSeg = Math.ceil(len / SEG);
    passes.push({ cols: len, segLen: SEG, nSeg, gather });
    len = nSeg * k;
    gather = true;
  }
  passes.push({ cols: len, segLen: len, nSeg: 1, gather });
  return passes;
}

/**
 * The k largest entries of each row of x (the last axis), in descending order, with their
 * column indices; equal values go to the lower index and NaN ranks below every number.
 * x: [..., M] with 1 <= k <= min(M, 64) and M <= 2^24. Outputs [..., k]; carries no gradient.
 */
export function topk(x: Tensor, k: number): TopK {
  checkArity('topk', arguments, 2, 'topk(x, k)');
  checkTensor('topk', 'x', x);
  if (x.rank < 1) fail('topk', `x must have at least one axis, got ${x.describe()}`);
  const cols = x.shape[x.rank - 1];
  checkInt('topk', 'k', k, 1);
  if (k > TOPK_MAX_K) {
    throw new NotSupportedError(`topk: k = ${k} is past the largest supported k ` +
      `(${TOPK_MAX_K}, the kernel's private list) for x ${x.describe()}`);
  }
  if (k > cols) fail('topk', `k = ${k} is larger than the row length ${cols} of ${x.describe()}`);
  if (cols > TOPK_MAX_COLS) {
    throw new NotSupportedError(`topk: rows of ${cols} columns (x ${x.describe()}) are past ` +
      `2^24, where f32 indices stop being exact`);
  }
  const rows = x.size / cols;
  const outShape = [...x.shape.slice(0, -1), k];
  const passes = plan(cols, k);
  const [values, indices] = x.engine.record({
    // Differentiable in the graph's sense (its values are piecewise linear in x), with no
    // backward rule: a gradient through topk is a loud error, never a silently dropped term.
    op: 'topk', inputs: [x], outputs: [outShape, outShape], attrs: { k },
    encode: (ctx) => {
      let vals = ctx.input(0);
      let ids = vals;
      for (const [i, p] of passes.entries()) {
        const last = i === passes.length - 1;
        const bytes = rows * p.nSeg * k * 4;
        const outV = last ? ctx.output(0) : ctx.scratch(bytes);
        const outI = last ? ctx.output(1) : ctx.scratch(bytes);
        ctx.dispatch({
          shader: 'topk', overrides: { WG, GATHER: Number(p.gather) },
          bindings: { x: vals, idx_in: ids, values: outV, indices: outI },
          uniforms: { rows, cols: p.cols, k, seg_len: p.segLen, n_seg: p.nSeg },
          workgroups: groups(rows * p.nSeg, WG),
        });
        vals = outV;
        ids = outI;
      }
    },
  });
  return { values, indices };
}

