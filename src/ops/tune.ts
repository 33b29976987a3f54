// Per-adapter choice of tiling by timing: what is fast on a CPU driver (register tiles, no
// workgroup memory) is slow on a GPU and the other way round, and adapter names do not
// say enough. Each candidate runs the same product a few times; the fastest median wins
// and is kept on the context (and, in Node, cached on disk per adapter by node.ts).

import type { Engine } from '../graph/engine.js';
import { debug } from '../gpu/debug.js';
import { matmul, REGISTER_TILING, SHARED_TILING, type MatmulTiling } from './matmul.js';

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
  /** Timed repetitions per candidate after one warm-up; default 3. */
  reps?: number;
}

export interface TuneResult {
  choice: MatmulTiling;
  /** Median milliseconds of each candidate, in MATMUL_CANDIDATES order. */
  ms: number[];
}

/** Times every candidate tiling and sets the fastest as this adapter's matmul tiling. */
export async function tuneMatmul(engine: Engine, opts: TuneOptions = {}): Promise<TuneResult> {
  const n = opts.size ?? 384;
  const reps = opts.reps ?? 3;
  const data = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const a = engine.tensor(data, [n, n], { name: 'tune a' });
  const b = engine.tensor(data, [n, n], { name: 'tune b' });
  const ms: number[] = [];
  try {
    for (const tiling of MATMUL_CANDIDATES) {
      await matmul(a, b, { tiling }).read().then(() => undefined, () => undefined);
      const times: number[] = [];
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        await engine.run([], [matmul(a, b, { tiling })]);
        times.push(performance.now() - t0);
      }
      times.sort((x, y) => x - y);
      ms.push(times[Math.floor(times.length / 2)]);
    }
  } finally {
    a.dispose();
    b.dispose();
  }
  const best = ms.indexOf(Math.min(...ms));
  const choice = MATMUL_CANDIDATES[best];
  engine.gpu.tuned.set('matmul', choice);
  debug(1, `tuned matmul on ${engine.gpu.adapterInfo}: ${ms.map((m) => m.toFixed(1)).join(', ')} ` +
    `ms -> ${JSON.stringify(choice)}`);
  return { choice, ms };
}
