// Per-adapter choice of tiling by timing: what is fast on a CPU driver (register tiles, no
// workgroup memory) is slow on a GPU and the other way round, and adapter names do not
// say enough. Each candidate runs the same product a few times; the fastest median wins
// and is kept on the context (and, in Node, cached on disk per adapter by node.ts).

import { isCpuAdapter } from '../gpu/acquire.js';
import type { Engine } from '../graph/engine.js';
import { debug } from '../gpu/debug.js';
import type { Tensor } from '../graph/tensor.js';
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, convTuneKey, CONV_CPU_TILING,
  CONV_GPU_TILING, CONV_SHARED_TILING, type ConvPass, type ConvTiling } from './conv.js';
import { matmul, REGISTER_TILING, SHARED_TILING, type MatmulTiling } from './matmul.js';
import { checkOptions, fail, optionKeys, showValue } from './util.js';

/** The variants tried: both families and a smaller register tile. */
export const MATMUL_CANDIDATES: readonly MatmulTiling[] = [
  REGISTER_TILING,
  { variant: 'register', TM: 4, TN: 4, WG_X: 8, WG_Y: 8 },
  SHARED_TILING,
  { variant: 'shared', TM: 4, TN: 4, WG_X: 8, WG_Y: 8, BK: 16 },
];

export interface TuneOptions {
  /** Side of the square product timed; default 384 (large enough to show tiling). */
  size?: number;
  /** Timed repetitions per candidate after one warm-up; default 5. */
  reps?: number;
}

export interface TuneResult {
  choice: MatmulTiling;
  /** Median milliseconds of each candidate, in MATMUL_CANDIDATES order. */
  ms: number[];
}

/** Timed rounds must be a whole number of at least one: a median of none is no choice. */
function checkReps(fn: string, reps: number): number {
  if (!Number.isInteger(reps) || reps < 1) {
    fail(fn, `reps must be an integer >= 1, got ${showValue(reps)}`);
  }
  return reps;
}

/** Times every candidate tiling and sets the fastest as this adapter's matmul tiling. */
export async function tuneMatmul(engine: Engine, opts: TuneOptions = {}): Promise<TuneResult> {
  checkOptions('tuneMatmul', arguments, 1, { call: 'tuneMatmul(engine, {})',
    keys: optionKeys<TuneOptions>({ size: true, reps: true }) });
  const n = opts.size ?? 384;
  const reps = checkReps('tuneMatmul', opts.reps ?? 5);
  if (!Number.isInteger(n) || n < 1) {
    fail('tuneMatmul', `size must be a positive integer, got ${showValue(n)}`);
  }
  const data = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const a = engine.tensor(data, [n, n], { name: 'tune a' });
  const b = engine.tensor(data, [n, n], { name: 'tune b' });
  const times: number[][] = MATMUL_CANDIDATES.map(() => []);
  try {
    // Each compiled and run once, then `reps` rounds that take the candidates in turn (load
    // from other processes falls on all alike); products are run, not read back.
    for (const tiling of MATMUL_CANDIDATES) {
      const y = matmul(a, b, { tiling });
      await y.read().then(() => undefined, () => undefined);
      y.dispose();
    }
    for (let r = 0; r < reps; r++) {
      for (const [i, tiling] of MATMUL_CANDIDATES.entries()) {
        const y = matmul(a, b, { tiling });
        const t0 = performance.now();
        await engine.run([y]);
        await engine.sync();
        times[i].push(performance.now() - t0);
        y.dispose();
      }
    }
  } finally {
    a.dispose();
    b.dispose();
  }
  const ms = times.map((t) => t.sort((x, y) => x - y)[Math.floor(t.length / 2)]);
  const best = ms.indexOf(Math.min(...ms));
  const choice = MATMUL_CANDIDATES[best];
  engine.gpu.tuned.set('matmul', choice);
  debug(1, `tuned matmul on ${engine.gpu.adapterInfo}: ${ms.map((m) => m.toFixed(1)).join(', ')} ` +
    `ms -> ${JSON.stringify(choice)}`);
  return { choice, ms };
}

