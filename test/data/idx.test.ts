// IDX parsing: round trips per type, every rejected input by its message, real Fashion-MNIST.

import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { describe, expect, it } from 'vitest';

import { checkImageDataset, pixelStats } from '../../src/data/dataset.js';
import {
  DEFAULT_FASHION_MNIST_DIR,
  loadFashionMnist,
  nodeGunzip,
  readIdxFile,
} from '../../src/data/fashion-node.js';
import { decodeIdx, gunzipWithStreams, IdxError, parseIdx } from '../../src/data/idx.js';

const TYPE_BYTE = { u8: 0x08, i8: 0x09, i16: 0x0b, i32: 0x0c, f32: 0x0d, f64: 0x0e } as const;
const SIZE = { u8: 1, i8: 1, i16: 2, i32: 4, f32: 4, f64: 8 } as const;
type T = keyof typeof TYPE_BYTE;

/** Builds an IDX file the slow, obvious way: DataView writes, big-endian. */
function makeIdx(type: T, shape: number[], values: number[]): Uint8Array {
  const header = 4 + 4 * shape.length;
  const out = new Uint8Array(header + values.length * SIZE[type]);
  const v = new DataView(out.buffer);
  out[2] = TYPE_BYTE[type];
  out[3] = shape.length;
  shape.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  values.forEach((x, i) => {
    const at = header + i * SIZE[type];
    if (type === 'u8') v.setUint8(at, x);
    else if (type === 'i8') v.setInt8(at, x);
    else if (type === 'i16') v.setInt16(at, x, false);
    else if (type === 'i32') v.setInt32(at, x, false);
    else if (type === 'f32') v.setFloat32(at, x, false);
    else v.setFloat64(at, x, false);
  });
  return out;
}

/** The message of the IdxError `f` throws; fails the test on any other outcome. */
function idxMessage(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(IdxError);
    return (e as Error).message;
  }
  throw new Error('expected an IdxError, nothing was thrown');
}

describe('parseIdx round trips', () => {
  const cases: [T, number[], number[]][] = [
    ['u8', [2, 3], [0, 1, 127, 128, 254, 255]],
    ['i8', [4], [-128, -1, 0, 127]],
    ['i16', [2, 2], [-32768, -2, 300, 32767]],
    ['i32', [3], [-2147483648, 65536 + 3, 2147483647]],
    ['f32', [1, 2, 2], [1.5, -0.25, 2 ** -25, 65504]],
    ['f64', [2, 1, 1, 1], [Math.PI, -1e300]],
  ];
  for (const [type, shape, values] of cases) {
    it(`${type} ${shape.join('x')} comes back with its values, big-endian decoded`, () => {
      const got = parseIdx(makeIdx(type, shape, values), 'x.idx');
      expect(got.type).toBe(type);
      expect(got.shape).toEqual(shape);
      expect(Array.from(got.data)).toEqual(values);
    });
  }

  it('copies u8 data out of a view with an odd offset, not aliasing the input', () => {
    const file = makeIdx('u8', [3], [7, 8, 9]);
    const padded = new Uint8Array(file.length + 1);
    padded.set(file, 1);
    const got = parseIdx(padded.subarray(1), 'odd.idx');
    padded[padded.length - 1] = 0;
    expect(Array.from(got.data)).toEqual([7, 8, 9]);
  });

  it('decodes i32 from an unaligned view (DataView, never a typed-array cast)', () => {
    const file = makeIdx('i32', [2], [-5, 1 << 20]);
    const padded = new Uint8Array(file.length + 3);
    padded.set(file, 3);
    expect(Array.from(parseIdx(padded.subarray(3), 'u.idx').data)).toEqual([-5, 1 << 20]);
  });

  it('decodeIdx gunzips with zlib and with DecompressionStream alike', async () => {
    const gz = gzipSync(makeIdx('u8', [2, 2], [1, 2, 3, 4]));
    for (const gunzip of [nodeGunzip, gunzipWithStreams]) {
      const got = await decodeIdx(gz, 'x.gz', gunzip);
      expect(got.shape).toEqual([2, 2]);
      expect(Array.from(got.data)).toEqual([1, 2, 3, 4]);
    }
  });

  it('decodeIdx passes uncompressed bytes straight to parseIdx', async () => {
    const got = await decodeIdx(makeIdx('f64', [1], [2.5]), 'raw');
    expect(Array.from(got.data)).toEqual([2.5]);
  });
});

