// Scratch timing of matmul tilings and conv2d: `npx tsx tools/probe-matmul.ts [mm|conv] [reps]`.

import { createEngine, grad, type Engine, type Tensor } from '../src/node.js';
import { matmul, type MatmulTiling } from '../src/ops/matmul.js';
import { sum } from '../src/ops/reduce.js';

function rand(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** Median wall time of `reps` runs of build() + read, after two warm-up runs. */
async function timeIt(e: Engine, build: () => Tensor[], reps: number): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < reps + 2; r++) {
    const outs = build();
    const t0 = performance.now();
    await e.run([], outs);
    if (r >= 2) times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)];
}

async function probeMatmul(e: Engine, reps: number, tilings: MatmulTiling[]): Promise<void> {
  const n = Number(process.env.N ?? 1024);
  const a = e.tensor(rand(n * n, 1), [n, n]);
  const b = e.tensor(rand(n * n, 2), [n, n]);
  for (const t of tilings) {
    const ms = await timeIt(e, () => [matmul(a, b, { tiling: t })], reps);
    const gflops = (2 * n ** 3) / (ms * 1e6);
    console.log(`${JSON.stringify(t)}  ${ms.toFixed(1)} ms  ${gflops.toFixed(2)} GFLOP/s`);
  }
}

async function probeConv(e: Engine, reps: number): Promise<void> {
  const { conv2d } = await import('../src/ops/conv.js');
  const cases = [
    { x: [64, 1, 28, 28], w: [32, 1, 3, 3], stride: 1, padding: 1 },
    { x: [64, 32, 14, 14], w: [64, 32, 3, 3], stride: 2, padding: 1 },
  ];
  for (const c of cases) {
    const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
    const x = e.tensor(rand(size(c.x), 3), c.x, { requiresGrad: true });
    const w = e.tensor(rand(size(c.w), 4), c.w, { requiresGrad: true });
    const bias = e.tensor(rand(c.w[0], 5), [c.w[0]], { requiresGrad: true });
    const fwd = await timeIt(e, () => [conv2d(x, w, bias, c)], reps);
    const both = await timeIt(e, () => {
      const y = conv2d(x, w, bias, c);
      const gs = grad(sum(y), [x, w, bias]) as Tensor[];
      return gs;
    }, reps);
    const noDx = await timeIt(e, () => {
      const y = conv2d(x, w, bias, c);
      return grad(sum(y), [w, bias]) as Tensor[];
    }, reps);
    console.log(`conv x ${JSON.stringify(c.x)} w ${JSON.stringify(c.w)} stride ${c.stride}: ` +
      `forward ${fwd.toFixed(1)} ms, forward+backward ${both.toFixed(1)} ms ` +
      `(without dx ${noDx.toFixed(1)} ms)`);
  }
}

const [what = 'mm', repsText = '10'] = process.argv.slice(2);
const reps = Number(repsText);
const e = await createEngine();
console.log(`adapter: ${e.gpu.adapterInfo}`);
if (what === 'mm') {
  const list: MatmulTiling[] = process.env.TILINGS ? JSON.parse(process.env.TILINGS) : [
    { variant: 'register', TM: 4, TN: 4, WG_X: 8, WG_Y: 8 },
    { variant: 'register', TM: 8, TN: 4, WG_X: 8, WG_Y: 8 },
    { variant: 'register', TM: 4, TN: 8, WG_X: 8, WG_Y: 8 },
    { variant: 'register', TM: 8, TN: 8, WG_X: 8, WG_Y: 8 },
  ];
  await probeMatmul(e, reps, list);
} else {
  await probeConv(e, reps);
}
await e.dispose();