/** Milliseconds a conv timing sample aims for. */
const SAMPLE_MS = 8;

/** One convolution to tune: its input and weight shapes and geometry. */
export interface ConvShape {
  x: readonly number[];
  w: readonly number[];
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
  dilation?: number | readonly [number, number];
  /** Whether the input gradient is needed (not for a network's first layer); default true. */
  needDx?: boolean;
}

/**
 * The variants tried per pass: the CPU and GPU register tiles, and for the forward pass both
 * kernels with each (rows serves kernels up to 3 wide; elsewhere it runs the generic one).
 */
export const CONV_CANDIDATES: Readonly<Record<ConvPass, readonly ConvTiling[]>> = {
  forward: [
    { ...CONV_CPU_TILING, forward: 'generic' },
    { ...CONV_CPU_TILING, forward: 'rows' },
    { ...CONV_CPU_TILING, forward: 'rows', VEC: 4 },
    { ...CONV_GPU_TILING, forward: 'generic' },
    { ...CONV_GPU_TILING, forward: 'rows' },
    CONV_SHARED_TILING,
  ],
  backwardInput: [CONV_CPU_TILING, CONV_GPU_TILING],
  backwardWeight: [CONV_CPU_TILING, CONV_GPU_TILING],
};

/**
 * The candidates timed for a pass on this engine's adapter: all of CONV_CANDIDATES except,
 * on CPU drivers, the workgroup-memory forward (barriers are what lavapipe runs slowest).
 */
export function convCandidates(engine: Engine, pass: ConvPass): readonly ConvTiling[] {
  const cpu = isCpuAdapter(engine.gpu.adapterInfo);
  return CONV_CANDIDATES[pass].filter((t) => !(cpu && t.forward === 'shared'));
}

export interface ConvTuneResult {
  key: string;
  choice: ConvTiling;
  /** Median milliseconds of each candidate, in convCandidates(engine, pass) order. */
  ms: number[];
}

const dims = (s: readonly unknown[]) => `[${s.join(', ')}]`;

/**
 * Checks every shape before anything is uploaded or timed: x [N, C, H, W] and w [O, C, KH,
 * KW] of positive integers with matching C, the geometry options' forms, needDx a boolean.
 * `fn` names the function the caller called (tuneConvolutions goes through tuneConv2d) in
 * the OpArgumentError a bad shape gets. The rank comes first: a 3-D x read as NCHW would
 * blame the channels instead.
 */
export function checkConvShapes(fn: string, shapes: readonly ConvShape[]): void {
  const bad = (i: number, message: string): never => fail(fn, `shapes[${i}]: ${message}`);
  if (!Array.isArray(shapes)) {
    fail(fn, 'shapes must be an array of { x, w } shapes');
  }
  shapes.forEach((s, i) => {
    if (typeof s !== 'object' || s === null) bad(i, `must be { x, w, ... }, got ${showValue(s)}`);
    for (const [name, rule] of [['x', '[N, C, H, W]'], ['w', '[O, C, KH, KW]']] as const) {
      const given: unknown = s[name];
      if (!Array.isArray(given)) {
        bad(i, `${name} must be an array ${rule}, got ${showValue(given)}`);
      }
      const v = given as unknown[];
      if (v.length !== 4) {
        bad(i, `${name} ${dims(v)} must be ${rule} (rank 4), got rank ${v.length}`);
      }
      if (!v.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 1)) {
        bad(i, `${name} ${dims(v)} must hold positive integers`);
      }
    }
    if (s.x[1] !== s.w[1]) {
      bad(i, `x ${dims(s.x)} has ${s.x[1]} channels but w ${dims(s.w)} expects ${s.w[1]} ` +
        '(x is [N, C, H, W], w is [O, C, KH, KW])');
    }
    for (const [name, min] of [['stride', 1], ['padding', 0], ['dilation', 1]] as const) {
      const v: unknown = s[name];
      if (v === undefined) continue;
      const p = typeof v === 'number' ? [v] : Array.isArray(v) && v.length === 2 ? v : null;
      if (!p || !p.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= min)) {
        bad(i, `${name} must be an integer >= ${min} or a pair [h, w] of them, got ` +
          `${JSON.stringify(v)}`);
      }
    }
    if (s.needDx !== undefined && typeof s.needDx !== 'boolean') {
      bad(i, `needDx must be true or false, got ${showValue(s.needDx)}`);
    }
  });
}

