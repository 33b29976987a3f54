// Feature extraction: batching with a short last batch, input normalization, eval mode,
// reuse of the input leaves, few readbacks, and the pixel baseline.

import { describe, expect, it } from 'vitest';
import type { ImageDataset } from '../../src/data/dataset.js';
import { extractFeatures, pixelFeatures } from '../../src/eval/features.js';
import type { Tensor } from '../../src/graph/tensor.js';
import { initRng, Module } from '../../src/nn/module.js';
import { ResNet } from '../../src/nn/resnet.js';
import { scale } from '../../src/ops/elementwise.js';
import { reshape } from '../../src/ops/reduce.js';
import { sliceRows } from '../../src/ops/shape.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();

function dataset(count: number, h = 3, w = 4): ImageDataset {
  const images = new Uint8Array(count * h * w).map((_, i) => (i * 37 + 11) % 256);
  const labels = new Uint8Array(count).map((_, i) => i % 10);
  return { images, labels, count, height: h, width: w };
}

/** Per image: its pixels as v / 255 normalized by (v - mean) / std, flattened. */
function expected(ds: ImageDataset, mean: number, std: number, limit = ds.count): number[] {
  const px = ds.height * ds.width;
  return [...ds.images.subarray(0, limit * px)].map((v) => (v / 255 - mean) / std);
}

/** Flattens its input and records the mode it ran in. */
class Probe extends Module {
  sawTraining: boolean[] = [];
  forward(x: Tensor): Tensor {
    this.sawTraining.push(this.training);
    const [b, , h, w] = x.shape;
    return scale(reshape(x, [b, h * w]), 2);
  }
}

describe('extractFeatures', () => {
  it('normalizes pixels and keeps image order across batches and groups', async () => {
    const ds = dataset(29);
    const f = await extractFeatures(engine(), (x) => reshape(x, [x.shape[0], 12]), ds,
      { batch: 8, mean: 0.25, std: 0.5, batchesPerRead: 3 });
    expect([f.rows, f.dim]).toEqual([29, 12]);
    expected(ds, 0.25, 0.5).forEach((v, i) => expect(f.data[i]).toBeCloseTo(v, 5));
  });

  it('runs a module in eval mode and restores its mode; limit keeps the first images', async () => {
    const e = engine();
    const m = new Probe(e);
    const ds = dataset(11);
    const f = await extractFeatures(e, m, ds, { batch: 4, mean: 0.1, std: 0.3, limit: 7 });
    expect(m.training).toBe(true);
    expect(m.sawTraining).toEqual([false, false]);
    expect([f.rows, f.dim]).toEqual([7, 12]);
    expected(ds, 0.1, 0.3, 7).forEach((v, i) => expect(f.data[i]).toBeCloseTo(2 * v, 5));
  });

  it('a ResNet in eval mode: features do not depend on the batch, statistics stay', async () => {
    // In training mode batch norm would normalize with each batch's statistics, so the
    // same image would get different features in batches of 3 and of 7.
    const e = engine();
    const net = new ResNet(e, initRng(5), { width: 4, blocks: [1, 1] });
    const ds = dataset(7, 8, 8);
    const before = await net.bn1.runningMean.read();
    const a = await extractFeatures(e, net, ds, { batch: 3, mean: 0.3, std: 0.35 });
    const b = await extractFeatures(e, net, ds, { batch: 7, mean: 0.3, std: 0.35 });
    expect([a.rows, a.dim]).toEqual([7, 8]);
    expect(a.data.some((v) => v !== 0)).toBe(true);
    a.data.forEach((v, i) => expect(v).toBeCloseTo(b.data[i], 5));
    expect(await net.bn1.runningMean.read()).toEqual(before);
    expect(net.training).toBe(true);
  });

  it('allocates no buffer per batch: a 2.6x longer set needs no new ones', async () => {
    const e = engine();
    const model = (x: Tensor) => reshape(x, [x.shape[0], 12]);
    const opts = { batch: 8, mean: 0, std: 1, batchesPerRead: 2 };
    // 29 = 3 x 8 + 5 and 77 = 9 x 8 + 5: the same batch shapes in both.
    await extractFeatures(e, model, dataset(29), opts);
    const before = e.gpu.pool.stats.allocations;
    const subs = e.gpu.counters.readbacks;
    await extractFeatures(e, model, dataset(77), opts);
    expect(e.gpu.pool.stats.allocations - before).toBe(0);
    // 10 batches, 2 per read.
    expect(e.gpu.counters.readbacks - subs).toBe(5);
  });

  it('names bad arguments', async () => {
    const e = engine();
    const ds = dataset(3);
    const id = (x: Tensor) => x;
    await expect(extractFeatures(e, id, ds, { mean: 0, std: 0 })).rejects.toThrow(
      'extractFeatures: std must be a number > 0, got 0');
    await expect(extractFeatures(e, id, ds, { mean: 0, std: 1, batch: 0 })).rejects.toThrow(
      'extractFeatures: batch must be a positive integer, got 0');
    await expect(extractFeatures(e, id, ds, { mean: 0, std: 1, batchesPerRead: 0 }))
      .rejects.toThrow('extractFeatures: batchesPerRead must be a positive integer, got 0');
    await expect(extractFeatures(e, id, { ...ds, count: 4 }, { mean: 0, std: 1 }))
      .rejects.toThrow('extractFeatures: images has 36 bytes');
    await expect(extractFeatures(e, (x) => sliceRows(x, 0, 1), ds, { mean: 0, std: 1 }))
      .rejects.toThrow('extractFeatures: the model returned');
    await expect(extractFeatures(e, id, ds, { mean: 0, std: 1, batchSize: 2 } as never))
      .rejects.toThrow('extractFeatures: unknown option "batchSize"');
    const notTensor = (() => [1, 2]) as unknown as (x: Tensor) => Tensor;
    await expect(extractFeatures(e, notTensor, ds, { mean: 0, std: 1 })).rejects.toThrow(
      'extractFeatures: the model returned object, not a Tensor of features (a batch of 3');
  });
});

describe('pixelFeatures', () => {
  it('scales raw pixels to [0, 1], one row per image', () => {
    const ds = dataset(5);
    const f = pixelFeatures(ds, 2);
    expect([f.rows, f.dim]).toEqual([2, 12]);
    expect(f.data[1]).toBeCloseTo(48 / 255, 7);
    expect(f.data.length).toBe(24);
  });
});
