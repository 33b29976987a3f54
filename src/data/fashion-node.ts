// Node-only loading of IDX files and of Fashion-MNIST from a directory (gzip'd or not).

import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import type { ImageDataset } from './dataset.js';
import { decodeIdx, IdxError, type IdxArray } from './idx.js';

/** Where Debian's `dataset-fashion-mnist` package puts the files. */
export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = 10;

export type Split = 'train' | 'test';

export interface LoadFashionMnistOptions {
  /** Keep only the first `limit` images (and labels). */
  limit?: number;
}

/** zlib's gunzip with a cap on the output, for decodeIdx. */
export function nodeGunzip(bytes: Uint8Array, maxBytes: number): Uint8Array {
  return gunzipSync(bytes, { maxOutputLength: maxBytes });
}

/** Reads and parses one IDX file, gzip'd or not; errors name the path. */
export async function readIdxFile(path: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new IdxError(path, `cannot read: ${(e as Error).message}`, { cause: e });
  }
  return decodeIdx(bytes, path, nodeGunzip);
}

/**
 * Loads one split of Fashion-MNIST: `train` (60 000 images) or `test` (10 000, the files
 * named `t10k-*`). Accepts `name.gz` or the uncompressed `name` in `dir`.
 */
export async function loadFashionMnist(
  dir: string = DEFAULT_FASHION_MNIST_DIR,
  split: Split = 'train',
  options: LoadFashionMnistOptions = {},
): Promise<ImageDataset> {
  if (split !== 'train' && split !== 'test') {
    throw new RangeError(`loadFashionMnist: split must be 'train' or 'test', got '${split}'`);
  }
  const { limit } = options;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
    throw new RangeError(`loadFashionMnist: limit must be a non-negative integer, got ${limit}`);
  }
  const prefix = split === 'train' ? 'train' : 't10k';
  const imagesPath = await findFile(dir, `${prefix}-images-idx3-ubyte`, split, 'images');
  const labelsPath = await findFile(dir, `${prefix}-labels-idx1-ubyte`, split, 'labels');
  const [images, labels] = await Promise.all([readIdxFile(imagesPath), readIdxFile(labelsPath)]);

  if (images.type !== 'u8' || images.shape.length !== 3) {
    throw new IdxError(
      imagesPath,
      `expected u8 images of rank 3 [N, height, width], got ${images.type} ` +
        `[${images.shape.join(', ')}]`,
    );
  }
  if (labels.type !== 'u8' || labels.shape.length !== 1) {
    throw new IdxError(
      labelsPath,
      `expected u8 labels of rank 1 [N], got ${labels.type} [${labels.shape.join(', ')}]`,
    );
  }
  const [n, height, width] = images.shape;
  if (labels.shape[0] !== n) {
    throw new IdxError(
      labelsPath,
      `has ${labels.shape[0]} labels but ${imagesPath} has ${n} images`,
    );
  }
  const labelData = labels.data as Uint8Array;
  for (let i = 0; i < n; i++) {
    if (labelData[i] >= FASHION_MNIST_CLASSES) {
      throw new IdxError(
        labelsPath,
        `label ${i} is ${labelData[i]}; Fashion-MNIST labels are 0..${FASHION_MNIST_CLASSES - 1}`,
      );
    }
  }

  const count = limit === undefined ? n : Math.min(limit, n);
  const imageData = images.data as Uint8Array;
  return {
    images: count === n ? imageData : imageData.slice(0, count * height * width),
    labels: count === n ? labelData : labelData.slice(0, count),
    count,
    height,
    width,
  };
}

async function findFile(dir: string, base: string, split: Split, what: string): Promise<string> {
  const candidates = [join(dir, `${base}.gz`), join(dir, base)];
  for (const path of candidates) {
    try {
      await access(path, constants.R_OK);
      return path;
    } catch {
      // Try the next name.
    }
  }
  throw new IdxError(
    candidates[0],
    `Fashion-MNIST ${split} ${what} not found (also tried ${candidates[1]}); install them ` +
      'with `apt-get install dataset-fashion-mnist` or point to a directory with `--data DIR`',
  );
}
