// Checkpoints: atomic replacement, checksums, crash leftovers, corruption, non-finite
// values, write errors and resume order.

import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  CHECKSUM_KEY,
  CheckpointError,
  HEADER_CHECKSUM_KEY,
  checkpointName,
  checkpointStep,
  findLatestCheckpoint,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
  writeFileAtomic,
} from '../../src/io/checkpoint-node.js';
import { FileSystemError } from '../../src/io/file-error.js';
import { firstNonFinite, NonFiniteStateError, writeTrainerCheckpoint } from '../../src/node.js';
import { defaultConfig } from '../../src/swav/config.js';
import {
  assembleSafetensors,
  packSafetensors,
  parseSafetensors,
  serializeSafetensors,
  type Tensor,
  type TensorData,
} from '../../src/io/safetensors.js';

let dir = '';
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'swavgpu-ckpt-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const values = (d: TensorData) => Array.from(d as ArrayLike<number | bigint>);

/** Weights that differ per step, so a fallback to the wrong file shows in the values. */
function weights(step: number): Record<string, Tensor> {
  return {
    'head.weight': {
      dtype: 'F32',
      shape: [2, 2],
      data: Float32Array.from([1, 2, 3, 4], (v) => v * step),
    },
    'bn.running_mean': { dtype: 'F64', shape: [2], data: Float64Array.of(step / 3, -step) },
    step: { dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(step)) },
  };
}

async function save(step: number): Promise<string> {
  const path = join(dir, checkpointName(step));
  await saveCheckpoint(path, weights(step), { step: String(step) });
  return path;
}

/** Flips one bit in the last byte of the file, which is in the data section. */
async function flipLastByte(path: string): Promise<void> {
  const bytes = await readFile(path);
  bytes[bytes.length - 1] ^= 0x01;
  await writeFile(path, bytes);
}

describe('checkpoint names', () => {
  it('pads steps to six digits and reads them back; temp names are not checkpoints', () => {
    expect(checkpointName(123)).toBe('ckpt-000123.safetensors');
    expect(checkpointName(1234567)).toBe('ckpt-1234567.safetensors');
    expect(checkpointStep('ckpt-000123.safetensors')).toBe(123);
    expect(checkpointStep('ckpt-000123.safetensors.tmp-77-abcd')).toBeUndefined();
    expect(checkpointStep('model.safetensors')).toBeUndefined();
    expect(() => checkpointName(-1)).toThrow('step must be a non-negative integer, got -1');
  });
});

describe('writeFileAtomic', () => {
  it('replaces the target and leaves no temporary file behind', async () => {
    const path = join(dir, 'f.bin');
    await writeFileAtomic(path, Uint8Array.of(1, 2, 3));
    await writeFileAtomic(path, Uint8Array.of(9));
    expect(Array.from(await readFile(path))).toEqual([9]);
    expect(await readdir(dir)).toEqual(['f.bin']);
  });

  it('removes its temporary file when the rename fails', async () => {
    // A non-empty directory at the target makes rename() fail after the temp is written.
    const path = join(dir, 'occupied');
    await mkdir(path);
    await writeFile(join(path, 'inside'), 'x');
    await expect(writeFileAtomic(path, Uint8Array.of(1))).rejects.toThrow(/EISDIR|ENOTEMPTY/);
    expect(await readdir(dir)).toEqual(['occupied']);
  });

  it('fails loudly when the directory does not exist', async () => {
    await expect(writeFileAtomic(join(dir, 'no', 'f.bin'), Uint8Array.of(1))).rejects.toThrow(
      /ENOENT/,
    );
  });
});

