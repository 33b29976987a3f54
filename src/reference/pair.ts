// Window options as the engine's conv2d and maxPool2d take them: one number for both axes
// or an [h, w] pair, read into a checked pair of integers.

/** One number for both axes, or [h, w]. */
export type Pair = number | readonly [number, number];

/**
 * `v` as [h, w] (`dflt` when undefined). Anything but an integer >= `min` or a pair of
 * them is an error naming the op, the option, the value and `context` (the shapes).
 */
export function pairOf(op: string, name: string, v: unknown, min: number,
  dflt: readonly [number, number], context: string): [number, number] {
  if (v === undefined) return [dflt[0], dflt[1]];
  const p = typeof v === 'number' ? [v, v] : Array.isArray(v) && v.length === 2 ? v : null;
  if (!p || !p.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= min)) {
    throw new Error(`${op}: ${name} must be an integer >= ${min} or a pair [h, w] of them, ` +
      `got ${JSON.stringify(v)} (${context})`);
  }
  return [p[0] as number, p[1] as number];
}
