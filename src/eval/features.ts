// Frozen features for evaluation: a model run over a dataset in batches, raw pixels, and
// the row blocks in which feature matrices go to the GPU.

import type { ImageDataset } from '../data/dataset.js';
import { checkImageDataset } from '../data/dataset.js';
import type { Engine } from '../graph/engine.js';
import { Tensor } from '../graph/tensor.js';
import { Module } from '../nn/module.js';
import { concatRows } from '../ops/shape.js';
import { checkKeys, optionKeys } from '../ops/util.js';

/** A row-major matrix of features: `rows` samples of `dim` values each. */
export interface Features {
  data: Float32Array;
  rows: number;
  dim: number;
}

/** A module (put in eval mode while it runs) or any function from images to features. */
export type FeatureModel = Module | ((x: Tensor) => Tensor);

export interface ExtractOptions {
  /** Images per forward pass; default 256. */
  batch?: number;
  /** Pixel normalization after scaling to [0, 1]: (v - mean) / std. */
  mean: number;
  std: number;
  /** Only the first `limit` images. */
  limit?: number;
  /**
   * Batches recorded into one submission and read back together; default: as many as keep
   * the features read at once under 16 MiB, at most 8.
   */
  batchesPerRead?: number;
}

function fail(what: string, message: string): never {
  throw new RangeError(`${what}: ${message}`);
}

function checkPositiveInt(what: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    fail(what, `${name} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

/**
 * Checks that a feature matrix's data fills rows x dim and that every value is finite. A
 * NaN or infinite feature has no cosine similarity or standardized value: on the GPU it
 * would lose every comparison and come out as class 0, or poison a probe's loss.
 */
export function checkFeatures(what: string, name: string, f: Features): void {
  if (!f || !(f.data instanceof Float32Array)) fail(what, `${name}.data must be a Float32Array`);
  checkPositiveInt(what, `${name}.rows`, f.rows);
  checkPositiveInt(what, `${name}.dim`, f.dim);
  if (f.data.length !== f.rows * f.dim) {
    fail(what, `${name} has ${f.data.length} values, expected rows x dim = ${f.rows}x${f.dim}`);
  }
  const d = f.data;
  for (let i = 0; i < d.length; i++) {
    // v - v is 0 for finite v and NaN for NaN and +-Infinity: one test per value.
    if (d[i] - d[i] !== 0) {
      fail(what, `${name} row ${Math.floor(i / f.dim)}, column ${i % f.dim} is ${d[i]}: ` +
        'features must be finite (this is the first value that is not)');
    }
  }
}

/** Checks labels: one per row, integers in [0, classes). */
export function checkLabels(what: string, name: string, y: ArrayLike<number>, rows: number,
  classes: number): void {
  if (!y || y.length !== rows) {
    fail(what, `${name} has ${y?.length} labels for ${rows} feature rows`);
  }
  for (let i = 0; i < rows; i++) {
    const c = y[i];
    if (!Number.isInteger(c) || c < 0 || c >= classes) {
      fail(what, `${name}[${i}] = ${c} is not a class in 0..${classes - 1}`);
    }
  }
}

/**
 * Runs `model` over the images of `ds` (eval mode, no gradient) and returns its outputs as
 * [count, D]. Pixels go in as [batch, 1, H, W] with v / 255 normalized by (v - mean) / std.
 * Two sets of input leaves are reused for every batch (written in place), so no buffer is
 * allocated per batch, and the CPU prepares one group of batches while the GPU runs the last.
 */
export async function extractFeatures(engine: Engine, model: FeatureModel, ds: ImageDataset,
  opts: ExtractOptions): Promise<Features> {
  const what = 'extractFeatures';
  checkImageDataset(ds, what);
  checkKeys(what, 'options', opts, optionKeys<ExtractOptions>({ batch: true, mean: true,
    std: true, limit: true, batchesPerRead: true }));
  const batch = checkPositiveInt(what, 'batch', opts.batch ?? 256);
  const { mean, std } = opts;
  if (!Number.isFinite(mean)) fail(what, `mean must be a finite number, got ${mean}`);
  if (!Number.isFinite(std) || std <= 0) fail(what, `std must be a number > 0, got ${std}`);
  const count = opts.limit === undefined ? ds.count : Math.min(ds.count,
    checkPositiveInt(what, 'limit', opts.limit));
  if (count < 1) fail(what, 'the dataset has no images');
  const { height: H, width: W } = ds;
  const px = H * W;
  // One multiply-add per pixel through a table of the 256 possible values.
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = (v / 255 - mean) / std;
  const forward = typeof model === 'function' ? model : (x: Tensor) => model.forward(x);
  const wasTraining = model instanceof Module ? model.training : false;
  if (model instanceof Module) model.eval();

  const nBatches = Math.ceil(count / batch);
  let perRead = opts.batchesPerRead === undefined ? undefined :
    checkPositiveInt(what, 'batchesPerRead', opts.batchesPerRead);
  const leaves: Map<number, Tensor>[] = [new Map(), new Map()];
  const leaf = (ring: number, slot: number, rows: number): Tensor => {
    // The last, shorter batch gets its own leaf, keyed apart from the full ones.
    const key = rows === batch ? slot : -1;
    let t = leaves[ring].get(key);
    if (!t) {
      t = engine.zeros([rows, 1, H, W], { name: `${what} input` });
      leaves[ring].set(key, t);
    }
    return t;
  };
  let out: Float32Array | null = null;
  let dim = 0;
  let pending: Promise<void> | null = null;
  try {
    let ring = 0;
    for (let b0 = 0; b0 < nBatches; ring ^= 1) {
      const group: { start: number; rows: number; x: Tensor }[] = [];
      const n = perRead ?? 1;
      for (let s = 0; s < n && b0 < nBatches; s++, b0++) {
        const start = b0 * batch;
        const rows = Math.min(batch, count - start);
        const host = new Float32Array(rows * px);
        const src = ds.images.subarray(start * px, (start + rows) * px);
        for (let i = 0; i < host.length; i++) host[i] = lut[src[i]];
        // This ring's previous group has been awaited: writing its leaves is safe.
        const x = leaf(ring, s, rows);
        x.write(host);
        group.push({ start, rows, x });
      }
      const feats = engine.noGrad(() => group.map(({ x, rows }) => {
        const y: unknown = forward(x);
        if (!(y instanceof Tensor)) {
          fail(what, `the model returned ${y === null ? 'null' : typeof y}, not a Tensor of ` +
            `features (a batch of ${rows} images)`);
        }
        if (y.shape[0] !== rows) {
          fail(what, `the model returned ${y.describe()} for a batch of ${rows} images`);
        }
        return y;
      }));
      const d = feats[0].size / feats[0].shape[0];
      if (!out) {
        dim = d;
        out = new Float32Array(count * dim);
        // Sized from the first batch's features: reads of about 16 MiB at most.
        perRead ??= Math.max(1, Math.min(8, Math.floor(2 ** 22 / (batch * dim))));
      }
      const all = feats.length === 1 ? feats[0] : concatRows(feats);
      const dst = out;
      const start = group[0].start;
      const run = engine.run([], [all]).then(([v]) => {
        if (v.length !== group.reduce((a, g) => a + g.rows, 0) * dim) {
          fail(what, `the model's features have ${v.length} values for ${group.length} ` +
            `batches; expected ${dim} per image`);
        }
        dst.set(v, start * dim);
      });
      // Marked handled now; a failure surfaces when this run is awaited below.
      run.catch(() => undefined);
      // At most one group in flight: the next group writes the other ring's leaves.
      if (pending) await pending;
      pending = run;
    }
    if (pending) await pending;
  } finally {
    if (pending) await pending.catch(() => undefined);
    for (const m of leaves) for (const t of m.values()) t.dispose();
    if (model instanceof Module) model.train(wasTraining);
  }
  return { data: out!, rows: count, dim };
}

