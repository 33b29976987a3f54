// One SwAV training step on a tiny SwavModel against a float64 reference of the same step:
// loss, codes and every gradient, the LARS update, the codes' marginals, the queue, frozen
// prototypes in SwavTrainer, and a short run on real Fashion-MNIST images.

import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { grad, type Engine, type Tensor } from '../../src/node.js';
import type { ImageDataset } from '../../src/data/dataset.js';
import { DEFAULT_FASHION_MNIST_DIR, loadFashionMnist } from '../../src/data/fashion-node.js';
import { LARS, isBiasOrNorm } from '../../src/optim/lars.js';
import { defaultConfig, type SwavConfig } from '../../src/swav/config.js';
import { swavLoss, type SwavLossOptions } from '../../src/swav/loss.js';
import { SwavModel } from '../../src/swav/model.js';
import { SwavQueue } from '../../src/swav/queue.js';
import { SwavTrainer } from '../../src/swav/trainer.js';
import * as R from '../../src/reference/index.js';
import { TOL } from '../../src/reference/compare.js';
import { expectClose, randomInput, upload, useEngine } from '../helpers/gpu.js';
import {
  CODE_TOL, LOSS_TOL, SCORE_TOL, expectGrad, maxAbs, refSwavStep, swavTargets,
  type RefSwavLossOptions, type RefSwavShape,
} from './helpers.js';

const engine = useEngine();

/** Images per batch, prototypes, feature size: the brief's tiny model. */
const B = 4;
const K = 5;
const D = 4;
const LOSS: SwavLossOptions & RefSwavLossOptions = {
  batch: B, crops: 4, assign: [0, 1], temperature: 0.1, epsilon: 0.05, iterations: 3,
};
/** Float32 unit roundoff. */
const U32 = 2 ** -24;

const isBnAffine = (name: string) => /(bn\d|downsample\.1|projection_head\.1)\.(weight|bias)$/
  .test(name);

/**
 * A tiny SwavModel with its batch-norm scales and shifts moved off 1 and 0 (so a swapped
 * gamma and beta, or a gradient that ignores gamma, would show).
 */
function tinyModel(e: Engine, blocks: number[], seed: number): SwavModel {
  const model = new SwavModel(e, {
    backbone: { width: 2, blocks }, hidden: 6, featDim: D, prototypes: K, seed,
  });
  const rng = R.mulberry32(seed + 1000);
  for (const [name, t] of model.namedParameters()) {
    if (!isBnAffine(name)) continue;
    const isScale = name.endsWith('.weight');
    t.write(Array.from({ length: t.size },
      () => (isScale ? 0.6 + 0.8 * rng() : 0.4 * rng() - 0.2)));
  }
  return model;
}

/** Crops 0, 1 (8x8) and 2, 3 (4x4) of B images, crop-major: the two resolution groups. */
function fixedCrops(seed: number): R.RefTensor[] {
  return [randomInput([2 * B, 1, 8, 8], seed), randomInput([2 * B, 1, 4, 4], seed + 1)];
}

/** The model's parameters as float64 reference tensors, by name (one read). */
async function readParams(e: Engine, model: SwavModel): Promise<Map<string, R.RefTensor>> {
  const named = model.namedParameters();
  const values = await e.run([], named.map(([, t]) => t));
  return new Map(named.map(([n, t], i) => [n, R.ref(t.shape, Float64Array.from(values[i]))]));
}

