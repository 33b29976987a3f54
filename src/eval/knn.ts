// Weighted k-nearest-neighbour classification of frozen features: cosine similarities by
// GPU matmul in chunks of test rows, GPU top-k, then a vote weighted by exp(sim / T).

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { matmul } from '../ops/matmul.js';
import { concatRows, sliceRows } from '../ops/shape.js';
import { topk, TOPK_MAX_K } from '../ops/topk.js';
import { checkKeys, optionKeys } from '../ops/util.js';
import { blockRows, checkFeatures, checkLabels, uploadBlocks, type Features,
  type RowBlock } from './features.js';

export interface KnnOptions {
  /** Neighbours that vote; default 20, at most 64. */
  k?: number;
  /** Votes are weighted by exp(similarity / temperature); default 0.07. */
  temperature?: number;
  /** Number of classes; default 10. */
  classes?: number;
  /**
   * Test rows per similarity matrix [chunk, bank block]; default: as many as keep that
   * matrix under 64 MiB and under the binding limit.
   */
  chunk?: number;
  /** Test rows recorded into one submission; default 4096. */
  rowsPerRun?: number;
  /** Bank rows per GPU leaf; default as many as one storage binding holds. */
  bankBlock?: number;
}

const SIMS_BYTES = 64 * 2 ** 20;

function fail(message: string): never {
  throw new RangeError(`knn: ${message}`);
}

/**
 * Rows scaled to unit L2 norm (computed in float64, so no finite float32 row underflows
 * or overflows); an all-zero row has no direction and stays zero.
 */
export function l2NormalizeRows(f: Features): Features {
  const { rows, dim } = f;
  const data = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += f.data[r * dim + j] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) data[r * dim + j] = f.data[r * dim + j] * inv;
  }
  return { data, rows, dim };
}

/**
 * The class each test row gets from its k most similar bank rows (cosine similarity),
 * each voting exp(sim / T) for its label; ties between classes go to the lower class, and
 * ties in similarity to the lower bank row.
 *
 * All-zero rows, which have no direction, have cosine similarity 0 with every row (as
 * L2-normalising with a zero guard, scikit-learn's `normalize` or PyTorch's
 * `F.normalize`, gives in the kNN evaluations of SwAV and its successors). So a zero bank
 * row is as near as a row at right angles: it ranks below every row of positive
 * similarity and above every row of negative similarity. A zero test row is equally near
 * to the whole bank: its neighbours are the first k bank rows, and its class their
 * weighted majority, a fixed guess that carries no information. Neither gives NaN.
 */
export async function knnPredict(engine: Engine, bankX: Features, bankY: ArrayLike<number>,
  testX: Features, opts: KnnOptions = {}): Promise<Int32Array> {
  checkFeatures('knn', 'bankX', bankX);
  checkFeatures('knn', 'testX', testX);
  checkKeys('knn', 'options', opts, optionKeys<KnnOptions>({ k: true, temperature: true,
    classes: true, chunk: true, rowsPerRun: true, bankBlock: true }));
  if (bankX.dim !== testX.dim) {
    fail(`bank features are ${bankX.dim}-d but test features are ${testX.dim}-d`);
  }
  const classes = opts.classes ?? 10;
  if (!Number.isInteger(classes) || classes < 1) {
    fail(`classes must be a positive integer, got ${classes}`);
  }
  checkLabels('knn', 'bankY', bankY, bankX.rows, classes);
  const k = opts.k ?? 20;
  if (!Number.isInteger(k) || k < 1 || k > TOPK_MAX_K) {
    fail(`k must be an integer in 1..${TOPK_MAX_K}, got ${k}`);
  }
  if (k > bankX.rows) fail(`k = ${k} is more than the ${bankX.rows} bank rows`);
  const T = opts.temperature ?? 0.07;
  if (!Number.isFinite(T) || T <= 0) fail(`temperature must be a number > 0, got ${T}`);
  const limit = engine.limits.maxStorageBufferBindingSize;
  const bankBlock = opts.bankBlock ?? Infinity;
  if (!(bankBlock >= 1) || (bankBlock !== Infinity && !Number.isInteger(bankBlock))) {
    fail(`bankBlock must be a positive integer, got ${bankBlock}`);
  }
  const bankMax = Math.min(bankX.rows, blockRows(engine, bankX.dim, bankBlock));
  const chunk = opts.chunk ?? Math.max(1, Math.floor(Math.min(limit, SIMS_BYTES) /
    (4 * bankMax)));
  if (!Number.isInteger(chunk) || chunk < 1) fail(`chunk must be a positive integer, got ${chunk}`);
  if (chunk * bankMax * 4 > limit) {
    fail(`chunk = ${chunk} test rows against ${bankMax} bank rows makes a similarity matrix ` +
      `of ${chunk * bankMax * 4} bytes, past the binding limit of ${limit}`);
  }
  const rowsPerRun = opts.rowsPerRun ?? 4096;
  if (!Number.isInteger(rowsPerRun) || rowsPerRun < 1) {
    fail(`rowsPerRun must be a positive integer, got ${rowsPerRun}`);
  }
  // Whole chunks per run, and a run's test rows within one binding.
  const perRun = Math.min(Math.max(chunk, rowsPerRun), blockRows(engine, testX.dim));
  const bankBlocks = uploadBlocks(engine, l2NormalizeRows(bankX), bankMax, 'knn bank');
  const test = l2NormalizeRows(testX);
  const pred = new Int32Array(testX.rows);
  try {
    for (let r0 = 0; r0 < test.rows; r0 += perRun) {
      const rows = Math.min(perRun, test.rows - r0);
      const block = uploadBlocks(engine, { data: test.data.subarray(r0 * test.dim,
        (r0 + rows) * test.dim), rows, dim: test.dim }, rows, 'knn test')[0];
      try {
        const found = await neighbours(engine, block, bankBlocks, chunk, k);
        vote(found, bankBlocks, bankY, k, T, classes, pred, r0, rows);
      } finally {
        block.tensor.dispose();
      }
    }
  } finally {
    for (const b of bankBlocks) b.tensor.dispose();
  }
  return pred;
}

