// Argument checks of the reference's public entry points. Each error names the function, the
// argument and what is wrong with it, showing the value it got. Not re-exported by index.ts.

/** A value as an error message shows it: strings quoted, bigints with their n, arrays short. */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (v === null || typeof v !== 'object') return String(v);
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  let text: string | undefined;
  if (Array.isArray(v)) {
    // Element by element, so NaN shows as NaN (JSON would write null).
    text = `[${v.slice(0, 20).map(show).join(', ')}${v.length > 20 ? ', ...' : ''}]`;
  } else {
    try {
      text = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
    } catch {
      // A cycle: fall through to the kind of object.
    }
  }
  if (text === undefined) return Object.prototype.toString.call(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** What a non-number element is, for "data[3] is string "a", not a number". */
function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  if (typeof v === 'bigint') return `bigint ${v}n`;
  return typeof v;
}

/** Refuses anything but an array of non-negative integers. */
export function checkShape(what: string, shape: unknown, arg = 'shape'): void {
  if (!Array.isArray(shape)) {
    throw new Error(`${what}: ${arg} must be an array of non-negative integers, ` +
      `got ${show(shape)}`);
  }
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new Error(`${what}: ${arg} ${show(shape)} must hold non-negative integers`);
    }
  }
}

/**
 * Refuses anything but numbers: an array (or array-like) whose every element is a number, or a
 * typed array other than the BigInt ones. A string or an object would become NaN in a
 * Float64Array, and a bigint throws deep inside arithmetic, so neither gets that far.
 */
export function checkNumbers(what: string, arg: string, data: unknown): void {
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    throw new Error(`${what}: ${arg} is a ${data.constructor.name}; the reference takes ` +
      'numbers (convert with Float64Array.from(data, Number))');
  }
  if (ArrayBuffer.isView(data) && !(data instanceof DataView)) return;
  const length = data !== null && typeof data === 'object'
    ? (data as { length?: unknown }).length : undefined;
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0 ||
    data instanceof DataView) {
    throw new Error(`${what}: ${arg} must be an array or typed array of numbers, ` +
      `got ${show(data)}`);
  }
  const items = data as ArrayLike<unknown>;
  for (let i = 0; i < length; i++) {
    if (typeof items[i] !== 'number') {
      throw new Error(`${what}: ${arg}[${i}] is ${kindOf(items[i])}, not a number`);
    }
  }
}

/** A finite number >= 0 (a tolerance, a magnitude), or an error naming it. */
export function checkNonNegative(what: string, arg: string, v: unknown, hint = ''): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new Error(`${what}: ${arg} must be a finite number >= 0, got ${show(v)}${hint}`);
  }
  return v;
}

/**
 * Refuses a tolerance whose atol or rtol is missing, NaN, infinite or negative: with a NaN
 * bound every comparison is false, and an element test written as "fails when the error
 * exceeds the bound" would pass everything.
 */
export function checkTolerance(what: string, tol: unknown): void {
  const example = ' (give both atol and rtol, e.g. { ...TOL.f32Elementwise })';
  if (tol === null || typeof tol !== 'object') {
    throw new Error(`${what}: options must be an object holding atol and rtol, ` +
      `got ${show(tol)}${example}`);
  }
  const { atol, rtol } = tol as { atol?: unknown; rtol?: unknown };
  checkNonNegative(what, 'atol', atol, atol === undefined ? example : '');
  checkNonNegative(what, 'rtol', rtol, rtol === undefined ? example : '');
}
