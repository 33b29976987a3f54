// safetensors: exact bytes, round trips, every rejected input by its message, Python reads ours.

import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  type Tensor,
} from '../../src/io/safetensors.js';

/** A file from a header (object, or raw JSON text) and a data section, lengths as given. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** The message of the SafetensorsError `f` throws; fails the test on any other outcome. */
function stMessage(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    return (e as Error).message;
  }
  throw new Error('expected a SafetensorsError, nothing was thrown');
}

/** One tensor of each dtype, with values that catch byte-order and width mistakes. */
function sampleTensors(): Record<string, Tensor> {
  return {
    'layer1.weight': {
      dtype: 'F32',
      shape: [2, 3],
      data: Float32Array.from([0.1, -2.5, 3.75e-5, 1e30, -0, 7]),
    },
    'layer1.bias': { dtype: 'F64', shape: [3], data: Float64Array.from([Math.PI, -1e-300, 2]) },
    steps: { dtype: 'I64', shape: [2], data: BigInt64Array.from([2n ** 60n + 1n, -5n]) },
    counts: { dtype: 'I32', shape: [2, 2], data: Int32Array.from([-(2 ** 31), 0, 1, 2 ** 31 - 1]) },
    mask: { dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 128, 254, 255]) },
    // 1, -2, 0.5, 65504 (the largest finite half) as raw binary16 bits.
    half: { dtype: 'F16', shape: [2, 2], data: Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7bff]) },
    scalar: { dtype: 'F32', shape: [], data: Float32Array.from([42]) },
    empty: { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
  };
}

describe('serializeSafetensors writes the format exactly', () => {
  it('one F32 value: length prefix, JSON, space padding to 8, little-endian data', () => {
    const one: Tensor = { dtype: 'F32', shape: [1], data: Float32Array.of(1) };
    const bytes = serializeSafetensors({ a: one });
    const json = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expect(json.length).toBe(54);
    const expected = [
      ...[56, 0, 0, 0, 0, 0, 0, 0],
      ...new TextEncoder().encode(json),
      ...[0x20, 0x20],
      ...[0x00, 0x00, 0x80, 0x3f],
    ];
    expect(Array.from(bytes)).toEqual(expected);
  });

  it('puts metadata first and every tensor on a boundary of its own element size', () => {
    const bytes = serializeSafetensors(sampleTensors(), { epoch: '3', note: 'ünïcode ✓' });
    const n = new DataView(bytes.buffer).getUint32(0, true);
    expect(n % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    expect(Object.keys(header)[0]).toBe('__metadata__');
    const size = { F16: 2, F32: 4, F64: 8, I32: 4, I64: 8, U8: 1 } as Record<string, number>;
    for (const [name, e] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const { dtype, data_offsets: [begin] } = e as { dtype: string; data_offsets: number[] };
      expect((8 + n + begin) % size[dtype]).toBe(0);
    }
  });
});

describe('parseSafetensors round trips', () => {
  it('every dtype, a scalar and an empty tensor, with metadata', () => {
    const tensors = sampleTensors();
    const metadata = { epoch: '3', note: 'ünïcode ✓', empty: '' };
    const got = parseSafetensors(serializeSafetensors(tensors, metadata), 'round.safetensors');
    expect({ ...got.metadata }).toEqual(metadata);
    expect(Object.keys(got.tensors).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const back = got.tensors[name];
      expect(back.dtype, name).toBe(t.dtype);
      expect(back.shape, name).toEqual(t.shape);
      expect(back.data.constructor, name).toBe(t.data.constructor);
      expect(Array.from(back.data as ArrayLike<number | bigint>), name).toEqual(
        Array.from(t.data as ArrayLike<number | bigint>),
      );
    }
    // -0 survives as its own bit pattern.
    expect(Object.is(got.tensors['layer1.weight'].data[4], -0)).toBe(true);
  });

  it('copies each tensor into its own aligned buffer, even from an odd offset', () => {
    const file = serializeSafetensors(sampleTensors());
    const shifted = new Uint8Array(file.length + 1);
    shifted.set(file, 1);
    const got = parseSafetensors(shifted.subarray(1), 'shifted.safetensors');
    for (const t of Object.values(got.tensors)) {
      expect(t.data.byteOffset).toBe(0);
      expect(t.data.buffer.byteLength).toBe(t.data.byteLength);
    }
    shifted.fill(0);
    expect(got.tensors.mask.data[4]).toBe(255);
  });

  it('tensor names like __proto__ and constructor are data, not prototype changes', () => {
    const tensors: Record<string, Tensor> = Object.create(null);
    // Names held in variables: as literal properties the compiler reads them as Object's.
    const [proto, ctor]: string[] = ['__proto__', 'constructor'];
    tensors[proto] = { dtype: 'U8', shape: [1], data: Uint8Array.of(7) };
    tensors[ctor] = { dtype: 'U8', shape: [1], data: Uint8Array.of(8) };
    const got = parseSafetensors(serializeSafetensors(tensors), 'proto.safetensors');
    expect(Object.keys(got.tensors).sort()).toEqual(['__proto__', 'constructor']);
    expect(got.tensors[proto].data[0]).toBe(7);
    expect(got.tensors[ctor].data[0]).toBe(8);
    expect(Object.getPrototypeOf(got.tensors)).toBeNull();
  });

  it('no tensors at all: header "{}" and nothing else', () => {
    const bytes = serializeSafetensors({});
    expect(bytes.length).toBe(16);
    expect(Object.keys(parseSafetensors(bytes, 'none').tensors)).toEqual([]);
  });

  it('reads a header that is not padded to 8 (other writers may not pad)', () => {
    const header = { x: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } };
    const file = rawFile(header, Uint8Array.of(3, 4));
    expect(parseSafetensors(file, 'u').tensors.x.data).toEqual(Uint8Array.of(3, 4));
  });
});