/** Per bank block, each test row's top min(k, block rows) similarities and indices. */
async function neighbours(engine: Engine, test: RowBlock, bank: RowBlock[], chunk: number,
  k: number): Promise<{ sims: Float32Array; ids: Float32Array; kb: number }[]> {
  const parts = engine.noGrad(() => bank.map((b) => {
    const kb = Math.min(k, b.rows);
    const vals: Tensor[] = [];
    const ids: Tensor[] = [];
    for (let s = 0; s < test.rows; s += chunk) {
      const e = Math.min(s + chunk, test.rows);
      const q = s === 0 && e === test.rows ? test.tensor : sliceRows(test.tensor, s, e);
      const top = topk(matmul(q, b.tensor, { transB: true }), kb);
      vals.push(top.values);
      ids.push(top.indices);
    }
    return { vals: concatRows(vals), ids: concatRows(ids), kb };
  }));
  const read = await engine.run([], parts.flatMap((p) => [p.vals, p.ids]));
  return parts.map((p, i) => ({ sims: read[2 * i], ids: read[2 * i + 1], kb: p.kb }));
}

function vote(found: { sims: Float32Array; ids: Float32Array; kb: number }[],
  bank: RowBlock[], bankY: ArrayLike<number>, k: number, T: number, classes: number,
  pred: Int32Array, r0: number, rows: number): void {
  const score = new Float64Array(classes);
  const candS: number[] = [];
  const candI: number[] = [];
  const order: number[] = [];
  for (let r = 0; r < rows; r++) {
    candS.length = 0;
    candI.length = 0;
    found.forEach((f, b) => {
      for (let j = 0; j < f.kb; j++) {
        candS.push(f.sims[r * f.kb + j]);
        candI.push(bank[b].start + f.ids[r * f.kb + j]);
      }
    });
    // One block: already sorted. Several: merge by similarity, then bank index.
    order.length = 0;
    for (let j = 0; j < candS.length; j++) order.push(j);
    if (found.length > 1) {
      order.sort((a, b) => candS[b] - candS[a] || candI[a] - candI[b]);
    }
    score.fill(0);
    // Weights relative to the best neighbour: the vote is unchanged and exp never overflows.
    const top = candS[order[0]];
    for (let j = 0; j < k; j++) {
      const o = order[j];
      score[bankY[candI[o]]] += Math.exp((candS[o] - top) / T);
    }
    let best = 0;
    for (let c = 1; c < classes; c++) if (score[c] > score[best]) best = c;
    pred[r0 + r] = best;
  }
}

/** Top-1 accuracy of the weighted kNN vote (knnPredict) on labelled test features. */
export async function knnClassify(engine: Engine, bankX: Features, bankY: ArrayLike<number>,
  testX: Features, testY: ArrayLike<number>, opts: KnnOptions = {}): Promise<number> {
  checkFeatures('knn', 'testX', testX);
  checkLabels('knn', 'testY', testY, testX.rows, opts.classes ?? 10);
  const pred = await knnPredict(engine, bankX, bankY, testX, opts);
  let right = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === testY[i]) right++;
  return right / pred.length;
}
