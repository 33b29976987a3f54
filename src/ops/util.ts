// Shared argument checks and shape arithmetic of the ops: every check throws
// OpArgumentError naming the op, the rule and the shapes it got, before any GPU work.

import { OpArgumentError, NotSupportedError } from '../gpu/errors.js';
import { Tensor, shapeStr, type Shape } from '../graph/tensor.js';
import type { BufferRange } from '../gpu/context.js';

export function fail(op: string, message: string): never {
  throw new OpArgumentError(`${op}: ${message}`);
}

/**
 * A value as an error message shows it: strings quoted, so that "0.5" and 0.5 differ;
 * -0, NaN, bigints and undefined as written in code; arrays and plain objects by their
 * first few entries; anything else by its kind (a Tensor with its name and shape).
 */
export function showValue(v: unknown): string {
  const text = show(v, 2);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function show(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'string': return JSON.stringify(v);
    case 'number': return Object.is(v, -0) ? '-0' : String(v);
    case 'bigint': return `${v}n`;
    case 'symbol': return v.toString();
    case 'function': return v.name ? `a function ${v.name}` : 'a function';
    case 'object': break;
    default: return String(v);
  }
  if (v === null) return 'null';
  if (v instanceof Tensor) return `a Tensor (${v.describe()})`;
  const more = (n: number) => (n > 6 ? ', ...' : '');
  if (Array.isArray(v)) {
    if (depth === 0) return '[...]';
    return `[${v.slice(0, 6).map((e) => show(e, depth - 1)).join(', ')}${more(v.length)}]`;
  }
  if (!isLiteralObject(v)) {
    const kind = (v as object).constructor?.name ?? 'object';
    return ArrayBuffer.isView(v) && 'length' in v ? `a ${kind} of ${v.length}` : `a ${kind}`;
  }
  const keys = Object.keys(v);
  if (keys.length === 0) return '{}';
  if (depth === 0) return '{...}';
  const items = keys.slice(0, 6).map((k) => `${k}: ${show(v[k], depth - 1)}`);
  return `{ ${items.join(', ')}${more(keys.length)} }`;
}

/** An object written as a literal ({ ... }) or made by Object.create(null). */
function isLiteralObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * An options object: a literal, an Object.create(null), an instance of a class of the
 * caller's or an object of another realm (an iframe, a vm context), each read by its own
 * enumerable keys; not an array, a typed array, a tensor or a built-in such as a Map or a
 * Date, whose entries are not keys (a Map of { stride: 2 } would read as no options).
 */
function isOptionsObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !(v instanceof Tensor) &&
    Object.prototype.toString.call(v) === '[object Object]';
}

export function checkTensor(op: string, name: string, t: unknown): asserts t is Tensor {
  if (!(t instanceof Tensor)) fail(op, `${name} must be a Tensor, got ${showValue(t)}`);
}

export function checkRank(op: string, name: string, t: Tensor, ranks: number[]): void {
  checkTensor(op, name, t);
  if (!ranks.includes(t.rank)) {
    fail(op, `${name} must have rank ${ranks.join(' or ')}, got ${t.describe()}`);
  }
}

export function checkSameShape(op: string, a: Tensor, b: Tensor, an = 'a', bn = 'b'): void {
  if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    fail(op, `${an} and ${bn} must have the same shape, got ${shapeStr(a.shape)} and ` +
      `${shapeStr(b.shape)}`);
  }
}

export function checkFinite(op: string, name: string, v: unknown, rule?: (x: number) => boolean,
  ruleText?: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    fail(op, `${name} must be a finite number, got ${showValue(v)}`);
  }
  if (rule && !rule(v)) fail(op, `${name} ${ruleText}, got ${showValue(v)}`);
  return v;
}

export function checkInt(op: string, name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    fail(op, `${name} must be an integer >= ${min}, got ${showValue(v)}`);
  }
  return v;
}

export function checkFlag(op: string, name: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') fail(op, `${name} must be true or false, got ${showValue(v)}`);
  return v;
}

/** One of a fixed set of strings: 'auto', 'small' or 'passes'. */
export function checkChoice<T extends string>(op: string, name: string, v: unknown,
  choices: readonly T[]): T {
  if (!choices.includes(v as T)) {
    const list = choices.map((c) => `'${c}'`);
    fail(op, `${name} must be ${list.slice(0, -1).join(', ')} or ${list.at(-1)}, got ` +
      showValue(v));
  }
  return v as T;
}