describe('parseSafetensors rejects bad input, naming the file and the field', () => {
  const u8 = (n: number) => new Uint8Array(n);
  const entry = (dtype: unknown, shape: unknown, offsets: unknown) => ({
    dtype,
    shape,
    data_offsets: offsets,
  });
  const cases: [string, Uint8Array, string][] = [
    [
      'a file shorter than 8 bytes',
      u8(5),
      'f: file is 5 bytes, shorter than the 8-byte header length',
    ],
    [
      'a header length over 100 MB',
      Uint8Array.of(0, 0xe1, 0xf5, 0x05, 1, 0, 0, 0),
      'f: header length 4394967296 is over the 100000000-byte limit',
    ],
    [
      'a header length past the end of the file',
      Uint8Array.of(64, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d),
      'f: header length 64 runs past the end of the file (header would end at byte 72, ' +
        'file is 10 bytes)',
    ],
    [
      'a header that is not UTF-8',
      Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe),
      'f: header is not valid UTF-8',
    ],
    ['a header that is an array', rawFile([1, 2]), 'f: header must be a JSON object, got an array'],
    ['a header that is null', rawFile('null'), 'f: header must be a JSON object, got null'],
    ['a header that is a number', rawFile('7'), 'f: header must be a JSON object, got number'],
    [
      'an entry that is not an object',
      rawFile({ w: [1, 2] }),
      'f: tensor "w": entry must be an object {dtype, shape, data_offsets}, got [1,2]',
    ],
    [
      'an unknown dtype',
      rawFile({ w: entry('BF16', [1], [0, 2]) }, u8(2)),
      'f: tensor "w": unknown dtype "BF16" (supported: F16, F32, F64, I32, I64, U8)',
    ],
    [
      'a missing dtype',
      rawFile({ w: { shape: [1], data_offsets: [0, 1] } }, u8(1)),
      'f: tensor "w": unknown dtype undefined (supported: F16, F32, F64, I32, I64, U8)',
    ],
    [
      'a negative dimension',
      rawFile({ w: entry('U8', [2, -1], [0, 2]) }, u8(2)),
      'f: tensor "w": shape must be an array of non-negative integers, got [2,-1]',
    ],
    [
      'a fractional dimension',
      rawFile({ w: entry('U8', [1.5], [0, 2]) }, u8(2)),
      'f: tensor "w": shape must be an array of non-negative integers, got [1.5]',
    ],
    [
      'a shape that is not an array',
      rawFile({ w: entry('U8', '3', [0, 3]) }, u8(3)),
      'f: tensor "w": shape must be an array of non-negative integers, got "3"',
    ],
    [
      'data_offsets with three numbers',
      rawFile({ w: entry('U8', [1], [0, 1, 2]) }, u8(1)),
      'f: tensor "w": data_offsets must be two non-negative integers [begin, end] with ' +
        'begin <= end, got [0,1,2]',
    ],
    [
      'data_offsets with begin > end',
      rawFile({ w: entry('U8', [1], [4, 3]) }, u8(4)),
      'f: tensor "w": data_offsets must be two non-negative integers [begin, end] with ' +
        'begin <= end, got [4,3]',
    ],
    [
      'data_offsets as strings',
      rawFile({ w: entry('U8', [1], ['0', '1']) }, u8(1)),
      'f: tensor "w": data_offsets must be two non-negative integers [begin, end] with ' +
        'begin <= end, got ["0","1"]',
    ],
    [
      'a byte size that does not match the shape',
      rawFile({ w: entry('F32', [2, 3], [0, 16]) }, u8(16)),
      'f: tensor "w": data_offsets [0, 16] hold 16 bytes, but F32 [2, 3] needs 24',
    ],
    [
      'a shape whose product passes 2^53',
      rawFile({ w: entry('U8', [2 ** 30, 2 ** 30, 2 ** 30], [0, 8]) }, u8(8)),
      'f: tensor "w": data_offsets [0, 8] hold 8 bytes, but U8 [1073741824, 1073741824, ' +
        '1073741824] needs over 2^53 x 1',
    ],
    [
      'a range outside the data section',
      rawFile({ w: entry('U8', [4], [2, 6]) }, u8(4)),
      'f: tensor "w": data_offsets [2, 6] run past the data section (4 bytes)',
    ],
    [
      'overlapping ranges',
      rawFile({ a: entry('U8', [4], [0, 4]), b: entry('U8', [4], [2, 6]) }, u8(6)),
      'f: tensor "b": data_offsets [2, 6] overlap tensor "a" (which ends at 4)',
    ],
    [
      'two tensors on the same bytes',
      rawFile({ a: entry('F32', [1], [0, 4]), b: entry('I32', [1], [0, 4]) }, u8(4)),
      'f: tensor "b": data_offsets [0, 4] overlap tensor "a" (which ends at 4)',
    ],
    [
      'a hole between tensors',
      rawFile({ a: entry('U8', [2], [0, 2]), b: entry('U8', [2], [3, 5]) }, u8(5)),
      'f: data section bytes [2, 3) belong to no tensor (a hole)',
    ],
    [
      'a hole at the start',
      rawFile({ a: entry('U8', [2], [1, 3]) }, u8(3)),
      'f: data section bytes [0, 1) belong to no tensor (a hole)',
    ],
    [
      'trailing bytes after the last tensor',
      rawFile({ a: entry('U8', [2], [0, 2]) }, u8(5)),
      'f: data section bytes [2, 5) belong to no tensor (trailing bytes)',
    ],
    [
      'a metadata value that is not a string',
      rawFile({ __metadata__: { epoch: 3 } }),
      'f: __metadata__.epoch must be a string, got 3',
    ],
    [
      'metadata that is an array',
      rawFile({ __metadata__: ['a'] }),
      'f: __metadata__ must be an object of strings, got ["a"]',
    ],
  ];
  for (const [what, bytes, message] of cases) {
    it(what, () => {
      expect(stMessage(() => parseSafetensors(bytes, 'f'))).toBe(message);
    });
  }

  it('a header that is not JSON shows the parser message', () => {
    expect(stMessage(() => parseSafetensors(rawFile('{"a": '), 'bad.safetensors'))).toMatch(
      /^bad\.safetensors: header is not valid JSON: /,
    );
  });
});