/** Raw pixels scaled to [0, 1], one row of H x W per image: the pixel baseline. */
export function pixelFeatures(ds: ImageDataset, limit?: number): Features {
  checkImageDataset(ds, 'pixelFeatures');
  const count = limit === undefined ? ds.count : Math.min(ds.count,
    checkPositiveInt('pixelFeatures', 'limit', limit));
  const dim = ds.height * ds.width;
  const data = new Float32Array(count * dim);
  for (let i = 0; i < data.length; i++) data[i] = ds.images[i] / 255;
  return { data, rows: count, dim };
}

/** A GPU leaf holding rows [start, start + rows) of a feature matrix. */
export interface RowBlock {
  tensor: Tensor;
  start: number;
  rows: number;
}

/**
 * The most rows of `dim` floats one binding holds, capped at `maxRows` and rounded down
 * to a multiple of `multiple` (so that mini-batches never straddle two blocks).
 */
export function blockRows(engine: Engine, dim: number, maxRows = Infinity, multiple = 1): number {
  const fit = Math.floor(engine.limits.maxStorageBufferBindingSize / (4 * dim));
  let rows = Math.min(fit, maxRows);
  if (rows >= multiple) rows -= rows % multiple;
  if (rows < 1) {
    throw new RangeError(`blockRows: one row of ${dim} floats is past the binding limit`);
  }
  return rows;
}

/** Uploads a feature matrix as leaves of at most `perBlock` rows each. */
export function uploadBlocks(engine: Engine, f: Features, perBlock: number,
  name: string): RowBlock[] {
  const blocks: RowBlock[] = [];
  for (let start = 0; start < f.rows; start += perBlock) {
    const rows = Math.min(perBlock, f.rows - start);
    const data = f.data.subarray(start * f.dim, (start + rows) * f.dim);
    blocks.push({ tensor: engine.tensor(data, [rows, f.dim], { name: `${name}[${start}:]` }),
      start, rows });
  }
  return blocks;
}