/**
 * The keys of an options interface, written once as { key: true, ... }: the compiler
 * refuses a key the interface lacks and asks for every key it has.
 */
export function optionKeys<T>(keys: Record<keyof T, true>): readonly string[] {
  return Object.keys(keys);
}

/** How an op takes its options object, for checkOptions and the messages it writes. */
export interface OptionsForm {
  /** The call as messages show it, `{}` where the options go: 'sinkhorn(scores, {})'. */
  call: string;
  /** Every key the op reads. */
  keys: readonly string[];
  /**
   * The keys that values passed one by one in the options' place would stand for, in the
   * order of the habit they come from (the reference's sinkhorn(scores, eps, iters),
   * PyTorch's conv2d(x, w, bias, stride, padding, dilation)): the message then shows the
   * object the caller meant.
   */
  positional?: readonly string[];
  /** Whether the options may be left out; default true. */
  optional?: boolean;
}

/**
 * Refuses arguments past an op's last (`call` shows its form): plain JavaScript would drop
 * them, and what a caller meant by one (a dim, as in PyTorch's softmax(x, dim)) would be
 * silently lost.
 */
export function checkArity(op: string, args: ArrayLike<unknown>, max: number, call: string):
  void {
  const extra = Array.from(args).slice(max);
  while (extra.length && extra.at(-1) === undefined) extra.pop();
  if (extra.length) {
    fail(op, `takes at most ${max} arguments, as in ${call}; got ${extra.map(showValue)
      .join(', ')} after them`);
  }
}

/**
 * Checks the options argument `args[at]` of an op called from JavaScript, where nothing
 * else does: it must be left out or a plain object of known keys, and nothing may follow
 * it. Values passed one by one (sinkhorn(x, 0.5, 10)), an unknown key ({ strides: 2 },
 * a close known key suggested) and trailing arguments are refused; a silent default
 * would give other numbers than the caller asked for.
 */
export function checkOptions(op: string, args: ArrayLike<unknown>, at: number,
  form: OptionsForm): void {
  const opts = args[at];
  const extra = Array.from(args).slice(at + 1);
  const optional = form.optional ?? true;
  if (isOptionsObject(opts) && extra.every((v) => v === undefined)) {
    checkKeys(op, 'options', opts, form.keys);
    return;
  }
  if (opts === undefined && optional && extra.every((v) => v === undefined)) return;
  const call = (inner: string) => form.call.replace('{}', `{ ${inner} }`);
  if (isOptionsObject(opts)) {
    fail(op, `the options object must be the last argument, as in ${call('...')}; got ` +
      `${extra.map(showValue).join(', ')} after it`);
  }
  const values = [opts, ...extra];
  while (values.length > 1 && values.at(-1) === undefined) values.pop();
  if (values.length === 1 && opts === undefined) {
    fail(op, `options are required, as in ${call(form.keys.join(', '))}`);
  }
  const got = values.length > 1 ? `${values.map(showValue).join(', ')} in their place` :
    showValue(opts);
  // Numbers read as the values of the habit's keys; other things are not guessed at.
  const named = form.positional && values.length <= form.positional.length &&
    values.every((v) => typeof v === 'number');
  const example = named ? values.map((v, i) => `${form.positional![i]}: ${showValue(v)}`)
    : form.keys;
  fail(op, `options must be one object, as in ${call(example.join(', '))}; got ${got}`);
}

/** A plain object whose keys are all among `keys` (a nested options object included). */
export function checkKeys(op: string, name: string, v: unknown, keys: readonly string[]): void {
  if (!isOptionsObject(v)) {
    fail(op, `${name} must be an object with keys among ${keys.join(', ')}, got ` +
      showValue(v));
  }
  for (const key of Object.keys(v)) {
    if (keys.includes(key)) continue;
    const near = closestKey(key, keys);
    const hint = near ? ` (did you mean ${JSON.stringify(near)}?)` : '';
    const where = name === 'options' ? `option ${JSON.stringify(key)}` :
      `key ${JSON.stringify(key)} in ${name}`;
    fail(op, `unknown ${where}${hint}; ${name === 'options' ? op : name} takes ` +
      keys.join(', '));
  }
}

