// Fuzzing both readers: every mangled file either loads consistently or throws the reader's
// own error class. Seeded, so a failing case is named by its index and replays exactly.

import { gzipSync } from 'node:zlib';

import { describe, expect, it } from 'vitest';

import { nodeGunzip } from '../../src/data/fashion-node.js';
import { decodeIdx, IdxError, parseIdx, type IdxArray } from '../../src/data/idx.js';
import {
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  type ParsedSafetensors,
} from '../../src/io/safetensors.js';
import { mulberry32, randInt } from '../../src/util/random.js';

const CASES = 3000;
const SEED = 20240607;

type Rng = () => number;
type Mutation = (rng: Rng, bytes: Uint8Array) => Uint8Array;

/** Positions are drawn from the first 64 bytes half the time: that is where headers live. */
function position(rng: Rng, length: number): number {
  if (length === 0) return 0;
  return rng() < 0.5 ? randInt(rng, 0, Math.min(64, length)) : randInt(rng, 0, length);
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => randInt(rng, 0, 256));
}

const MUTATIONS: Record<string, Mutation> = {
  bitFlips: (rng, b) => {
    const out = b.slice();
    const flips = randInt(rng, 1, 9);
    for (let i = 0; i < flips && out.length > 0; i++) {
      out[position(rng, out.length)] ^= 1 << randInt(rng, 0, 8);
    }
    return out;
  },
  overwrite: (rng, b) => {
    const out = b.slice();
    if (out.length > 0) {
      // Boundary values find off-by-one and sign mistakes more often than random ones.
      const special = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff];
      const v = rng() < 0.5 ? special[randInt(rng, 0, special.length)] : randInt(rng, 0, 256);
      out[position(rng, out.length)] = v;
    }
    return out;
  },
  truncate: (rng, b) => b.slice(0, randInt(rng, 0, b.length + 1)),
  insert: (rng, b) => {
    const at = randInt(rng, 0, b.length + 1);
    const extra = randomBytes(rng, randInt(rng, 1, 17));
    const out = new Uint8Array(b.length + extra.length);
    out.set(b.subarray(0, at));
    out.set(extra, at);
    out.set(b.subarray(at), at + extra.length);
    return out;
  },
  randomFile: (rng) => randomBytes(rng, randInt(rng, 0, 80)),
};

/** Runs `CASES` mutated inputs through `load`; returns how many loaded and how many failed. */
async function fuzz(
  label: string,
  seeds: Uint8Array[],
  extra: Record<string, Mutation>,
  load: (bytes: Uint8Array) => Promise<void>,
  ownError: new (...args: never[]) => Error,
): Promise<{ loaded: number; rejected: number }> {
  const rng = mulberry32(SEED);
  const mutations = Object.entries({ ...MUTATIONS, ...extra });
  let loaded = 0;
  let rejected = 0;
  for (let i = 0; i < CASES; i++) {
    const seed = seeds[randInt(rng, 0, seeds.length)];
    const [name, mutate] = mutations[randInt(rng, 0, mutations.length)];
    const input = mutate(rng, seed);
    try {
      await load(input);
      loaded++;
    } catch (e) {
      if (!(e instanceof ownError)) {
        const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        throw new Error(`${label} case ${i} (${name}, ${input.length} bytes) threw ${what}`, {
          cause: e,
        });
      }
      rejected++;
    }
  }
  return { loaded, rejected };
}

const IDX_ARRAYS: Record<string, new (n: number) => ArrayLike<number>> = {
  u8: Uint8Array, i8: Int8Array, i16: Int16Array, i32: Int32Array, f32: Float32Array,
  f64: Float64Array,
};

function checkIdx(got: IdxArray): void {
  expect(got.shape.length).toBeGreaterThanOrEqual(1);
  expect(got.shape.length).toBeLessThanOrEqual(4);
  expect(got.shape.every((d) => Number.isInteger(d) && d >= 1)).toBe(true);
  expect(got.data.length).toBe(got.shape.reduce((a, b) => a * b, 1));
  expect(got.data).toBeInstanceOf(IDX_ARRAYS[got.type]);
}

function idxFile(typeByte: number, size: number, shape: number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(4 + 4 * shape.length + count * size);
  const v = new DataView(out.buffer);
  out[2] = typeByte;
  out[3] = shape.length;
  shape.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  for (let i = 4 + 4 * shape.length; i < out.length; i++) out[i] = (i * 37) & 0xff;
  return out;
}

