// Scratch timing of matmul tilings and conv2d: `npx tsx tools/probe-matmul.ts [mm|conv] [reps]`.

import { readdirSync, readFileSync } from 'node:fs';
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

let median = 0;
let lastCpu = 0;

/**
 * CPU nanoseconds spent by every thread but the main one (which only spins while Dawn
 * waits): lavapipe's work, unlike wall time, barely moves when other processes load the
 * machine. Linux only (schedstat).
 */
function workerCpuNs(): number {
  let ns = 0;
  for (const t of readdirSync('/proc/self/task')) {
    if (Number(t) === process.pid) continue;
    try {
      ns += Number(readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between listing and reading.
    }
  }
  return ns;
}

/** Least wall time of `reps` runs of build() + read, after two warm-up runs. */
async function timeIt(e: Engine, build: () => Tensor[], reps: number): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < reps + (reps > 1 ? 2 : 0); r++) {
    const outs = build();
    const c0 = workerCpuNs();
    const t0 = performance.now();
    await e.run([], outs);
    if (r >= (reps > 1 ? 2 : 0)) times.push(performance.now() - t0);
    lastCpu = (workerCpuNs() - c0) / 1e6;
  }
  times.sort((x, y) => x - y);
  // The machine is shared: the minimum is the least disturbed run; the median is reported too.
  median = times[Math.floor(times.length / 2)];
  return times[0];
}

async function probeMatmul(e: Engine, reps: number, tilings: MatmulTiling[]): Promise<void> {
  const n = Number(process.env.N ?? 1024);
  const a = e.tensor(rand(n * n, 1), [n, n]);
  const b = e.tensor(rand(n * n, 2), [n, n]);
  // Round-robin over the tilings so that load from other processes hits them all alike.
  const times: number[][] = tilings.map(() => []);
  const cpu: number[][] = tilings.map(() => []);
  for (let r = 0; r < reps + 1; r++) {
    for (const [i, t] of tilings.entries()) {
      const ms = await timeIt(e, () => [matmul(a, b, { tiling: t })], 1);
      if (r > 0) {
        times[i].push(ms);
        cpu[i].push(lastCpu);
      }
    }
  }
  for (const [i, t] of tilings.entries()) {
    const ts = times[i].sort((x, y) => x - y);
    const cs = cpu[i].sort((x, y) => x - y);
    const gflops = (2 * n ** 3) / (ts[0] * 1e6);
    console.log(`${JSON.stringify(t)}  ${ts[0].toFixed(1)} ms (median ` +
      `${ts[Math.floor(ts.length / 2)].toFixed(1)})  ${gflops.toFixed(2)} GFLOP/s; worker CPU ` +
      `${cs[0].toFixed(1)} ms (${((4 * n ** 3) / (cs[0] * 1e6)).toFixed(2)} GFLOP/s on 2 cores)`);
  }
}

async function probeConv(e: Engine, reps: number): Promise<void> {
  const { conv2d, conv2dBackwardInput, conv2dBackwardWeight } = await import('../src/ops/conv.js');
  type ConvTiling = import('../src/ops/conv.js').ConvTiling;
  const tilings: (ConvTiling | undefined)[] = process.env.TILINGS
    ? JSON.parse(process.env.TILINGS) : [undefined];
  const cases = [
    { x: [64, 1, 28, 28], w: [32, 1, 3, 3], stride: 1, padding: 1 },
    { x: [64, 32, 14, 14], w: [64, 32, 3, 3], stride: 2, padding: 1 },
  ];
  const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
  for (const c of cases) {
    const x = e.tensor(rand(size(c.x), 3), c.x, { requiresGrad: true });
    const w = e.tensor(rand(size(c.w), 4), c.w, { requiresGrad: true });
    const bias = e.tensor(rand(c.w[0], 5), [c.w[0]], { requiresGrad: true });
    const geo = { stride: c.stride, padding: c.padding };
    const yShape = conv2d(x, w, bias, geo).shape;
    const dy = e.tensor(rand(size([...yShape]), 6), yShape);
    for (const tiling of tilings) {
      const o = { ...geo, tiling };
      const parts: [string, () => Tensor[]][] = [
        ['forward', () => [conv2d(x, w, bias, o)]],
        ['dx', () => [conv2dBackwardInput(dy, w, c.x, o)]],
        ['dw', () => [conv2dBackwardWeight(dy, x, c.w, o)]],
        // The upstream gradient is given, as it is inside a network.
        ['forward+backward', () => {
          const y = conv2d(x, w, bias, o);
          return grad(y, [x, w, bias], { seed: dy }) as Tensor[];
        }],
        ['forward+backward without dx', () => {
          const y = conv2d(x, w, bias, o);
          return grad(y, [w, bias], { seed: dy }) as Tensor[];
        }],
      ];
      const line: string[] = [];
      for (const [name, build] of parts) {
        const ms = await timeIt(e, build, reps);
        line.push(`${name} ${ms.toFixed(1)} ms (median ${median.toFixed(1)}, cpu ` +
          `${lastCpu.toFixed(1)})`);
      }
      console.log(`conv x ${JSON.stringify(c.x)} w ${JSON.stringify(c.w)} stride ${c.stride} ` +
        `${tiling ? JSON.stringify(tiling) : 'default'}:\n  ${line.join('\n  ')}`);
    }
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