function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/**
 * Times each pass of each convolution shape under every candidate tiling and keeps the
 * fastest in the engine's tuned choices, which conv2d and its gradients then use for that
 * shape. Shapes already tuned are skipped. Candidates run round-robin, so that load from
 * other processes falls on all of them alike; each is compiled and run once, and run once
 * more to size the samples, before timing.
 */
export async function tuneConv2d(engine: Engine, shapes: readonly ConvShape[],
  opts: { reps?: number } = {}): Promise<ConvTuneResult[]> {
  checkOptions('tuneConv2d', arguments, 2, { call: 'tuneConv2d(engine, shapes, {})',
    keys: ['reps'] });
  // Five rounds: the variants of a layer are often within 10% of each other, about the
  // noise of one round here (the default model's 46 passes tune in about 12 s on lavapipe).
  const reps = checkReps('tuneConv2d', opts.reps ?? 5);
  checkConvShapes('tuneConv2d', shapes);
  const results: ConvTuneResult[] = [];
  const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  for (const shape of shapes) {
    const geo = { stride: shape.stride, padding: shape.padding, dilation: shape.dilation };
    const passes: ConvPass[] = ['forward', 'backwardWeight',
      ...(shape.needDx === false ? [] : ['backwardInput' as const])];
    const todo = passes.filter((p) => !engine.gpu.tuned.has(convTuneKey(p, shape.x, shape.w,
      geo)));
    if (!todo.length) continue;
    const x = engine.tensor(seeded(size(shape.x), 1), [...shape.x], { name: 'tune x' });
    const w = engine.tensor(seeded(size(shape.w), 2), [...shape.w], { name: 'tune w' });
    const yShape = conv2d(x, w, null, geo);
    const dy = engine.tensor(seeded(yShape.size, 3), [...yShape.shape], { name: 'tune dy' });
    yShape.dispose();
    try {
      for (const pass of todo) {
        const build = (tiling: ConvTiling): Tensor => {
          const o = { ...geo, tiling };
          if (pass === 'forward') return conv2d(x, w, null, o);
          if (pass === 'backwardInput') return conv2dBackwardInput(dy, w, shape.x, o);
          return conv2dBackwardWeight(dy, x, shape.w, o);
        };
        const candidates = convCandidates(engine, pass);
        const times: number[][] = candidates.map(() => []);
        // Small layers run several times per sample (one submission, as in a training step),
        // so that each sample lasts some milliseconds and the fixed cost of a run, and its
        // noise, do not decide the choice.
        let inner = 1;
        // Round -2 compiles, round -1 sizes the samples, then `reps` timed rounds.
        for (let r = -2; r < reps; r++) {
          const warm: number[] = [];
          for (const [i, tiling] of candidates.entries()) {
            const ys = Array.from({ length: inner }, () => build(tiling));
            const t0 = performance.now();
            // Outputs are run, not read: a copy back per output would time the readback too.
            await engine.run(ys);
            await engine.sync();
            const ms = (performance.now() - t0) / inner;
            if (r >= 0) times[i].push(ms);
            else warm.push(ms);
            for (const y of ys) y.dispose();
          }
          if (r === -1) {
            inner = Math.max(1, Math.min(16, Math.ceil(SAMPLE_MS / Math.min(...warm))));
          }
        }
        const ms = times.map((t) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)]);
        const choice = candidates[ms.indexOf(Math.min(...ms))];
        const key = convTuneKey(pass, shape.x, shape.w, geo);
        engine.gpu.tuned.set(key, choice);
        debug(1, `tuned ${key}: ${ms.map((m) => m.toFixed(2)).join(', ')} ms -> ` +
          JSON.stringify(choice));
        results.push({ key, choice, ms });
      }
    } finally {
      for (const t of [x, w, dy]) t.dispose();
    }
  }
  return results;
}