describe('parseSafetensors survives hostile nesting', () => {
  it('a shape nested 100 000 deep is its own error, not a stack overflow', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const text = `{"x":{"dtype":"F32","shape":${deep},"data_offsets":[0,0]}}`;
    expect(stMessage(() => parseSafetensors(rawFile(text), 'deep.safetensors')))
      .toMatch(/deep\.safetensors: .*shape/);
  });
});

describe('serializeSafetensors rejects bad tensors', () => {
  const who = 'serializeSafetensors';
  it('data of the wrong array type for the dtype', () => {
    const t = { w: { dtype: 'F32', shape: [2], data: Float64Array.of(1, 2) } } as never;
    expect(stMessage(() => serializeSafetensors(t))).toBe(
      `${who}: tensor "w": dtype F32 needs a Float32Array, got Float64Array`,
    );
  });
  it('a shape that does not match the data length', () => {
    const w: Tensor = { dtype: 'U8', shape: [2, 2], data: new Uint8Array(3) };
    const t = { w };
    expect(stMessage(() => serializeSafetensors(t))).toBe(
      `${who}: tensor "w": shape [2, 2] holds 4 values, data has 3`,
    );
  });
  it('an unknown dtype', () => {
    const t = { w: { dtype: 'BF16', shape: [1], data: new Uint16Array(1) } } as never;
    expect(stMessage(() => serializeSafetensors(t))).toBe(
      `${who}: tensor "w": unknown dtype "BF16" (supported: F16, F32, F64, I32, I64, U8)`,
    );
  });
  it('the reserved name __metadata__', () => {
    const t: Record<string, Tensor> = {
      __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) },
    };
    expect(stMessage(() => serializeSafetensors(t))).toBe(
      `${who}: "__metadata__" is reserved and cannot name a tensor`,
    );
  });
  it('a metadata value that is not a string', () => {
    expect(stMessage(() => serializeSafetensors({}, { lr: 0.1 } as never))).toBe(
      `${who}: __metadata__.lr must be a string, got 0.1`,
    );
  });
});