describe('fuzzing the IDX reader', () => {
  it(`${CASES} mangled files: each loads consistently or throws IdxError`, async () => {
    const raw = [
      idxFile(0x08, 1, [3, 4, 5]),
      idxFile(0x0c, 4, [2, 3]),
      idxFile(0x0e, 8, [1, 2, 2, 1]),
      idxFile(0x0b, 2, [7]),
    ];
    // Copies: a Node Buffer's slice() is a view, and mutations would edit the seed itself.
    const seeds = [...raw, new Uint8Array(gzipSync(raw[0])), new Uint8Array(gzipSync(raw[2]))];
    const started = performance.now();
    const { loaded, rejected } = await fuzz(
      'idx',
      seeds,
      {
        // Random bytes behind a plausible header prefix, to get past the magic check.
        plausibleHeader: (rng) => {
          const body = randomBytes(rng, randInt(rng, 0, 48));
          const types = [0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e];
          return Uint8Array.from([0, 0, types[randInt(rng, 0, 6)], randInt(rng, 0, 6), ...body]);
        },
      },
      async (bytes) => {
        checkIdx(await decodeIdx(bytes, 'fuzz.idx', nodeGunzip));
        // The sync entry point must agree on raw input.
        if (bytes[0] !== 0x1f) checkIdx(parseIdx(bytes, 'fuzz.idx'));
      },
      IdxError,
    );
    // Both outcomes must occur, or the fuzzing never reached the other side of the checks.
    expect(loaded).toBeGreaterThan(CASES / 20);
    expect(rejected).toBeGreaterThan(CASES / 2);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});

const ST_ARRAYS: Record<string, new (n: number) => unknown> = {
  F16: Uint16Array, F32: Float32Array, F64: Float64Array, I32: Int32Array,
  I64: BigInt64Array, U8: Uint8Array,
};
const ST_SIZES: Record<string, number> = { F16: 2, F32: 4, F64: 8, I32: 4, I64: 8, U8: 1 };

function checkSafetensors(got: ParsedSafetensors, fileLength: number): void {
  let total = 0;
  for (const t of Object.values(got.tensors)) {
    expect(t.data).toBeInstanceOf(ST_ARRAYS[t.dtype]);
    expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
    expect(t.data.byteLength).toBe(t.data.length * ST_SIZES[t.dtype]);
    total += t.data.byteLength;
  }
  // The tensors tile the data section exactly.
  expect(total).toBe(fileLength - got.dataOffset);
  for (const v of Object.values(got.metadata)) expect(typeof v).toBe('string');
}

/** Re-frames a header edit with a correct length prefix, so it reaches the field checks. */
function withHeader(file: Uint8Array, edit: (text: string) => string): Uint8Array {
  const n = new DataView(file.buffer, file.byteOffset).getUint32(0, true);
  const text = new TextDecoder().decode(file.subarray(8, 8 + n));
  const json = new TextEncoder().encode(edit(text));
  const out = new Uint8Array(8 + json.length + file.length - 8 - n);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(file.subarray(8 + n), 8 + json.length);
  return out;
}

describe('fuzzing the safetensors reader', () => {
  it(`${CASES} mangled files: each loads consistently or throws SafetensorsError`, async () => {
    const seeds = [
      serializeSafetensors(
        {
          a: { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
          b: { dtype: 'U8', shape: [3], data: Uint8Array.of(1, 2, 3) },
          c: { dtype: 'I64', shape: [1], data: BigInt64Array.of(-1n) },
          d: { dtype: 'F16', shape: [0], data: new Uint16Array(0) },
        },
        { epoch: '1' },
      ),
      serializeSafetensors({ x: { dtype: 'F64', shape: [], data: Float64Array.of(0.5) } }),
      serializeSafetensors({}),
    ];
    const numbers = ['0', '1', '-1', '2', '3', '4', '8', '24', '1.5', '1e400', '9007199254740993',
      '"1"', 'null', '[]', '{}', 'true'];
    const structural = ['{', '}', '[', ']', '"', ',', ':', ' '];
    const started = performance.now();
    const { loaded, rejected } = await fuzz(
      'safetensors',
      seeds,
      {
        // Swap one number in the header for another value, keeping the JSON framing valid.
        headerNumber: (rng, b) =>
          withHeader(b, (text) => {
            const spots = [...text.matchAll(/\d+/g)];
            if (spots.length === 0) return text;
            const m = spots[randInt(rng, 0, spots.length)];
            const v = numbers[randInt(rng, 0, numbers.length)];
            return text.slice(0, m.index) + v + text.slice(m.index! + m[0].length);
          }),
        // Change one JSON structural character.
        headerSyntax: (rng, b) =>
          withHeader(b, (text) => {
            const at = randInt(rng, 0, Math.max(1, text.length));
            const c = structural[randInt(rng, 0, structural.length)];
            return text.slice(0, at) + c + text.slice(at + 1);
          }),
        // Swap a dtype for another (or an unknown) one: the sizes then disagree.
        headerDtype: (rng, b) =>
          withHeader(b, (text) => {
            const names = ['F16', 'F32', 'F64', 'I32', 'I64', 'U8', 'BOOL', 'f32'];
            return text.replace(/"(F16|F32|F64|I32|I64|U8)"/, `"${names[randInt(rng, 0, 8)]}"`);
          }),
        // Random length prefixes, small and huge.
        headerLength: (rng, b) => {
          const out = b.slice();
          const v = new DataView(out.buffer);
          if (rng() < 0.5) v.setUint32(0, randInt(rng, 0, out.length + 16), true);
          else v.setUint32(4, randInt(rng, 0, 2 ** 32), true);
          return out;
        },
      },
      async (bytes) => checkSafetensors(parseSafetensors(bytes, 'fuzz.safetensors'), bytes.length),
      SafetensorsError,
    );
    expect(loaded).toBeGreaterThan(CASES / 20);
    expect(rejected).toBeGreaterThan(CASES / 2);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