describe('parseIdx rejects bad input, naming the file and the numbers', () => {
  const good = makeIdx('u8', [2, 3, 4], new Array(24).fill(1));

  it('file shorter than the magic', () => {
    expect(idxMessage(() => parseIdx(new Uint8Array([0, 0, 8]), 'a.idx'))).toBe(
      'a.idx: file is 3 bytes, shorter than the 4-byte IDX magic',
    );
  });

  it('magic without the two zero bytes', () => {
    const bad = good.slice();
    bad[1] = 0x01;
    expect(idxMessage(() => parseIdx(bad, 'a.idx'))).toBe(
      'a.idx: bad magic 0x00010803: an IDX file starts with two zero bytes',
    );
  });

  it('unknown type byte', () => {
    const bad = good.slice();
    bad[2] = 0x0a;
    expect(idxMessage(() => parseIdx(bad, 'a.idx'))).toMatch(
      /^a\.idx: unknown data type byte 0x0a \(known: 0x08 u8, 0x09 i8, 0x0b i16/,
    );
  });

  it('dimension count 0 and 5', () => {
    for (const rank of [0, 5]) {
      const bad = good.slice();
      bad[3] = rank;
      expect(idxMessage(() => parseIdx(bad, 'a.idx'))).toBe(
        `a.idx: dimension count ${rank} is outside 1..4`,
      );
    }
  });

  it('header cut inside the dimensions', () => {
    expect(idxMessage(() => parseIdx(good.subarray(0, 10), 'a.idx'))).toBe(
      'a.idx: truncated header: 3 dimensions need 16 bytes, file has 10',
    );
  });

  it('a zero dimension', () => {
    expect(idxMessage(() => parseIdx(makeIdx('u8', [2, 0, 4], []), 'a.idx'))).toBe(
      'a.idx: dimension 1 of 2x0x4 is 0; each must be >= 1',
    );
  });

  it('dimensions whose product passes 2^31 bytes (checked before any allocation)', () => {
    const huge = makeIdx('f64', [65536, 65536, 65536, 65536], []);
    expect(idxMessage(() => parseIdx(huge, 'big.idx'))).toBe(
      'big.idx: header says 65536x65536x65536x65536 f64 (8 bytes each) bytes of data, ' +
        'over the 2147483648-byte limit',
    );
  });

  it('truncated data, as in a cut download of the training images', () => {
    const header = makeIdx('u8', [60000, 28, 28], []);
    const cut = new Uint8Array(header.length + 1200);
    cut.set(header);
    expect(idxMessage(() => parseIdx(cut, 'train-images-idx3-ubyte.gz'))).toBe(
      'train-images-idx3-ubyte.gz: truncated: header says 60000x28x28 = 47040000 bytes of ' +
        'data, file has 1200',
    );
  });

  it('truncated data of a wider type states the element size', () => {
    const cut = makeIdx('i32', [10, 3], new Array(25).fill(0));
    expect(idxMessage(() => parseIdx(cut, 'w.idx'))).toBe(
      'w.idx: truncated: header says 10x3 i32 (4 bytes each) = 120 bytes of data, file has 100',
    );
  });

  it('trailing bytes after the data', () => {
    const long = new Uint8Array(good.length + 5);
    long.set(good);
    expect(idxMessage(() => parseIdx(long, 'a.idx'))).toBe(
      'a.idx: 5 trailing bytes: header says 2x3x4 = 24 bytes of data, file has 29',
    );
  });

  it('gzip bytes given to the raw parser', () => {
    expect(idxMessage(() => parseIdx(gzipSync(good), 'a.gz'))).toBe(
      'a.gz: is gzip-compressed; decode it with decodeIdx and a gunzip',
    );
  });

  it('a broken gzip stream is wrapped, with the cause kept', async () => {
    const gz = gzipSync(good);
    const broken = gz.subarray(0, gz.length - 12);
    for (const gunzip of [nodeGunzip, gunzipWithStreams]) {
      const err = await decodeIdx(broken, 'b.gz', gunzip).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IdxError);
      expect((err as Error).message).toMatch(/^b\.gz: gunzip failed: /);
      expect((err as Error).cause).toBeDefined();
    }
  });

  it('a gzip bomb stops at the output cap', async () => {
    // 16 MiB of zeros inflate from ~16 KiB; a 1 MiB cap must stop both gunzips early.
    const gz = gzipSync(new Uint8Array(16 << 20));
    const capped = (cap: number) => (b: Uint8Array) => gunzipWithStreams(b, cap);
    await expect(capped(1 << 20)(gz)).rejects.toThrow(/passes 1048576 bytes/);
    expect(() => nodeGunzip(gz, 1 << 20)).toThrow(RangeError);
  });
});

