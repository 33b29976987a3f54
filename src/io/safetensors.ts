// The safetensors format: a checked reader and a writer, over bytes, with no file access.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (padded with spaces),
// then the data section. The JSON maps each tensor name to
// {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data section) and may
// hold "__metadata__": {string: string}. The tensors must tile the data section exactly.

import { FileError } from './file-error.js';

/** Every failure to read or write safetensors; the message starts with the file name. */
export class SafetensorsError extends FileError {
  override name = 'SafetensorsError';
}

export type SafetensorsDtype = 'F16' | 'F32' | 'F64' | 'I32' | 'I64' | 'U8';

/** F16 values travel as their raw bits in a Uint16Array (Node 20 has no Float16Array). */
export type TensorData =
  | Uint16Array
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint8Array;

export interface Tensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

export type Metadata = Record<string, string>;

export interface ParsedSafetensors {
  /** A null-prototype record, so a tensor may be named `__proto__` or `constructor`. */
  tensors: Record<string, Tensor>;
  metadata: Metadata;
  /** Where the data section starts in the file: 8 + the header length. */
  dataOffset: number;
  /**
   * The tensors' names in the order of their bytes in the data section (the record's own
   * key order puts integer-like names such as "0" first, whatever their place).
   */
  dataOrder: string[];
}

/** Tensor data laid out, waiting for its header; see packSafetensors. */
export interface PackedSafetensors {
  entries: Record<string, { dtype: SafetensorsDtype; shape: number[]; data_offsets: number[] }>;
  data: Uint8Array;
}

/** Headers past this size are refused before they are decoded (the Rust reader's limit). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

interface DtypeInfo {
  size: number;
  make: (n: number) => TensorData;
  is: (a: unknown) => boolean;
  arrayName: string;
}

const DTYPES: Record<SafetensorsDtype, DtypeInfo> = {
  F16: { size: 2, make: (n) => new Uint16Array(n), is: (a) => a instanceof Uint16Array,
    arrayName: 'Uint16Array' },
  F32: { size: 4, make: (n) => new Float32Array(n), is: (a) => a instanceof Float32Array,
    arrayName: 'Float32Array' },
  F64: { size: 8, make: (n) => new Float64Array(n), is: (a) => a instanceof Float64Array,
    arrayName: 'Float64Array' },
  I32: { size: 4, make: (n) => new Int32Array(n), is: (a) => a instanceof Int32Array,
    arrayName: 'Int32Array' },
  I64: { size: 8, make: (n) => new BigInt64Array(n), is: (a) => a instanceof BigInt64Array,
    arrayName: 'BigInt64Array' },
  U8: { size: 1, make: (n) => new Uint8Array(n), is: (a) => a instanceof Uint8Array,
    arrayName: 'Uint8Array' },
};
const DTYPE_NAMES = Object.keys(DTYPES).join(', ');

function dtypeInfo(dtype: unknown): DtypeInfo | undefined {
  return typeof dtype === 'string' && Object.hasOwn(DTYPES, dtype)
    ? DTYPES[dtype as SafetensorsDtype]
    : undefined;
}

// The format is little-endian and typed arrays use the host's order; every WebGPU host seen
// so far is little-endian, so a big-endian one is a loud gap rather than a silent byte swap.
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
function requireLittleEndian(file: string): void {
  if (!HOST_LITTLE_ENDIAN) {
    throw new SafetensorsError(file, 'big-endian hosts are not supported (no byte swapping)');
  }
}

/** Product of a shape, or undefined past 2^53 (no data section can be that large). */
function elementCount(shape: readonly number[]): number | undefined {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return n;
}

function isShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function show(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    // Too deeply nested (or cyclic) to print: a hostile header must still get its error.
    text = Array.isArray(v) ? '[...]' : typeof v === 'object' ? '{...}' : String(v);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Lays the tensors out in one data section. Larger dtypes come first (then by name), so
 * with the header padded to 8 bytes every tensor starts aligned to its own element size.
 */
export function packSafetensors(tensors: Record<string, Tensor>): PackedSafetensors {
  const who = 'serializeSafetensors';
  requireLittleEndian(who);
  const names = Object.keys(tensors);
  for (const name of names) {
    if (name === METADATA_KEY) {
      throw new SafetensorsError(who, `"${METADATA_KEY}" is reserved and cannot name a tensor`);
    }
    const t = tensors[name];
    const info = dtypeInfo(t?.dtype);
    if (info === undefined) {
      throw new SafetensorsError(
        who,
        `tensor "${name}": unknown dtype ${show(t?.dtype)} (supported: ${DTYPE_NAMES})`,
      );
    }
    if (!isShape(t.shape)) {
      throw new SafetensorsError(
        who,
        `tensor "${name}": shape must be an array of non-negative integers, got ${show(t.shape)}`,
      );
    }
    if (!info.is(t.data)) {
      throw new SafetensorsError(
        who,
        `tensor "${name}": dtype ${t.dtype} needs a ${info.arrayName}, ` +
          `got ${t.data?.constructor?.name ?? typeof t.data}`,
      );
    }
    const n = elementCount(t.shape);
    if (n !== t.data.length) {
      throw new SafetensorsError(
        who,
        `tensor "${name}": shape [${t.shape.join(', ')}] holds ${n ?? 'over 2^53'} values, ` +
          `data has ${t.data.length}`,
      );
    }
  }
  const size = (name: string) => DTYPES[tensors[name].dtype].size;
  names.sort((a, b) => size(b) - size(a) || (a < b ? -1 : a > b ? 1 : 0));

  const entries: PackedSafetensors['entries'] = Object.create(null);
  let total = 0;
  for (const name of names) {
    const t = tensors[name];
    const begin = total;
    total += t.data.byteLength;
    entries[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [begin, total] };
  }
  const data = new Uint8Array(total);
  for (const name of names) {
    const t = tensors[name];
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    data.set(bytes, entries[name].data_offsets[0]);
  }
  return { entries, data };
}

/** Adds the header (with `metadata`, if any) in front of packed tensor data. */
export function assembleSafetensors(packed: PackedSafetensors, metadata?: Metadata): Uint8Array {
  const who = 'serializeSafetensors';
  const header: Record<string, unknown> = Object.create(null);
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const meta: Metadata = Object.create(null);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(who, `${METADATA_KEY}.${k} must be a string, got ${show(v)}`);
      }
      meta[k] = v;
    }
    header[METADATA_KEY] = meta;
  }
  for (const name of Object.keys(packed.entries)) header[name] = packed.entries[name];

  const json = new TextEncoder().encode(JSON.stringify(header));
  // Spaces pad the header so the data section starts on an 8-byte boundary.
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + packed.data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLen, true);
  view.setUint32(4, Math.floor(headerLen / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  out.set(packed.data, 8 + headerLen);
  return out;
}

/** Writes tensors (and optional string metadata) as one safetensors file. */
export function serializeSafetensors(
  tensors: Record<string, Tensor>,
  metadata?: Metadata,
): Uint8Array {
  return assembleSafetensors(packSafetensors(tensors), metadata);
}

/**
 * Reads a safetensors file, treating it as untrusted: every field is checked before use,
 * tensors must cover the data section with no overlap and no hole, and each tensor's data
 * is copied into its own (aligned) array. `fileName` is used only in error messages.
 */
export function parseSafetensors(bytes: Uint8Array, fileName: string): ParsedSafetensors {
  const fail = (detail: string, cause?: unknown) =>
    new SafetensorsError(fileName, detail, cause === undefined ? undefined : { cause });
  requireLittleEndian(fileName);
  if (bytes.length < 8) {
    throw fail(`file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  if (hi !== 0 || lo > SAFETENSORS_MAX_HEADER_BYTES) {
    const n = (BigInt(hi) << 32n) | BigInt(lo);
    throw fail(`header length ${n} is over the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit`);
  }
  const headerLen = lo;
  const dataOffset = 8 + headerLen;
  if (dataOffset > bytes.length) {
    throw fail(
      `header length ${headerLen} runs past the end of the file ` +
        `(header would end at byte ${dataOffset}, file is ${bytes.length} bytes)`,
    );
  }

  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataOffset));
  } catch (e) {
    throw fail('header is not valid UTF-8', e);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw fail(`header is not valid JSON: ${(e as Error).message}`, e);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    const kind = header === null ? 'null' : Array.isArray(header) ? 'an array' : typeof header;
    throw fail(`header must be a JSON object, got ${kind}`);
  }

  const fields = header as Record<string, unknown>;
  const dataLen = bytes.length - dataOffset;
  const metadata: Metadata = Object.create(null);
  const ranges: { name: string; dtype: SafetensorsDtype; shape: number[]; count: number;
    begin: number; end: number }[] = [];

  for (const name of Object.keys(fields)) {
    const entry = fields[name];
    if (name === METADATA_KEY) {
      if (!isPlainObject(entry)) {
        throw fail(`${METADATA_KEY} must be an object of strings, got ${show(entry)}`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') {
          throw fail(`${METADATA_KEY}.${k} must be a string, got ${show(v)}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (!isPlainObject(entry)) {
      throw fail(`${where}: entry must be an object {dtype, shape, data_offsets}, ` +
        `got ${show(entry)}`);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    const info = dtypeInfo(dtype);
    if (info === undefined) {
      throw fail(`${where}: unknown dtype ${show(dtype)} (supported: ${DTYPE_NAMES})`);
    }
    if (!isShape(shape)) {
      throw fail(`${where}: shape must be an array of non-negative integers, got ${show(shape)}`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw fail(
        `${where}: data_offsets must be two non-negative integers [begin, end] with ` +
          `begin <= end, got ${show(offsets)}`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLen) {
      throw fail(
        `${where}: data_offsets [${begin}, ${end}] run past the data section (${dataLen} bytes)`,
      );
    }
    const count = elementCount(shape);
    if (count === undefined || count * info.size !== end - begin) {
      const need = count === undefined ? `over 2^53 x ${info.size}` : `${count * info.size}`;
      throw fail(
        `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ` +
          `${dtype} [${shape.join(', ')}] needs ${need}`,
      );
    }
    ranges.push({ name, dtype: dtype as SafetensorsDtype, shape, count, begin, end });
  }

  // The tensors must tile the data section: sorted by start, each begins where the last
  // ended. An overlap lets two tensors alias; a hole hides bytes no tensor accounts for.
  // Checked before any allocation, so the arrays made below total the file's data size.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev = '';
  for (const r of ranges) {
    if (r.begin < covered) {
      throw fail(
        `tensor "${r.name}": data_offsets [${r.begin}, ${r.end}] overlap tensor "${prev}" ` +
          `(which ends at ${covered})`,
      );
    }
    if (r.begin > covered) {
      throw fail(`data section bytes [${covered}, ${r.begin}) belong to no tensor (a hole)`);
    }
    covered = r.end;
    prev = r.name;
  }
  if (covered !== dataLen) {
    throw fail(
      `data section bytes [${covered}, ${dataLen}) belong to no tensor (trailing bytes)`,
    );
  }

  const tensors: Record<string, Tensor> = Object.create(null);
  for (const r of ranges) {
    const data = DTYPES[r.dtype].make(r.count);
    new Uint8Array(data.buffer).set(bytes.subarray(dataOffset + r.begin, dataOffset + r.end));
    tensors[r.name] = { dtype: r.dtype, shape: r.shape, data };
  }
  return { tensors, metadata, dataOffset, dataOrder: ranges.map((r) => r.name) };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An F16's raw bits as a number (only called on an infinity or a NaN here). */
function f16Special(bits: number): number {
  if ((bits & 0x3ff) !== 0) return NaN;
  return bits & 0x8000 ? -Infinity : Infinity;
}

/** What firstNonFinite looks into: a safetensors Tensor, or any record of float data. */
export interface FiniteCheckInput {
  /**
   * The data's dtype. F16 data is raw bits (a Uint16Array) and is read as such only when
   * this says F16; without a dtype, Float32Array and Float64Array data is looked into.
   */
  dtype?: SafetensorsDtype;
  data: ArrayLike<number | bigint>;
}

/**
 * The first NaN or infinity among float tensors (F16 by its bits), in the record's key
 * order: name, flat index and value. Integer data is always finite and is not looked into.
 */
export function firstNonFinite(tensors: Record<string, FiniteCheckInput>):
  { name: string; index: number; value: number } | null {
  for (const [name, t] of Object.entries(tensors)) {
    const d = t.data;
    if (t.dtype === 'F16') {
      for (let i = 0; i < d.length; i++) {
        const bits = Number(d[i]);
        if ((bits & 0x7c00) === 0x7c00) return { name, index: i, value: f16Special(bits) };
      }
      continue;
    }
    const float = t.dtype === 'F32' || t.dtype === 'F64' ||
      (t.dtype === undefined && (d instanceof Float32Array || d instanceof Float64Array));
    if (!float) continue;
    for (let i = 0; i < d.length; i++) {
      const v = Number(d[i]);
      if (!Number.isFinite(v)) return { name, index: i, value: v };
    }
  }
  return null;
}
