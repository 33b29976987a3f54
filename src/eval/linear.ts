// The linear probe: a linear classifier trained on the GPU on standardized frozen features
// (softmax cross-entropy, SGD with momentum, cosine rate), scored by top-1 accuracy.

import type { Engine } from '../graph/engine.js';
import { grad } from '../graph/autodiff.js';
import type { Tensor } from '../graph/tensor.js';
import { Linear } from '../nn/layers.js';
import { initRng } from '../nn/module.js';
import { add, scale } from '../ops/elementwise.js';
import { concatRows, sliceRows } from '../ops/shape.js';
import { softCrossEntropy } from '../ops/softmax.js';
import { topk } from '../ops/topk.js';
import { checkKeys, optionKeys, showValue } from '../ops/util.js';
import { SGD } from '../optim/sgd.js';
import { blockRows, checkFeatures, checkLabels, uploadBlocks, type Features,
  type RowBlock } from './features.js';

export interface LinearProbeOptions {
  /** Default 20. */
  epochs?: number;
  /** Mini-batch size; default 256. */
  batch?: number;
  /** Base learning rate, decayed by a cosine to 0 over all steps; default 0.1. */
  lr?: number;
  /** SGD momentum; default 0.9. */
  momentum?: number;
  /** L2 penalty on the weights and bias; default 0. */
  weightDecay?: number;
  /** Seeds the initial weights and the shuffling; default 0. */
  seed?: number;
  /** Number of classes; default 10. */
  classes?: number;
  /** Called after each epoch with its mean training loss (one readback per epoch). */
  onEpoch?: (epoch: number, loss: number) => void;
}

export interface LinearProbeResult {
  trainAcc: number;
  testAcc: number;
  /** Mean training loss of each epoch. */
  losses: number[];
}

function fail(message: string): never {
  throw new RangeError(`linearProbe: ${message}`);
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) fail(`${name} must be a positive integer, got ${v}`);
  return v;
}

/**
 * Standardizes both matrices with the train set's per-dimension mean and standard deviation
 * (float64, two passes: for finite float32 features neither sum can overflow). A variance
 * floor of 1e-5, as batch norm's epsilon, keeps dimensions that are constant on the train
 * set (image borders) from blowing up test values. Standardized train values stay within
 * sqrt(rows); a test value far outside the train set's spread can standardize past
 * float32's range, and is refused (naming the row, column and statistics) rather than
 * passed on as an infinity that would make the probe's predictions meaningless. `what`
 * names the caller in errors.
 */
export function standardize(train: Features, test: Features,
  what = 'standardize'): [Features, Features] {
  checkFeatures(what, 'train', train);
  checkFeatures(what, 'test', test);
  if (train.dim !== test.dim) {
    throw new RangeError(`${what}: train features are ${train.dim}-d but test features are ` +
      `${test.dim}-d`);
  }
  const { rows, dim } = train;
  const mean = new Float64Array(dim);
  const sq = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++) mean[j] += train.data[r * dim + j];
  }
  for (let j = 0; j < dim; j++) mean[j] /= rows;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++) sq[j] += (train.data[r * dim + j] - mean[j]) ** 2;
  }
  const inv = sq.map((s) => 1 / Math.sqrt(s / rows + 1e-5));
  const apply = (f: Features, set: string): Features => {
    const data = new Float32Array(f.rows * dim);
    for (let i = 0; i < data.length; i++) {
      const j = i % dim;
      data[i] = (f.data[i] - mean[j]) * inv[j];
      if (!Number.isFinite(data[i])) {
        const short = (v: number) => String(Number(v.toPrecision(4)));
        throw new RangeError(`${what}: ${set} row ${Math.floor(i / dim)}, column ${j} is ` +
          `${short(f.data[i])}, which standardizes to ${short((f.data[i] - mean[j]) * inv[j])} ` +
          `with the train set's mean ${short(mean[j])} and standard deviation ` +
          `${short(1 / inv[j])} in that column: ` +
          'past float32\'s range of +-3.4e38 (features far outside the train set\'s spread)');
      }
    }
    return { data, rows: f.rows, dim };
  };
  return [apply(train, 'train'), apply(test, 'test')];
}

/** Top-1 predictions of `model` over row blocks: one submission, one readback. */
async function predict(engine: Engine, model: Linear, blocks: RowBlock[]): Promise<Float32Array> {
  const idx = engine.noGrad(() => blocks.map((b) => topk(model.forward(b.tensor), 1).indices));
  const [v] = await engine.run([], [idx.length === 1 ? idx[0] : concatRows(idx)]);
  return v;
}

function accuracy(pred: Float32Array, y: ArrayLike<number>, order?: Uint32Array): number {
  let right = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === y[order ? order[i] : i]) right++;
  return right / pred.length;
}

/**
 * Trains a linear classifier on the train features and returns its train and test top-1
 * accuracy. Each epoch is one submission: the shuffled, standardized train set and its
 * one-hot targets are written to the GPU once, every mini-batch step (forward, backward
 * and the in-place SGD update) is recorded, and only the epoch's mean loss is read back.
 */