const PYTHON = '/usr/bin/python3';
function pythonHas(module: string): boolean {
  return spawnSync(PYTHON, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;
}
const havePython = pythonHas('json');
const haveTorch = havePython && pythonHas('torch');

// Reads the header with json + struct and each tensor either with torch.frombuffer or, with
// no torch, with the standard library's struct; prints {name: {dtype, shape, values}}.
const PY_READER = String.raw`
import json, struct, sys
use_torch = sys.argv[2] == 'torch'
raw = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', raw[:8])
header = json.loads(raw[8:8 + n].decode('utf-8'))
data = raw[8 + n:]
fmt = {'F16': 'e', 'F32': 'f', 'F64': 'd', 'I32': 'i', 'I64': 'q', 'U8': 'B'}
out = {}
for name, e in header.items():
    if name == '__metadata__':
        out[name] = e
        continue
    b, f = e['data_offsets']
    chunk = data[b:f]
    if use_torch:
        import torch
        tdt = {'F16': torch.float16, 'F32': torch.float32, 'F64': torch.float64,
               'I32': torch.int32, 'I64': torch.int64, 'U8': torch.uint8}[e['dtype']]
        t = torch.frombuffer(bytearray(chunk), dtype=tdt) if chunk else torch.empty(0, dtype=tdt)
        t = t.reshape(e['shape'])
        vals = t.flatten().tolist()
        shape = list(t.shape)
    else:
        k = fmt[e['dtype']]
        vals = list(struct.unpack('<%d%s' % (len(chunk) // struct.calcsize(k), k), chunk))
        shape = e['shape']
    if e['dtype'] == 'I64':
        vals = [str(v) for v in vals]
    out[name] = {'dtype': e['dtype'], 'shape': shape, 'values': vals}
print(json.dumps(out))
`;

/** What Python should print for sampleTensors(): F16 decoded, I64 as decimal strings. */
function expectedFromPython(tensors: Record<string, Tensor>): Record<string, unknown> {
  const half: Record<number, number> = { 0x3c00: 1, 0xc000: -2, 0x3800: 0.5, 0x7bff: 65504 };
  const out: Record<string, unknown> = { __metadata__: { source: 'swavgpu' } };
  for (const [name, t] of Object.entries(tensors)) {
    const values = Array.from(t.data as ArrayLike<number | bigint>, (v) =>
      t.dtype === 'I64' ? String(v) : t.dtype === 'F16' ? half[v as number] : v,
    );
    out[name] = { dtype: t.dtype, shape: t.shape, values };
  }
  return out;
}

async function readWithPython(mode: 'torch' | 'struct'): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'swavgpu-st-'));
  try {
    const tensors = sampleTensors();
    const path = join(dir, 'sample.safetensors');
    await writeFile(path, serializeSafetensors(tensors, { source: 'swavgpu' }));
    const run = spawnSync(PYTHON, ['-c', PY_READER, path, mode], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const got = JSON.parse(run.stdout);
    // Exact, -0 included: Python's json writes -0.0 and JSON.parse keeps the sign.
    expect(got).toEqual(expectedFromPython(tensors));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('Python reads the files we write', () => {
  it.skipIf(!havePython)(
    `with json + struct only${havePython ? '' : ` (skipped: no ${PYTHON})`}`,
    () => readWithPython('struct'),
  );
  it.skipIf(!haveTorch)(
    `with torch.frombuffer${haveTorch ? '' : ' (skipped: python3 cannot import torch; ' +
      'apt-get install python3-torch)'}`,
    () => readWithPython('torch'),
  );
});