describe('one SwAV step vs the float64 reference', () => {
  // blocks [1] is the brief's model; [1, 1] adds a stride-2 stage whose shortcut is a 1x1
  // convolution and batch norm (the downsample path).
  for (const blocks of [[1], [1, 1]]) {
    it(`loss, codes, every gradient and one LARS update: width 2, blocks [${blocks}]`,
      async () => {
        const e = engine();
        const model = tinyModel(e, blocks, 7);
        const named = model.namedParameters();
        const params = named.map(([, t]) => t);
        // The step starts by rescaling the prototypes in place; the reference starts from
        // the float32 values that produced, read back.
        model.normalizePrototypes();
        const p0 = await readParams(e, model);
        const crops = fixedCrops(11);

        const { scores } = model.embed(crops.map((c) => upload(e, c)));
        const { loss, codes } = swavLoss(scores, LOSS);
        const grads = grad(loss, params) as Tensor[];
        // Parameters of rank 1 (biases, norm scales and shifts) take plain SGD, the others
        // LARS's adapted step. SwAV's trust 0.001 would move a weight by ~6e-4 of its norm,
        // too close to float32's rounding of the stored weight to judge the update by; 0.02
        // moves it ~1%, and a weight decay of 5% of ||g|| / ||p|| shows if misapplied.
        const lars = { lr: 0.6, momentum: 0.9, weightDecay: 0.05, trust: 0.02 };
        new LARS({ ...lars, exclude: isBiasOrNorm }).step(params, grads);
        // Reads come after every dispatch of the run: the parameters are read updated.
        const out = await e.run([], [loss, scores, ...codes, ...grads, ...params]);
        const [lossV, scoresV, q0, q1] = out;
        const gradV = out.slice(4, 4 + params.length);
        const updated = out.slice(4 + params.length);

        const ref = refSwavStep(p0, { width: 2, blocks }, crops, LOSS, { backward: true });
        // Float32 moves a pre-activation by up to ~1e-5; nearer a ReLU's kink it could take
        // the other side and a gradient would differ for that reason alone.
        expect(ref.kinkDistance, 'distance to a kink (choose other seeds)').toBeGreaterThan(1e-5);
        expectClose(scoresV, ref.scores, SCORE_TOL, 'scores z P^T');
        expectClose(q0, ref.codes[0], CODE_TOL, 'codes of crop 0');
        expectClose(q1, ref.codes[1], CODE_TOL, 'codes of crop 1');
        expectClose(lossV, [ref.loss], LOSS_TOL, 'loss');
        named.forEach(([name], i) => {
          expectGrad(gradV[i], ref.grads.get(name)!, `d loss / d ${name}`);
        });
        // A bias that feeds a batch norm has no effect on the loss: the mean removes it.
        expect(maxAbs(ref.grads.get('projection_head.0.bias')!.data)).toBeLessThan(1e-12);

        // LARS from the same float32 parameters and gradients the GPU used. The stored
        // parameter rounds to u |p|, so the updates' differences are compared with a floor
        // of 2 u max|p|; above it the trust ratio (two float32 norms of <= 72 terms) and
        // the few elementwise operations stay within the elementwise tier.
        named.forEach(([name, t], i) => {
          const before = p0.get(name)!.data;
          const p = Float64Array.from(before);
          R.larsStep(p, Float64Array.from(gradV[i]), null, { ...lars,
            exclude: isBiasOrNorm(t) });
          const delta = p.map((v, j) => v - before[j]);
          const moved = Float64Array.from(updated[i], (v, j) => v - before[j]);
          expect(maxAbs(delta), `${name} moves`).toBeGreaterThan(0);
          expectClose(moved, delta, { atol: 2 * U32 * maxAbs(p), rtol: TOL.f32Elementwise.rtol },
            `LARS update of ${name}`);
        });
      });
  }

  it('the reference step agrees with finite differences (codes held fixed)', async () => {
    // The codes carry no gradient: with them fixed, the loss is a plain function of the
    // parameters, which central differences along random directions judge. Every parameter
    // moves at once, so each direction covers all of the hand-chained backward.
    const e = engine();
    const model = tinyModel(e, [1, 1], 5);
    model.normalizePrototypes();
    const params = await readParams(e, model);
    const shape: RefSwavShape = { width: 2, blocks: [1, 1] };
    const crops = fixedCrops(11);
    const ref = refSwavStep(params, shape, crops, LOSS, { backward: true });
    // A step of h = 1e-6 along a direction moves a pre-activation by ~1e-6 .. 1e-5 here: a
    // ReLU input nearer 0 than 1e-4 could switch sides and change the slope measured.
    expect(ref.kinkDistance, 'distance to a kink (choose other seeds)').toBeGreaterThan(1e-4);
    const names = [...params.keys()];
    const f = (xs: R.RefTensor[]) => refSwavStep(new Map(names.map((n, i) => [n, xs[i]])),
      shape, crops, LOSS, { fixedTargets: ref.targets }).loss;
    // h = 1e-6 on an O(1) loss: truncation ~1e-12 and rounding ~1e-16 / h = 1e-10, against
    // a directional derivative of O(1): 1e-6 relative is tight. Measured: <= 2e-9.
    const r = R.checkGrad(f, names.map((n) => params.get(n)!),
      names.map((n) => ref.grads.get(n)!),
      { mode: 'directional', directions: 4, rtol: 1e-6, atol: 1e-8, name: 'SwAV step' });
    expect(r.ok, r.message).toBe(true);
  });
});