describe('IDX files on disk', () => {
  it('readIdxFile names the path when the file is missing', async () => {
    const err = await readIdxFile('/nonexistent/x.idx').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdxError);
    expect((err as Error).message).toMatch(/^\/nonexistent\/x\.idx: cannot read: ENOENT/);
  });

  it('loadFashionMnist on a missing directory suggests the package and --data', async () => {
    const err = await loadFashionMnist('/nonexistent', 'test').catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      '/nonexistent/t10k-images-idx3-ubyte.gz: Fashion-MNIST test images not found (also ' +
        'tried /nonexistent/t10k-images-idx3-ubyte); install them with `apt-get install ' +
        'dataset-fashion-mnist` or point to a directory with `--data DIR`',
    );
  });

  it('loadFashionMnist reads uncompressed files and checks labels against images', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'swavgpu-idx-'));
    try {
      const pixels = Array.from({ length: 3 * 2 * 2 }, (_, i) => i * 20);
      await writeFile(join(dir, 't10k-images-idx3-ubyte'), makeIdx('u8', [3, 2, 2], pixels));
      await writeFile(join(dir, 't10k-labels-idx1-ubyte'), makeIdx('u8', [3], [9, 0, 4]));
      const ds = await loadFashionMnist(dir, 'test', { limit: 2 });
      checkImageDataset(ds, 'tiny');
      expect([ds.count, ds.height, ds.width]).toEqual([2, 2, 2]);
      expect(Array.from(ds.images)).toEqual(pixels.slice(0, 8));
      expect(Array.from(ds.labels)).toEqual([9, 0]);

      await writeFile(join(dir, 't10k-labels-idx1-ubyte'), makeIdx('u8', [3], [9, 10, 4]));
      await expect(loadFashionMnist(dir, 'test')).rejects.toThrow(
        `${dir}/t10k-labels-idx1-ubyte: label 1 is 10; Fashion-MNIST labels are 0..9`,
      );
      await writeFile(join(dir, 't10k-labels-idx1-ubyte'), makeIdx('u8', [2], [9, 1]));
      await expect(loadFashionMnist(dir, 'test')).rejects.toThrow(
        `${dir}/t10k-labels-idx1-ubyte: has 2 labels but ${dir}/t10k-images-idx3-ubyte has ` +
          '3 images',
      );
      await writeFile(join(dir, 't10k-images-idx3-ubyte'), makeIdx('u8', [12], pixels));
      await expect(loadFashionMnist(dir, 'test')).rejects.toThrow(
        `${dir}/t10k-images-idx3-ubyte: expected u8 images of rank 3 [N, height, width], ` +
          'got u8 [12]',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('pixelStats matches a direct two-pass computation', () => {
    const images = Uint8Array.from([0, 255, 51, 102, 0, 0, 255, 17]);
    const ds = { images, labels: new Uint8Array(2), count: 2, height: 2, width: 2 };
    const xs = Array.from(images, (v) => v / 255);
    const mean = xs.reduce((a, b) => a + b) / xs.length;
    const std = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / xs.length);
    const got = pixelStats(ds);
    expect(got.mean).toBeCloseTo(mean, 12);
    expect(got.std).toBeCloseTo(std, 12);
  });
});

const haveFashion = existsSync(join(DEFAULT_FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'));
const fashionReason = `Fashion-MNIST not in ${DEFAULT_FASHION_MNIST_DIR} ` +
  '(apt-get install dataset-fashion-mnist)';

const fashionTitle = `real Fashion-MNIST${haveFashion ? '' : ` (skipped: ${fashionReason})`}`;

describe.skipIf(!haveFashion)(fashionTitle, () => {
  it('train: 60000 images of 28x28, first label 9 (ankle boot), published stats', async () => {
    const ds = await loadFashionMnist(DEFAULT_FASHION_MNIST_DIR, 'train');
    checkImageDataset(ds, 'train');
    expect([ds.count, ds.height, ds.width]).toEqual([60000, 28, 28]);
    expect(ds.labels[0]).toBe(9);
    // Each class has exactly 6000 training images.
    const perClass = new Array(10).fill(0);
    for (const l of ds.labels) perClass[l]++;
    expect(perClass).toEqual(new Array(10).fill(6000));
    // The normalization constants Fashion-MNIST recipes use, to their 4 digits (this
    // reader gives 0.286041 and 0.353024).
    const { mean, std } = pixelStats(ds);
    expect(Math.abs(mean - 0.286)).toBeLessThan(5e-5);
    expect(Math.abs(std - 0.353)).toBeLessThan(5e-5);
  });

  it('test: 10000 images, limit keeps the first ones', async () => {
    const all = await loadFashionMnist(DEFAULT_FASHION_MNIST_DIR, 'test');
    expect(all.count).toBe(10000);
    const few = await loadFashionMnist(undefined, 'test', { limit: 5 });
    expect(few.count).toBe(5);
    expect(few.images).toEqual(all.images.subarray(0, 5 * 28 * 28));
    expect(few.labels).toEqual(all.labels.subarray(0, 5));
  });
});