export async function linearProbe(engine: Engine, trainX: Features, trainY: ArrayLike<number>,
  testX: Features, testY: ArrayLike<number>,
  opts: LinearProbeOptions = {}): Promise<LinearProbeResult> {
  checkFeatures('linearProbe', 'trainX', trainX);
  checkFeatures('linearProbe', 'testX', testX);
  if (trainX.dim !== testX.dim) {
    fail(`train features are ${trainX.dim}-d but test features are ${testX.dim}-d`);
  }
  checkKeys('linearProbe', 'options', opts, optionKeys<LinearProbeOptions>({ epochs: true,
    batch: true, lr: true, momentum: true, weightDecay: true, seed: true, classes: true,
    onEpoch: true }));
  const classes = positiveInt('classes', opts.classes ?? 10);
  checkLabels('linearProbe', 'trainY', trainY, trainX.rows, classes);
  checkLabels('linearProbe', 'testY', testY, testX.rows, classes);
  const epochs = positiveInt('epochs', opts.epochs ?? 20);
  const batch = positiveInt('batch', opts.batch ?? 256);
  const lr = opts.lr ?? 0.1;
  if (!Number.isFinite(lr) || lr <= 0) fail(`lr must be a number > 0, got ${lr}`);
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed)) {
    fail(`seed must be an integer, got ${showValue(seed)}`);
  }
  const [train, test] = standardize(trainX, testX, 'linearProbe');
  const { rows: n, dim } = train;

  const rng = initRng(seed);
  const model = new Linear(engine, dim, classes, rng, { name: 'probe' });
  const params = model.parameters();
  const stepsPerEpoch = Math.ceil(n / batch);
  const total = epochs * stepsPerEpoch;
  const opt = new SGD({
    lr: (s) => 0.5 * lr * (1 + Math.cos(Math.PI * s / total)),
    momentum: opts.momentum ?? 0.9, weightDecay: opts.weightDecay ?? 0,
  });
  // Blocks hold whole batches, so no mini-batch straddles two bindings.
  const perBlock = blockRows(engine, Math.max(dim, classes), Infinity, batch);
  const xBlocks = uploadBlocks(engine, train, perBlock, 'probe train');
  const yBlocks = uploadBlocks(engine, { data: new Float32Array(n * classes), rows: n,
    dim: classes }, perBlock, 'probe targets');
  const order = new Uint32Array(n).map((_, i) => i);
  const xs = new Float32Array(n * dim);
  const ys = new Float32Array(n * classes);
  const losses: number[] = [];
  let testBlocks: RowBlock[] = [];
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      // Fisher-Yates with the seeded generator; the previous epoch's run has been awaited,
      // so rewriting the leaves is safe.
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng.uniform() * (i + 1));
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
      ys.fill(0);
      for (let i = 0; i < n; i++) {
        xs.set(train.data.subarray(order[i] * dim, (order[i] + 1) * dim), i * dim);
        ys[i * classes + trainY[order[i]]] = 1;
      }
      xBlocks.forEach((b, k) => {
        b.tensor.write(xs.subarray(b.start * dim, (b.start + b.rows) * dim));
        yBlocks[k].tensor.write(ys.subarray(b.start * classes, (b.start + b.rows) * classes));
      });
      let epochLoss: Tensor | null = null;
      xBlocks.forEach((b, k) => {
        for (let s = 0; s < b.rows; s += batch) {
          const e = Math.min(s + batch, b.rows);
          const whole = s === 0 && e === b.rows;
          const xb = whole ? b.tensor : sliceRows(b.tensor, s, e);
          const yb = whole ? yBlocks[k].tensor : sliceRows(yBlocks[k].tensor, s, e);
          const loss = softCrossEntropy(model.forward(xb), yb, 1);
          opt.step(params, grad(loss, params));
          const part = engine.noGrad(() => scale(loss, (e - s) / n));
          epochLoss = epochLoss ? engine.noGrad(() => add(epochLoss!, part)) : part;
        }
      });
      const [l] = await engine.run([], [epochLoss!]);
      if (!Number.isFinite(l[0])) {
        fail(`the training loss of epoch ${epoch + 1} is ${l[0]}; lower lr (${lr})`);
      }
      losses.push(l[0]);
      opts.onEpoch?.(epoch + 1, l[0]);
    }
    // The train blocks hold the last epoch's shuffled rows: labels follow `order`.
    const trainAcc = accuracy(await predict(engine, model, xBlocks), trainY, order);
    testBlocks = uploadBlocks(engine, test, blockRows(engine, dim), 'probe test');
    const testAcc = accuracy(await predict(engine, model, testBlocks), testY);
    return { trainAcc, testAcc, losses };
  } finally {
    for (const b of [...xBlocks, ...yBlocks, ...testBlocks]) b.tensor.dispose();
    for (const t of Object.values(opt.state())) t.dispose();
    for (const p of params) p.dispose();
  }
}
