// A small seeded stand-in for Fashion-MNIST (uncompressed IDX files) for the reliability
// tests: they need no installed dataset, and skip gunzipping 26 MB at every start.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32 } from '../../src/reference/random.js';

function idx(type: number, dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE((type << 8) | dims.length, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, data]);
}

/**
 * Writes `count` 28x28 images into `dir` as train-{images,labels} IDX files: each a soft
 * ellipse of a random size, place and brightness over faint noise (shapes, so crops and
 * flips change what the network sees), with labels 0..9 in turn.
 */
export function writeSyntheticMnist(dir: string, count = 64, seed = 1): string {
  const rng = mulberry32(seed);
  const images = new Uint8Array(count * 28 * 28);
  for (let n = 0; n < count; n++) {
    const [cx, cy] = [8 + 12 * rng(), 8 + 12 * rng()];
    const [rx, ry] = [3 + 8 * rng(), 3 + 8 * rng()];
    const level = 120 + 135 * rng();
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const r = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2;
        const v = level / (1 + Math.exp(4 * (r - 1))) + 20 * rng();
        images[n * 784 + y * 28 + x] = Math.min(255, Math.round(v));
      }
    }
  }
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'train-images-idx3-ubyte'), idx(0x08, [count, 28, 28], images));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx(0x08, [count], labels));
  return dir;
}