describe('saveCheckpoint and loadCheckpoint', () => {
  it('round trip with the data checksum stored in __metadata__', async () => {
    const path = await save(7);
    const got = await loadCheckpoint(path);
    expect(got.metadata.step).toBe('7');
    expect(got.metadata[CHECKSUM_KEY]).toMatch(/^[0-9a-f]{64}$/);
    expect(values(got.tensors['head.weight'].data)).toEqual([7, 14, 21, 28]);
    expect(values(got.tensors['bn.running_mean'].data)).toEqual([7 / 3, -7]);
    expect(got.tensors.step.data[0]).toBe(7n);
  });

  it('re-saving loaded metadata replaces the old checksum with a fresh one', async () => {
    const first = await loadCheckpoint(await save(1));
    const path = join(dir, checkpointName(2));
    await saveCheckpoint(path, weights(2), first.metadata);
    const second = await loadCheckpoint(path);
    expect(second.metadata[CHECKSUM_KEY]).not.toBe(first.metadata[CHECKSUM_KEY]);
  });

  it('a flipped data byte fails the checksum, naming the file', async () => {
    const path = await save(3);
    await flipLastByte(path);
    // The file still parses: only the checksum can tell.
    expect(parseSafetensors(await readFile(path), path).tensors.step.data[0]).toBe(3n);
    const err = await loadCheckpoint(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(
      new RegExp(`^${path}: checksum mismatch: ${CHECKSUM_KEY} says [0-9a-f]{64}, the data ` +
        'section hashes to [0-9a-f]{64} \\(the file is corrupted\\)$'),
    );
  });

  it('the header has a checksum too: a changed metadata value, name or shape fails it',
    async () => {
      const path = await save(5);
      const good = await readFile(path);
      expect(parseSafetensors(good, path).metadata[HEADER_CHECKSUM_KEY]).toMatch(/^[0-9a-f]{64}$/);
      // Same-length edits of the header's JSON: the file parses and the data checksum holds.
      for (const [from, to] of [['"step":"5"', '"step":"9"'], ['head.weight', 'head.weighT'],
        ['"shape":[2,2]', '"shape":[4,1]']]) {
        const at = good.indexOf(from);
        expect(at).toBeGreaterThan(0);
        const bad = Buffer.from(good);
        bad.write(to, at, 'latin1');
        await writeFile(path, bad);
        expect(Object.keys(parseSafetensors(bad, path).tensors)).toHaveLength(3);
        await expect(loadCheckpoint(path), from).rejects.toThrow(new RegExp(
          `^${path}: header checksum mismatch: ${HEADER_CHECKSUM_KEY} says [0-9a-f]{64}, the ` +
          'header \\(metadata, tensor names, dtypes, shapes and order\\) hashes to ' +
          '[0-9a-f]{64} \\(the file is corrupted\\)$'));
      }
      await writeFile(path, good);
      expect((await loadCheckpoint(path)).metadata.step).toBe('5');
    });

  it('the header checksum follows the data order, also for integer-like tensor names',
    async () => {
      // A record lists keys such as "0" first in ascending order, not in data order.
      const path = join(dir, checkpointName(6));
      const t = (v: number): Tensor => ({ dtype: 'F32', shape: [2], data: Float32Array.of(v, v) });
      await saveCheckpoint(path, { b: t(9), 1: t(1), 0: t(0) });
      const good = await readFile(path);
      expect((await loadCheckpoint(path)).dataOrder).toEqual(
        parseSafetensors(good, path).dataOrder);
      // Swap the names of tensors "0" and "1" (so, in effect, their data): same length.
      const bad = Buffer.from(good);
      const at0 = bad.indexOf('"0":{');
      const at1 = bad.indexOf('"1":{');
      expect(at0).toBeGreaterThan(0);
      expect(at1).toBeGreaterThan(0);
      bad.write('"1":{', at0, 'latin1');
      bad.write('"0":{', at1, 'latin1');
      await writeFile(path, bad);
      expect(parseSafetensors(bad, path).tensors['0'].data[0]).toBe(1);
      await expect(loadCheckpoint(path)).rejects.toThrow(/header checksum mismatch/);
    });

  it('a checkpoint written before the header checksum (data checksum only) still loads',
    async () => {
      const packed = packSafetensors(weights(4));
      const path = join(dir, checkpointName(4));
      const data = parseSafetensors(await readFile(await save(4)), path);
      await writeFile(path, assembleSafetensors(packed,
        { step: '4', [CHECKSUM_KEY]: data.metadata[CHECKSUM_KEY] }));
      const got = await loadCheckpoint(path);
      expect(got.metadata[HEADER_CHECKSUM_KEY]).toBeUndefined();
      expect(values(got.tensors['head.weight'].data)).toEqual([4, 8, 12, 16]);
    });

  it('a safetensors file without the checksum is refused', async () => {
    const path = join(dir, 'plain.safetensors');
    await writeFile(path, serializeSafetensors(weights(1)));
    await expect(loadCheckpoint(path)).rejects.toThrow(
      `${path}: no ${CHECKSUM_KEY} checksum in __metadata__`,
    );
  });

  it('a missing file is a CheckpointError naming the path', async () => {
    const path = join(dir, 'gone.safetensors');
    await expect(loadCheckpoint(path)).rejects.toThrow(`${path}: cannot read: ENOENT`);
  });
});

describe('findLatestCheckpoint', () => {
  it('an empty or missing directory has none', async () => {
    expect(await findLatestCheckpoint(dir)).toBeNull();
    expect(await findLatestCheckpoint(join(dir, 'missing'))).toBeNull();
  });

  it('orders by step number, not by name or time', async () => {
    await save(1000000);
    await save(99);
    await save(5);
    const latest = await findLatestCheckpoint(dir);
    expect(latest?.step).toBe(1000000);
    expect(latest?.path).toBe(join(dir, 'ckpt-1000000.safetensors'));
  });

  it('a crash before the rename leaves the old file intact and the temp is skipped', async () => {
    const old = await save(10);
    const before = await readFile(old);
    // The crash: a newer checkpoint written halfway to a temp name, never renamed.
    const partial = (await readFile(old)).subarray(0, 40);
    const temp = join(dir, `${checkpointName(11)}.tmp-4242-deadbeef`);
    await writeFile(temp, partial);
    // And an older crash that left a temp beside the very file being replaced.
    await writeFile(`${old}.tmp-4242-cafe`, partial);

    const skipped: [string, string][] = [];
    const latest = await findLatestCheckpoint(dir, (p, why) => skipped.push([p, why]));
    expect(latest?.step).toBe(10);
    expect(Buffer.compare(await readFile(old), before)).toBe(0);
    expect(skipped.map(([p]) => p).sort()).toEqual([`${old}.tmp-4242-cafe`, temp].sort());
    for (const [, why] of skipped) {
      expect(why).toBe('temporary file from a write that did not finish');
    }
  });

  it('falls back past a corrupted and a truncated checkpoint to the last good one', async () => {
    await save(1);
    const good = await save(2);
    const corrupt = await save(3);
    const truncated = await save(4);
    await flipLastByte(corrupt);
    const bytes = await readFile(truncated);
    await writeFile(truncated, bytes.subarray(0, bytes.length - 10));

    const skipped: [string, string][] = [];
    const latest = await findLatestCheckpoint(dir, (p, why) => skipped.push([p, why]));
    expect(latest?.path).toBe(good);
    expect(values(latest!.tensors['head.weight'].data)).toEqual([2, 4, 6, 8]);
    expect(skipped.map(([p]) => p)).toEqual([truncated, corrupt]);
    expect(skipped[0][1]).toMatch(/belong to no tensor|run past the data section/);
    expect(skipped[1][1]).toMatch(/checksum mismatch/);
  });
});

describe('pruneCheckpoints', () => {
  it('keeps the newest valid ones and never counts a corrupted file as kept', async () => {
    const paths = [];
    for (const step of [1, 2, 3, 4, 5]) paths.push(await save(step));
    await flipLastByte(paths[4]);
    const removed = await pruneCheckpoints(dir, 2);
    // Steps 4 and 3 are the two newest valid; 5 is broken, kept for a person to look at.
    expect(removed.sort()).toEqual([paths[0], paths[1]].sort());
    expect((await readdir(dir)).sort()).toEqual([
      'ckpt-000003.safetensors',
      'ckpt-000004.safetensors',
      'ckpt-000005.safetensors',
    ]);
    expect((await findLatestCheckpoint(dir))?.step).toBe(4);
  });

  it('with fewer valid files than keep, removes nothing', async () => {
    await save(1);
    expect(await pruneCheckpoints(dir, 3)).toEqual([]);
    await expect(pruneCheckpoints(dir, 0)).rejects.toThrow('keep must be an integer >= 1, got 0');
  });
});

describe('non-finite values', () => {
  /** Step `step`'s weights with one value replaced, saved with valid checksums. */
  async function saveWith(step: number, name: string, tensor: Tensor): Promise<string> {
    const path = join(dir, checkpointName(step));
    await saveCheckpoint(path, { ...weights(step), [name]: tensor });
    return path;
  }

  it('a NaN behind valid checksums is refused naming the file, tensor, element and value',
    async () => {
      const data = Float32Array.from([1, 2, 3, 4, 5, 6]);
      data[4] = NaN;
      const path = await saveWith(1, 'head.weight', { dtype: 'F32', shape: [2, 3], data });
      const err = await loadCheckpoint(path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as Error).message).toBe(`${path}: tensor head.weight [2, 3] holds NaN at ` +
        'element 4 ([1, 1]), its first non-finite value; a checkpoint must hold finite ' +
        'values (its checksums match: it was written so, not corrupted afterwards)');
      // Asked for, it still loads, the NaN where it was written.
      const parsed = await loadCheckpoint(path, { allowNonFinite: true });
      expect(values(parsed.tensors['head.weight'].data)).toEqual([1, 2, 3, 4, NaN, 6]);
    });

  it('an infinity in F64 and in F16 bits is found too; integers are not looked into',
    async () => {
      const f64 = await saveWith(1, 'bn.running_mean',
        { dtype: 'F64', shape: [2], data: Float64Array.of(0.5, -Infinity) });
      await expect(loadCheckpoint(f64)).rejects.toThrow(
        'tensor bn.running_mean [2] holds -Infinity at element 1 ([1])');
      // 0x3c00 is 1.0, 0x7c00 +infinity, 0x7e00 a NaN.
      const f16 = await saveWith(2, 'half',
        { dtype: 'F16', shape: [3], data: Uint16Array.of(0x3c00, 0x7c00, 0x7e00) });
      await expect(loadCheckpoint(f16)).rejects.toThrow(
        'tensor half [3] holds Infinity at element 1 ([1])');
      const ints = await saveWith(3, 'count',
        { dtype: 'I32', shape: [1], data: Int32Array.of(0x7fc00000) });
      expect(values((await loadCheckpoint(ints)).tensors.count.data)).toEqual([0x7fc00000]);
    });

  it('the newest checkpoint holding NaN is passed over like a corrupt one', async () => {
    const good = await save(1);
    const data = Float32Array.of(Infinity, 0, 0, 0);
    const bad = await saveWith(2, 'head.weight', { dtype: 'F32', shape: [2, 2], data });
    const skipped: [string, string][] = [];
    const latest = await findLatestCheckpoint(dir, (p, why) => skipped.push([p, why]));
    expect(latest?.path).toBe(good);
    expect(skipped).toHaveLength(1);
    expect(skipped[0][0]).toBe(bad);
    expect(skipped[0][1]).toMatch(/tensor head\.weight \[2, 2\] holds Infinity at element 0 /);
    // Nor does pruning count it as a kept checkpoint: the good one stays.
    expect(await pruneCheckpoints(dir, 1)).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual([checkpointName(1), checkpointName(2)]);
  });

  it('firstNonFinite, exported by the Node entry, reads F16 by its bits as loading does',
    async () => {
      // Loaded as allowed, the F16 infinity is there to find: one check serves both.
      const path = await saveWith(1, 'half',
        { dtype: 'F16', shape: [3], data: Uint16Array.of(0x3c00, 0x3800, 0xfc00) });
      const parsed = await loadCheckpoint(path, { allowNonFinite: true });
      expect(firstNonFinite(parsed.tensors)).toEqual({ name: 'half', index: 2, value: -Infinity });
      // A NaN's bits (0x7e01: mantissa set) give NaN; 0x7bff, the largest F16, is finite.
      const half = (...bits: number[]) =>
        ({ dtype: 'F16' as const, data: Uint16Array.of(...bits) });
      expect(firstNonFinite({ a: half(0x7bff, 0xfbff), b: half(0, 0x7e01) }))
        .toEqual({ name: 'b', index: 1, value: NaN });
      // Integer data is never looked into; dtype-less float arrays are, as before.
      expect(firstNonFinite({ n: { dtype: 'I32', data: Int32Array.of(0x7fc00000) } })).toBeNull();
      expect(firstNonFinite({ x: { data: Float32Array.of(1, Infinity) } }))
        .toEqual({ name: 'x', index: 1, value: Infinity });
    });

  it('writeTrainerCheckpoint refuses a snapshot holding an F16 infinity, writing nothing',
    async () => {
      const snap = {
        step: 5, config: defaultConfig, position: {} as never,
        tensors: { half: { dtype: 'F16' as const, shape: [2], data: Uint16Array.of(0, 0x7c00) } },
      };
      const err = await writeTrainerCheckpoint(dir, snap).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NonFiniteStateError);
      expect((err as Error).message).toBe('state after step 4: half holds Infinity at element 1; ' +
        'no checkpoint was written');
      expect(await readdir(dir)).toEqual([]);
    });
});

describe('write errors name the file being written, its folder and the OS reason', () => {
  // As root, chmod does not block writes: a missing folder and a path through a regular
  // file fail for everyone.
  it('saveCheckpoint into a missing folder: ENOENT on the checkpoint, not on its temp file',
    async () => {
      const path = join(dir, 'missing', 'ckpt-000020.safetensors');
      const err = await saveCheckpoint(path, weights(20)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FileSystemError);
      expect((err as FileSystemError).code).toBe('ENOENT');
      expect((err as Error).message).toBe(`${path}: cannot write the checkpoint in the folder ` +
        `${join(dir, 'missing')}: ENOENT (the folder does not exist)`);
      expect((err as Error).message).not.toMatch(/\.tmp-/);
    });

  it('a folder path through a regular file: ENOTDIR, said as such', async () => {
    await writeFile(join(dir, 'plain'), 'x');
    const path = join(dir, 'plain', 'f.bin');
    await expect(writeFileAtomic(path, Uint8Array.of(1), 'the metrics')).rejects.toThrow(
      `${path}: cannot write the metrics in the folder ${join(dir, 'plain')}: ENOTDIR (a part ` +
        "of the folder's path is a file, not a folder)");
  });
});