describe('codes and the queue', () => {
  it('codes: rows sum to 1; with enough Sinkhorn iterations columns sum to B / K', async () => {
    const e = engine();
    const model = tinyModel(e, [1], 7);
    model.normalizePrototypes();
    const crops = fixedCrops(11);
    const marginals = async (iterations: number) => {
      const { scores } = model.embed(crops.map((c) => upload(e, c)));
      const { codes } = swavLoss(scores, { ...LOSS, iterations });
      return (await e.run([], codes)).map((q) => R.sinkhornMarginals(R.ref([B, K], q)));
    };
    // A row sum adds K float32 codes after the last (row) normalisation: the reduction tier.
    const rowTol = TOL.f32Reduction(K);
    const ones = R.full([B], 1);
    for (const m of await marginals(LOSS.iterations)) {
      expectClose(m.rowSums.data, ones, rowTol, 'row sums after 3 iterations');
      // Three iterations leave the columns of this tiny batch visibly unequal (0.09 and
      // 0.22 off), so the check below is not met by accident.
      expect(maxAbs(m.colSums.data.map((v) => v - B / K))).toBeGreaterThan(0.05);
    }
    // Converged (measured: within 4e-7 of B / K from 100 iterations on); 1e-5 is the
    // column's four float32 codes and the tail of the convergence.
    for (const m of await marginals(100)) {
      expectClose(m.rowSums.data, ones, rowTol, 'row sums after 100 iterations');
      expectClose(m.colSums.data, R.full([K], B / K), { atol: 1e-5, rtol: 0 },
        'column sums after 100 iterations');
    }
  });

  it('a full queue changes the codes to Sinkhorn over the queue rows and the batch', async () => {
    const e = engine();
    const model = tinyModel(e, [1], 3);
    model.normalizePrototypes();
    const queue = new SwavQueue(e, 2 * B, D, LOSS.assign.length, B);
    // Two earlier batches fill the queue (2 B rows per assignment crop).
    const pushed: Float32Array[] = [];
    for (const seed of [31, 41]) {
      expect(queue.full).toBe(false);
      expect(queue.scores(model.prototypes).every((s) => s === null)).toBe(true);
      const { z } = model.embed(fixedCrops(seed).map((c) => upload(e, c)));
      queue.push(z, LOSS.assign);
      pushed.push((await e.run([], [z]))[0]);
    }
    expect(queue.full).toBe(true);
    const crops = fixedCrops(51);
    const { scores } = model.embed(crops.map((c) => upload(e, c)));
    const plain = swavLoss(scores, LOSS);
    const queueScores = queue.scores(model.prototypes);
    const queued = swavLoss(scores, { ...LOSS, queueScores });
    const out = await e.run([], [...plain.codes, ...queued.codes, queued.loss, scores,
      model.prototypes, ...queue.tensors]);
    const [p0, p1, q0, q1, lossV, scoresV, protoV, qt0, qt1] = out;

    // Queue i holds, batch after batch, the embeddings of assignment crop i, copied.
    [qt0, qt1].forEach((q, i) => pushed.forEach((z, k) => {
      const crop = LOSS.assign[i];
      expectClose(q.subarray(k * B * D, (k + 1) * B * D), z.subarray(crop * B * D,
        (crop + 1) * B * D), TOL.exact, `queue ${i}, batch ${k}`);
    }));
    // The reference: the queued embeddings (float32, as stored) scored against the same
    // prototypes in float64 and put before the batch's scores.
    const protos = R.ref([K, D], protoV);
    const refQueue = [qt0, qt1].map((q) => R.matmul(R.ref([2 * B, D], q), protos,
      { transB: true }));
    const scoresRef = R.ref([LOSS.crops * B, K], scoresV);
    const ref = swavTargetsWith(scoresRef, refQueue);
    expectClose(q0, ref.codes[0], CODE_TOL, 'codes of crop 0 with the queue');
    expectClose(q1, ref.codes[1], CODE_TOL, 'codes of crop 1 with the queue');
    const refLoss = R.softCrossEntropy(scoresRef, ref.targets, LOSS.temperature).mean *
      LOSS.crops / (LOSS.assign.length * (LOSS.crops - 1));
    expectClose(lossV, [refLoss], LOSS_TOL, 'loss with the queue');
    // And they are not the batch-only codes: the queue moved each crop's codes.
    [[p0, q0], [p1, q1]].forEach(([p, q], i) => {
      expect(maxAbs(p.map((v, j) => v - q[j])), `crop ${i}: queue changes the codes`)
        .toBeGreaterThan(0.01);
    });
  });
});

