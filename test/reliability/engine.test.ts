// The engine over a long time and under overlap: a disposed engine lets Node exit at once
// without spinning; 1000 training steps of a small MLP allocate nothing after the first
// and keep every pool flat; readbacks in flight and per-dispatch uniforms never mix (the
// basic cases are in test/graph/engine.test.ts; these add growth, reuse and overlap).

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { grad, type Engine, type Tensor } from '../../src/node.js';
import * as ew from '../../src/ops/elementwise.js';
import { matmul } from '../../src/ops/matmul.js';
import { softCrossEntropy } from '../../src/ops/softmax.js';
import { SGD } from '../../src/optim/sgd.js';
import { mulberry32 } from '../../src/reference/random.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine({
  shaders: {
    // A type error (u32 into an f32 array): the pipeline never compiles.
    broken: [
      '@group(0) @binding(0) var<storage, read_write> out: array<f32>;',
      '@compute @workgroup_size(1)',
      'fn main() { out[0] = 1u; }',
    ].join('\n'),
  },
});
const ROOT = join(import.meta.dirname, '..', '..');

interface ChildEvent {
  kind: string;
  t: number;
  cpu?: { user: number; system: number };
}

describe('dispose', () => {
  it('Node exits promptly after engine.dispose(), and idles without burning CPU', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'tools/crash-child.ts', 'dispose'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const events: ChildEvent[] = [];
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    const closed = Date.now();
    for (const line of out.split('\n')) if (line) events.push(JSON.parse(line) as ChildEvent);
    expect(code, err).toBe(0);
    const at = (k: string) => events.find((e) => e.kind === k)!;
    expect(events.map((e) => e.kind)).toEqual(['disposed', 'idle', 'exit']);
    const ms = (c: { user: number; system: number }) => (c.user + c.system) / 1000;
    // 500 ms with nothing scheduled: a thread polling the device would use ~500 ms of CPU.
    const idleCpu = ms(at('idle').cpu!);
    expect(idleCpu).toBeLessThan(50);
    // Nothing keeps the event loop alive once the timer has fired: exit follows at once.
    expect(at('exit').t - at('idle').t).toBeLessThan(500);
    expect(closed - at('idle').t).toBeLessThan(3000);
    process.stderr.write(`dispose: ${idleCpu.toFixed(1)} ms CPU in 500 ms idle, ` +
      `${ms(at('exit').cpu!).toFixed(1)} ms from dispose to exit, process gone ` +
      `${closed - at('idle').t} ms after the idle timer\n`);
  }, 60_000);
});

/** A 2-layer MLP (16 -> 32 -> 10) with softmax cross-entropy, one SGD step per run. */
function mlp(e: Engine) {
  const rng = mulberry32(7);
  const randn = (n: number, s: number) => Float32Array.from({ length: n }, () =>
    (rng() + rng() + rng() - 1.5) * s);
  const x = e.tensor(randn(64 * 16, 1), [64, 16], { name: 'x' });
  const labels = new Float32Array(64 * 10);
  for (let i = 0; i < 64; i++) labels[i * 10 + (i % 10)] = 1;
  const q = e.tensor(labels, [64, 10], { name: 'targets' });
  const w1 = e.param(randn(32 * 16, 0.5), [32, 16], 'w1');
  const b1 = e.param(new Float32Array(32), [32], 'b1');
  const w2 = e.param(randn(10 * 32, 0.5), [10, 32], 'w2');
  const params = [w1, b1, w2];
  const opt = new SGD({ lr: 0.1, momentum: 0.9, names: ['w1', 'b1', 'w2'] });
  return (): Promise<Float32Array[]> => {
    const h = matmul(x, w1, { transB: true, bias: b1, relu: true });
    const loss = softCrossEntropy(matmul(h, w2, { transB: true }), q);
    opt.step(params, grad(loss, params));
    return e.run([], [loss]);
  };
}

