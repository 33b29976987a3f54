// The swapped-prediction loss: the codes of each assignment crop, computed by Sinkhorn
// without gradient, are predicted from every other crop's softmax.

import type { Tensor } from '../graph/tensor.js';
import { add, fillLike, scale, stopGradient } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { concatRows, sliceRows } from '../ops/shape.js';
import { sinkhorn } from '../ops/sinkhorn.js';
import { softCrossEntropy } from '../ops/softmax.js';
import { fail } from '../ops/util.js';

export interface SwavLossOptions {
  /** Images per batch B; scores hold the crops crop-major, B rows each. */
  batch: number;
  /** Total crops per image V. */
  crops: number;
  /** Crops whose codes are computed (the official default: the two global crops). */
  assign: number[];
  temperature: number;
  epsilon: number;
  iterations: number;
  /** Queue scores per assignment crop, put before the batch's scores (null: none yet). */
  queueScores?: (Tensor | null)[];
}

export interface SwavLossResult {
  loss: Tensor;
  /** Codes Q [B, K] of each assignment crop. */
  codes: Tensor[];
}

/**
 * loss = 1/(|A| (V-1) B) sum_{i in A} sum_{v != i} sum_b -<q_i[b], log softmax(s_v[b]/T)>.
 * Cross-entropy is linear in its target, so the per-crop targets sum_{i in A, i != v} q_i
 * are built first and one fused cross-entropy covers every crop.
 */
export function swavLoss(scores: Tensor, o: SwavLossOptions): SwavLossResult {
  const { batch: B, crops: V } = o;
  if (scores.rank !== 2 || scores.shape[0] !== B * V) {
    fail('swavLoss', `scores must be [${B * V}, K] for ${V} crops of ${B} images, got ` +
      `${scores.describe()}`);
  }
  if (V < 2) fail('swavLoss', `needs at least 2 crops, got ${V}`);
  if (o.assign.length === 0 || o.assign.some((c) => !Number.isInteger(c) || c < 0 || c >= V)) {
    fail('swavLoss', `assignment crops [${o.assign}] must be crop indices below ${V}`);
  }
  const engine = scores.engine;
  const codes = engine.noGrad(() => o.assign.map((crop, i) => {
    let out = stopGradient(sliceRows(scores, crop * B, (crop + 1) * B));
    const queued = o.queueScores?.[i] ?? null;
    if (queued) out = concatRows([queued, out]);
    const q = sinkhorn(out, { epsilon: o.epsilon, iterations: o.iterations });
    return queued ? sliceRows(q, queued.shape[0], queued.shape[0] + B) : q;
  }));
  const targets = engine.noGrad(() => {
    const perCrop: Tensor[] = [];
    for (let v = 0; v < V; v++) {
      const parts = o.assign.map((c, i) => (c === v ? null : codes[i])).filter(
        (t): t is Tensor => t !== null);
      perCrop.push(parts.length === 0 ? fillLike(codes[0], 0) : parts.reduce((a, b) => add(a, b)));
    }
    return concatRows(perCrop);
  });
  const perRow = softCrossEntropy(scores, targets, o.temperature, { reduction: 'none' });
  const loss = scale(sum(perRow), 1 / (o.assign.length * (V - 1) * B));
  return { loss, codes };
}