/**
 * The known key a mistyped one most likely meant, ignoring case: one within an edit or two
 * (strdie, stride; two neighbours swapped count as one edit, rleu, relu), one whose letters
 * the other holds in order (eps, epsilon; transB, transposeB), or one that starts the same
 * way for half its length (reduce, reduction); the fewest edits wins. Null when none is
 * close.
 */
function closestKey(key: string, keys: readonly string[]): string | null {
  const a = key.toLowerCase();
  let best: string | null = null;
  let bestEdits = Infinity;
  for (const known of keys) {
    const b = known.toLowerCase();
    const edits = editDistance(a, b);
    const shorter = a.length < b.length ? a : b;
    let prefix = 0;
    while (prefix < shorter.length && a[prefix] === b[prefix]) prefix++;
    const near = edits <= Math.max(1, Math.min(2, Math.floor(Math.max(a.length, b.length) / 3)))
      || (shorter.length >= 3 && (inOrder(a, b) || inOrder(b, a)))
      || prefix >= Math.max(3, shorter.length / 2);
    if (near && edits < bestEdits) {
      best = known;
      bestEdits = edits;
    }
  }
  return best;
}

/**
 * Edits between two strings: insertions, deletions, substitutions and swaps of two adjacent
 * letters (the commonest slip of the keys, bais for bias, one edit rather than two).
 */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j], before[j - 2] + 1);
      }
    }
    before = prev;
    prev = row;
  }
  return prev[b.length];
}

/** Whether the letters of `a` appear in `b` in the same order. */
function inOrder(a: string, b: string): boolean {
  let j = 0;
  for (const c of b) if (j < a.length && c === a[j]) j++;
  return j === a.length;
}

/** NumPy broadcasting: the shape both operands broadcast to. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      fail(op, `shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast ` +
        `(dimension ${i} from the left of the result: ${x} vs ${y})`);
    }
    out.push(Math.max(x, y));
  }
  return out;
}

/** Row-major strides of `shape` as seen from `outShape` (0 on broadcast dimensions). */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const pad = outShape.length - shape.length;
  const strides = new Array<number>(outShape.length).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i + pad] = shape[i] === 1 && outShape[i + pad] !== 1 ? 0 : s;
    s *= shape[i];
  }
  return strides;
}

/**
 * Merges adjacent dimensions where every operand's strides are contiguous, and pads to
 * four dimensions (outermost first) for the kernels' vec4 layout.
 */
export function collapseDims(op: string, outShape: Shape, strides: number[][]):
  { shape: number[]; strides: number[][] } {
  const shape: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let i = 0; i < outShape.length; i++) {
    const d = outShape[i];
    if (d === 1) continue;
    const last = shape.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k][last] === s[i] * d)) {
      shape[last] *= d;
      strides.forEach((s, k) => { st[k][last] = s[i]; });
    } else {
      shape.push(d);
      strides.forEach((s, k) => st[k].push(s[i]));
    }
  }
  if (shape.length > 4) {
    throw new NotSupportedError(`${op}: broadcasting over ${shape.length} distinct dimension ` +
      `groups (shape ${shapeStr(outShape)}); the kernels take at most 4`);
  }
  while (shape.length < 4) {
    shape.unshift(1);
    st.forEach((s) => s.unshift(0));
  }
  return { shape, strides: st };
}

/** Workgroups for `n` threads of `wg` each (the recorder folds past the limit). */
export function groups(n: number, wg: number): number {
  return Math.ceil(n / wg);
}

/**
 * A tensor's range widened to whole vectors of `lanes` floats, for kernels that bind it as
 * array<vecN<f32>>, or null where its buffer has no room for that or its offset is not
 * aligned (every pool buffer has room: sizes are rounded to 256 bytes).
 */
export function vectorRange(r: BufferRange, lanes: 2 | 4): BufferRange | null {
  const bytes = lanes * 4;
  const offset = r.offset ?? 0;
  const size = Math.ceil((r.size ?? r.buffer.size - offset) / bytes) * bytes;
  return offset % bytes === 0 && offset + size <= r.buffer.size ? { ...r, size } : null;
}