describe('a long run', () => {
  it('1000 steps: no allocation after step 1, live buffers and bytes flat', async () => {
    const e = engine();
    const step = mlp(e);
    const pools = e.gpu.poolStats;
    const snapshot = () => JSON.stringify({
      allocations: [pools.tensor.allocations, pools.uniforms.allocations,
        pools.readback.allocations],
      live: [pools.tensor.live, pools.uniforms.live, pools.readback.live],
      liveBytes: [pools.tensor.liveBytes, pools.uniforms.liveBytes, pools.readback.liveBytes],
    });
    const first = (await step())[0][0];
    const after1 = snapshot();
    const submits = e.gpu.counters.submits;
    const t0 = performance.now();
    let loss = first;
    const changed: number[] = [];
    for (let i = 1; i < 1000; i++) {
      loss = (await step())[0][0];
      if (snapshot() !== after1) changed.push(i);
    }
    const ms = performance.now() - t0;
    expect(changed.slice(0, 5), `pools changed after steps ${changed.slice(0, 5)}: ` +
      `${after1} -> ${snapshot()}`).toEqual([]);
    // One submission per step, and the steps did train.
    expect(e.gpu.counters.submits - submits).toBe(999);
    expect(loss).toBeLessThan(first / 4);
    process.stderr.write(`long run: 1000 steps in ${(ms / 1000).toFixed(2)} s, loss ` +
      `${first.toFixed(3)} -> ${loss.toFixed(4)}, pools ${after1}\n`);
  });
});

describe('overlap', () => {
  it('40 runs in flight, each with reads of equal-sized tensors, get their own data',
    async () => {
      const e = engine();
      // Same byte size everywhere: every readback draws from one staging size class.
      const xs = Array.from({ length: 40 }, (_, k) =>
        e.tensor(Float32Array.from({ length: 300 }, (_, i) => k * 1000 + i), [300]));
      const pending = xs.map((x, k) => e.run([], [ew.addScalar(x, 0.5), ew.scale(x, k % 3)]));
      const values = await Promise.all(pending);
      values.forEach(([a, b], k) => {
        expect(a[0]).toBe(k * 1000 + 0.5);
        expect(a[299]).toBe(k * 1000 + 299.5);
        expect(b[7]).toBe((k * 1000 + 7) * (k % 3));
      });
    });

  it('a leaf rewritten between runs in flight: each run sees the value of its time',
    async () => {
      const e = engine();
      const x = e.tensor([1, 2, 3], [3]);
      const reads: Promise<Float32Array>[] = [];
      for (let k = 0; k < 6; k++) {
        reads.push(ew.scale(x, 10).read());
        x.write([k + 10, k + 20, k + 30]);
      }
      const got = (await Promise.all(reads)).map((v) => Array.from(v));
      expect(got).toEqual([[10, 20, 30], ...[0, 1, 2, 3, 4].map((k) =>
        [(k + 10) * 10, (k + 20) * 10, (k + 30) * 10])]);
    });

  it('300 dispatches with their own uniforms in one command buffer, then in 2 runs ' +
    'sharing one uniform buffer', async () => {
    const e = engine();
    const x = e.tensor([1, 2], [2]);
    // 300 slots of 256 bytes: the recorder's uniform staging grows several times.
    const ys: Tensor[] = Array.from({ length: 300 }, (_, k) => ew.scale(x, k));
    const one = await e.run([], ys);
    one.forEach((v, k) => expect(Array.from(v), `dispatch ${k}`).toEqual([k, 2 * k]));
    // The uniform buffer returns to the pool at submit and the next run takes it while
    // the first may still be queued: queue order keeps each run's values its own.
    const a = e.run([], [ew.addScalar(x, 100)]);
    const b = e.run([], [ew.addScalar(x, 200)]);
    const c = e.run([], [ew.addScalar(x, 300)]);
    expect((await Promise.all([a, b, c])).map(([v]) => Array.from(v)))
      .toEqual([[101, 102], [201, 202], [301, 302]]);
  });
});

describe('a run that fails before its submission', () => {
  it('leaves no value that passes for computed: asking again fails the same way', async () => {
    const e = engine();
    const x = e.tensor([1, 2], [2]);
    const [y] = e.record({
      op: 'broken', inputs: [x], outputs: [[2]],
      encode: (ctx) => ctx.dispatch({ shader: 'broken', bindings: { out: ctx.output(0) },
        workgroups: 1 }),
    });
    const z = ew.addScalar(y, 5).keep();
    await expect(z.read()).rejects.toThrow(/shader compilation failed/);
    // Before the fix z said 'ready' and read back [0, 0], with no error.
    expect([y.state, z.state]).toEqual(['pending', 'pending']);
    await expect(z.read()).rejects.toThrow(/shader compilation failed/);
    await expect(ew.scale(z, 2).read()).rejects.toThrow(/shader compilation failed/);
    // Their buffers went back: only x still holds one. (Counting the pool's live buffers
    // would also count tensors of earlier tests that the garbage collector frees meanwhile.)
    expect([y.buffer, z.buffer]).toEqual([null, null]);
    expect(x.buffer).not.toBeNull();
    // The engine goes on working.
    expect(Array.from(await ew.scale(x, 3).read())).toEqual([3, 6]);
  });
});