describe('SwavTrainer', () => {
  /** 16 random 12x12 images: enough for 4 steps of 4 images. */
  function syntheticImages(seed: number): ImageDataset {
    const rng = R.mulberry32(seed);
    const count = 16;
    return {
      images: Uint8Array.from({ length: count * 144 }, () => Math.floor(256 * rng())),
      labels: new Uint8Array(count), count, height: 12, width: 12,
    };
  }

  it('frozen prototypes do not move during the first N steps, then do', async () => {
    const e = engine();
    const FROZEN = 2;
    const cfg: SwavConfig = {
      ...defaultConfig, batchSize: B, epochs: 1, warmupEpochs: 0, seed: 3,
      crops: [{ count: 2, size: 8, scale: [0.5, 1] }, { count: 2, size: 4, scale: [0.2, 0.5] }],
      assign: [0, 1], width: 2, blocks: [1], hidden: 6, featDim: D, prototypes: K,
      freezePrototypesSteps: FROZEN, mean: 0.5, std: 0.29,
    };
    const trainer = new SwavTrainer(e, cfg, syntheticImages(1));
    try {
      expect(trainer.totalSteps).toBe(4);
      const P = trainer.model.prototypes;
      const conv = trainer.model.backbone.conv1.weight;
      const momentumKey = 'optim.prototypes.weight.momentum_buffer';
      const init = await P.read();
      let before = init;
      let convBefore = await conv.read();
      for (let step = 0; step < trainer.totalSteps; step++) {
        const { result } = trainer.runStep();
        expect(Number.isFinite((await result).loss), `step ${step} loss`).toBe(true);
        const [after, convAfter] = await e.run([], [P, conv]);
        const moved = maxAbs(after.map((v, i) => v - before[i]));
        // The rest of the network trains at every step.
        expect(maxAbs(convAfter.map((v, i) => v - convBefore[i])), `step ${step}: conv1 moves`)
          .toBeGreaterThan(1e-4);
        if (step < FROZEN) {
          // Each step starts by rescaling the rows to unit length, so the first step
          // leaves them normalised, and a frozen step changes nothing more than rounding
          // a unit row again (the elementwise tier).
          expectClose(after, R.l2Normalize(R.ref([K, D], init)), TOL.f32Elementwise,
            `prototypes after frozen step ${step}`);
          if (step > 0) expect(moved, `frozen step ${step}`).toBeLessThan(1e-6);
          expect(momentumKey in trainer.optimizer.state(), 'no momentum while frozen')
            .toBe(false);
        } else {
          // LARS moves each weight by about lr * trust ~ 1e-3 of its norm at these rates.
          expect(moved, `step ${step}: prototypes move once unfrozen`).toBeGreaterThan(1e-4);
          expect(momentumKey in trainer.optimizer.state()).toBe(true);
        }
        before = after;
        convBefore = convAfter;
      }
    } finally {
      trainer.dispose();
    }
  });

  it('a short run on 256 Fashion-MNIST images lowers the loss', async (ctx) => {
    // The default recipe (width 8, blocks [1, 1, 1], 2 x 28 + 2 x 14 crops, K = 100,
    // prototypes frozen for the first 8 steps) at batch 32: 24 steps. Seeds 0, 1, 2 all
    // went from ~5.6 (first three steps) to ~4.6 (last three), a margin of ~1 nat.
    ctx.skip(!existsSync(DEFAULT_FASHION_MNIST_DIR), `no Fashion-MNIST at ` +
      `${DEFAULT_FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)`);
    const e = engine();
    const data = await loadFashionMnist(undefined, 'train', { limit: 256 });
    const cfg: SwavConfig = { ...defaultConfig, batchSize: 32, epochs: 3,
      freezePrototypesSteps: 8, seed: 0 };
    const trainer = new SwavTrainer(e, cfg, data);
    try {
      expect(trainer.totalSteps).toBe(24);
      const losses: number[] = [];
      while (!trainer.done) losses.push((await trainer.runStep().result).loss);
      expect(losses.every(Number.isFinite), `losses ${losses}`).toBe(true);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const first = mean(losses.slice(0, 3));
      const last = mean(losses.slice(-3));
      expect(last, `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`).toBeLessThan(first);
    } finally {
      trainer.dispose();
    }
  });
});

/** swavTargets of the batch's scores with the queue's scores put first. */
function swavTargetsWith(scores: R.RefTensor, queueScores: R.RefTensor[]) {
  return swavTargets(scores, { ...LOSS, queueScores });
}
