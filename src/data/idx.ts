// IDX files (the MNIST format): a checked parser over bytes, with no file or platform access.
//
// Layout: two zero bytes, a type byte, a rank byte, then one big-endian u32 per dimension,
// then the values, big-endian, row-major. The input is treated as untrusted: every field
// is checked before it is used, and the data length must match the header exactly.

import { FileError } from '../io/file-error.js';

/** Every failure to read an IDX file; the message starts with the file name it was given. */
export class IdxError extends FileError {
  override name = 'IdxError';
}

export type IdxType = 'u8' | 'i8' | 'i16' | 'i32' | 'f32' | 'f64';
export type IdxData =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Int32Array
  | Float32Array
  | Float64Array;

export interface IdxArray {
  type: IdxType;
  shape: number[];
  /** The values, in native byte order, in a buffer of their own (never a view of the input). */
  data: IdxData;
}

/**
 * Decompresses gzip bytes. `maxBytes` is the most output a valid file can need; an
 * implementation should stop past it (a small file can inflate to gigabytes).
 */
export type Gunzip = (bytes: Uint8Array, maxBytes: number) => Uint8Array | Promise<Uint8Array>;

/** The largest data section accepted: 2 GiB, past any dataset this project reads. */
export const IDX_MAX_DATA_BYTES = 2 ** 31;
const MAX_RANK = 4;
/** Magic, then one u32 per dimension. */
const MAX_HEADER_BYTES = 4 + 4 * MAX_RANK;

const TYPES: ReadonlyMap<number, { type: IdxType; size: number }> = new Map([
  [0x08, { type: 'u8', size: 1 }],
  [0x09, { type: 'i8', size: 1 }],
  [0x0b, { type: 'i16', size: 2 }],
  [0x0c, { type: 'i32', size: 4 }],
  [0x0d, { type: 'f32', size: 4 }],
  [0x0e, { type: 'f64', size: 8 }],
]);

const hex = (n: number, width: number) => `0x${n.toString(16).padStart(width, '0')}`;

/** True when the bytes start with the gzip magic (1f 8b); an IDX file starts with 00 00. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Parses an uncompressed IDX file. `name` is used only in error messages. */
export function parseIdx(bytes: Uint8Array, name: string): IdxArray {
  if (isGzip(bytes)) {
    throw new IdxError(name, 'is gzip-compressed; decode it with decodeIdx and a gunzip');
  }
  if (bytes.length < 4) {
    throw new IdxError(name, `file is ${bytes.length} bytes, shorter than the 4-byte IDX magic`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new IdxError(name, `bad magic ${hex(magic, 8)}: an IDX file starts with two zero bytes`);
  }
  const typeByte = bytes[2];
  const kind = TYPES.get(typeByte);
  if (kind === undefined) {
    const known = [...TYPES].map(([b, t]) => `${hex(b, 2)} ${t.type}`).join(', ');
    throw new IdxError(name, `unknown data type byte ${hex(typeByte, 2)} (known: ${known})`);
  }
  const rank = bytes[3];
  if (rank < 1 || rank > MAX_RANK) {
    throw new IdxError(name, `dimension count ${rank} is outside 1..${MAX_RANK}`);
  }
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new IdxError(
      name,
      `truncated header: ${rank} dimensions need ${headerBytes} bytes, file has ${bytes.length}`,
    );
  }

  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const zero = shape.indexOf(0);
  if (zero >= 0) {
    throw new IdxError(name, `dimension ${zero} of ${shape.join('x')} is 0; each must be >= 1`);
  }
  // Each dimension is below 2^32, so each partial product below the limit times the next
  // dimension stays far under 2^53 and is exact.
  const described = describe(shape, kind.type, kind.size);
  let dataBytes = kind.size;
  for (const d of shape) {
    dataBytes *= d;
    if (dataBytes > IDX_MAX_DATA_BYTES) {
      throw new IdxError(
        name,
        `header says ${described} bytes of data, over the ${IDX_MAX_DATA_BYTES}-byte limit`,
      );
    }
  }
  const have = bytes.length - headerBytes;
  if (have < dataBytes) {
    throw new IdxError(
      name,
      `truncated: header says ${described} = ${dataBytes} bytes of data, file has ${have}`,
    );
  }
  if (have > dataBytes) {
    throw new IdxError(
      name,
      `${have - dataBytes} trailing bytes: header says ${described} = ${dataBytes} bytes ` +
        `of data, file has ${have}`,
    );
  }

  const count = dataBytes / kind.size;
  return { type: kind.type, shape, data: readValues(view, headerBytes, kind.type, count) };
}

/**
 * Parses an IDX file that may be gzip-compressed. `gunzip` defaults to the web-standard
 * DecompressionStream (present in browsers and Node >= 18); Node callers may pass zlib's.
 */
export async function decodeIdx(
  bytes: Uint8Array,
  name: string,
  gunzip: Gunzip = gunzipWithStreams,
): Promise<IdxArray> {
  if (!isGzip(bytes)) return parseIdx(bytes, name);
  let raw: Uint8Array;
  try {
    raw = await gunzip(bytes, IDX_MAX_DATA_BYTES + MAX_HEADER_BYTES);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new IdxError(name, `gunzip failed: ${why}`, { cause: e });
  }
  return parseIdx(raw, name);
}

/** Gunzip through DecompressionStream, stopping once the output passes `maxBytes`. */
export async function gunzipWithStreams(bytes: Uint8Array, maxBytes: number): Promise<Uint8Array> {
  const stream = new DecompressionStream('gzip');
  const writer = stream.writable.getWriter();
  // The writer's promises reject with the same error the reader sees; catch them here so
  // they are reported once, through the reader, and never as unhandled rejections.
  writer.write(new Uint8Array(bytes)).catch(() => {});
  writer.close().catch(() => {});
  const reader = stream.readable.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new Error(`output passes ${maxBytes} bytes, more than any valid IDX file holds`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function describe(shape: number[], type: IdxType, size: number): string {
  const dims = shape.join('x');
  return size === 1 && type === 'u8' ? dims : `${dims} ${type} (${size} bytes each)`;
}

function readValues(view: DataView, at: number, type: IdxType, n: number): IdxData {
  switch (type) {
    case 'u8':
      // A copy, so the result owns its buffer and does not pin the (larger) input.
      return new Uint8Array(view.buffer.slice(view.byteOffset + at, view.byteOffset + at + n));
    case 'i8':
      return new Int8Array(view.buffer.slice(view.byteOffset + at, view.byteOffset + at + n));
    case 'i16': {
      const out = new Int16Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt16(at + 2 * i, false);
      return out;
    }
    case 'i32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(at + 4 * i, false);
      return out;
    }
    case 'f32': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(at + 4 * i, false);
      return out;
    }
    case 'f64': {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(at + 8 * i, false);
      return out;
    }
  }
}
