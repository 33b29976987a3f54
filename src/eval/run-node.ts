// `swavgpu eval`: a checkpoint's frozen backbone features, the same backbone at random
// initialisation and raw pixels, each scored by a linear probe and by weighted kNN.

import type { Engine } from '../graph/engine.js';
import { loadFashionMnist } from '../data/fashion-node.js';
import { describeSkipped, loadRun } from '../swav/checkpoint-node.js';
import { CheckpointError, writeFileAtomic } from '../io/checkpoint-node.js';
import { FileSystemError } from '../io/file-error.js';
import { SwavModel } from '../swav/model.js';
import { validateConfig } from '../swav/config.js';
import { extractFeatures, pixelFeatures, type Features } from './features.js';
import { linearProbe } from './linear.js';
import { knnClassify } from './knn.js';

export interface EvalOptions {
  checkpoint: string;
  dataDir: string;
  /** Training images used as the kNN bank and the probe's training set (0: all). */
  bank: number;
  /** Test images (0: all). */
  test: number;
  probeEpochs: number;
  k: number;
  json?: string;
  log?: (line: string) => void;
}

type Scores = { swav: number; random: number; pixels: number };

export interface EvalResult {
  linear: Scores;
  knn: Scores;
  checkpoint: string;
  step: number;
  bank: number;
  test: number;
  k: number;
  probeEpochs: number;
  featureDims: Scores;
  seconds: number;
}

function checkCount(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0) {
    throw new RangeError(`--${name}: must be an integer >= 0 (0 for all), got ${v}`);
  }
  return v;
}

export async function evaluateCheckpoint(engine: Engine, o: EvalOptions): Promise<EvalResult> {
  const log = o.log ?? (() => undefined);
  const bankN = checkCount('bank', o.bank);
  const testN = checkCount('test', o.test);
  const t0 = performance.now();
  const run = await loadRun(o.checkpoint,
    (used, skipped) => log(`${describeSkipped(skipped)}; using ${used}`));
  const config = validateConfig(run.config);
  const trained = new SwavModel(engine, {
    backbone: { width: config.width, blocks: config.blocks }, hidden: config.hidden,
    featDim: config.featDim, prototypes: config.prototypes, seed: config.seed,
  });
  const state = trained.stateDict();
  for (const [name, t] of state) {
    const v = run.tensors[name];
    if (!v || v.length !== t.size) {
      throw new CheckpointError(run.path, `tensor ${name} is ${v ? `${v.length} values` :
        'missing'}, the model of its own config needs ${t.describe()}`);
    }
    t.write(v);
  }
  // The checkpoint fits its model: now the data, whose two splits must agree.
  const train = await loadFashionMnist(o.dataDir, 'train', bankN ? { limit: bankN } : {});
  const test = await loadFashionMnist(o.dataDir, 'test', testN ? { limit: testN } : {});
  if (train.height !== test.height || train.width !== test.width) {
    throw new RangeError(`${o.dataDir}: the training images (train-images-idx3-ubyte) are ` +
      `${train.height}x${train.width} but the test images (t10k-images-idx3-ubyte) are ` +
      `${test.height}x${test.width}; both splits must have one size`);
  }
  if (o.k > train.count) {
    // Before minutes of feature extraction and probing: kNN would refuse it at the end.
    throw new RangeError(`--k ${o.k}: more neighbours than the ${train.count} training images ` +
      `of the bank (--bank ${bankN || 'all'} of ${o.dataDir})`);
  }

  // The same architecture and seed, untrained: where training started from.
  const random = new SwavModel(engine, {
    backbone: { width: config.width, blocks: config.blocks }, hidden: config.hidden,
    featDim: config.featDim, prototypes: config.prototypes, seed: config.seed,
  });
  const norm = { mean: config.mean, std: config.std };
  const sets: Record<keyof Scores, { train: Features; test: Features }> = {
    swav: {
      train: await extractFeatures(engine, trained.backbone, train, norm),
      test: await extractFeatures(engine, trained.backbone, test, norm),
    },
    random: {
      train: await extractFeatures(engine, random.backbone, train, norm),
      test: await extractFeatures(engine, random.backbone, test, norm),
    },
    pixels: { train: pixelFeatures(train), test: pixelFeatures(test) },
  };
  log(`features of ${train.count} training and ${test.count} test images in ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const linear = {} as Scores;
  const knn = {} as Scores;
  const dims = {} as Scores;
  for (const key of ['swav', 'random', 'pixels'] as const) {
    const s = sets[key];
    dims[key] = s.train.dim;
    const t1 = performance.now();
    const probe = await linearProbe(engine, s.train, train.labels, s.test, test.labels,
      { epochs: o.probeEpochs, seed: config.seed });
    linear[key] = probe.testAcc;
    knn[key] = await knnClassify(engine, s.train, train.labels, s.test, test.labels, { k: o.k });
    log(`${key}: linear ${(linear[key] * 100).toFixed(2)}%, kNN ${(knn[key] * 100).toFixed(2)}% ` +
      `(${s.train.dim}-d, ${((performance.now() - t1) / 1000).toFixed(1)} s)`);
  }
  const result: EvalResult = {
    linear, knn, checkpoint: run.path, step: run.position.step, bank: train.count,
    test: test.count, k: o.k, probeEpochs: o.probeEpochs, featureDims: dims,
    seconds: (performance.now() - t0) / 1000,
  };
  if (o.json) {
    try {
      await writeFileAtomic(o.json, new TextEncoder().encode(
        `${JSON.stringify(result, null, 2)}\n`), 'the evaluation results');
    } catch (e) {
      // Minutes of evaluation are not lost to a bad --json path: the scores go in the error.
      const err = e instanceof FileSystemError ? e : new FileSystemError(o.json,
        'write the evaluation results', e);
      err.message += `; the results were linear ${JSON.stringify(linear)}, kNN ` +
        `${JSON.stringify(knn)}`;
      throw err;
    }
  }
  return result;
}

export function printEvalTable(r: EvalResult): string {
  const pct = (v: number) => `${(v * 100).toFixed(2)}%`;
  const names = [
    `SwAV backbone (${r.featureDims.swav}-d)`,
    'same backbone, random init',
    `raw pixels (${r.featureDims.pixels}-d)`,
  ];
  const keys = ['swav', 'random', 'pixels'] as const;
  const w = Math.max(...names.map((n) => n.length));
  const row = (a: string, b: string, c: string) =>
    `| ${a.padEnd(w)} | ${b.padStart(7)} | ${c.padStart(7)} |`;
  const rows = [
    `Fashion-MNIST test accuracy: ${r.test} test images, ${r.bank} training images`,
    `(checkpoint ${r.checkpoint}, step ${r.step}; kNN k=${r.k}, linear probe ` +
      `${r.probeEpochs} epochs)`,
    '',
    row('features', 'linear', 'kNN'),
    `| ${'-'.repeat(w)} | ${'-'.repeat(7)} | ${'-'.repeat(7)} |`,
    ...keys.map((k, i) => row(names[i], pct(r.linear[k]), pct(r.knn[k]))),
    '',
    `SwAV minus random init: linear ${((r.linear.swav - r.linear.random) * 100).toFixed(2)} ` +
      `points, kNN ${((r.knn.swav - r.knn.random) * 100).toFixed(2)} points`,
  ];
  return `${rows.join('\n')}\n`;
}
