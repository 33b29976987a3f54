// Our contestant: each case built from the engine's ops, one run per operation; the SwAV
// step through SwavTrainer, with per-step counters and a memory estimate from its graph.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createEngine, grad, quietWaitsActive, tuneConvolutions, type Engine, type Node,
  type Tensor } from '../../src/node.js';
import { loadFashionMnist } from '../../src/data/fashion-node.js';
import type { ImageDataset } from '../../src/data/dataset.js';
import { batchNorm } from '../../src/ops/batchnorm.js';
import { conv2d } from '../../src/ops/conv.js';
import { matmul } from '../../src/ops/matmul.js';
import { sinkhorn } from '../../src/ops/sinkhorn.js';
import { softCrossEntropy } from '../../src/ops/softmax.js';
import { defaultConfig, cropCount, type SwavConfig } from '../../src/swav/config.js';
import { swavLoss } from '../../src/swav/loss.js';
import { SwavModel } from '../../src/swav/model.js';
import { SwavTrainer } from '../../src/swav/trainer.js';
import { summarise, type Backend, type PreparedOp } from './worker.js';
import type { CaseSpec, RequiredBytes, ShapesReply, StepCounters } from './protocol.js';
import { convOut, randomData, sizeOf } from './data.js';

/** Records one run of `build`'s tensors and waits for the device; frees them after. */
async function runAndFree(engine: Engine, outs: Tensor[]): Promise<void> {
  await engine.run(outs);
  await engine.sync();
  for (const t of outs) t.dispose();
}

/** The engine's list of recorded, not yet scheduled nodes (private; a run replaces it). */
const pendingOf = (engine: Engine) => (engine as unknown as { pending: Node[] }).pending;

/**
 * Every node recorded while `fn` runs, in order. Nodes with no outputs (optimizer updates)
 * are reachable only through the engine's pending list, where record() appends them.
 */
function capture<T>(engine: Engine, fn: () => T): { value: T; nodes: Node[] } {
  const nodes: Node[] = [];
  const original = engine.record;
  engine.record = (spec) => {
    const outs = original.call(engine, spec);
    const pending = pendingOf(engine);
    nodes.push(pending[pending.length - 1]);
    return outs;
  };
  try {
    return { value: fn(), nodes };
  } finally {
    engine.record = original;
  }
}

/** The config the SwAV cases use: the defaults. */
export const benchConfig: SwavConfig = { ...defaultConfig };

/** The first `count` Fashion-MNIST training images, or seeded noise where they are missing. */
export async function benchImages(count: number, dir: string):
  Promise<{ data: ImageDataset; source: string }> {
  let why = 'no data folder given';
  if (dir) {
    try {
      return { data: await loadFashionMnist(dir, 'train', { limit: count }),
        source: `the first ${count} Fashion-MNIST training images` };
    } catch (e) {
      why = (e as Error).message;
    }
  }
  const images = new Uint8Array(count * 28 * 28);
  let s = 12345;
  for (let i = 0; i < images.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    images[i] = s >>> 24;
  }
  return { data: { images, labels: new Uint8Array(count), count, height: 28, width: 28 },
    source: `${count} synthetic images (${why})` };
}

/** Bytes that one step needs alive, from its recorded nodes. */
function requiredBytes(trainer: SwavTrainer, nodes: Node[]): RequiredBytes {
  const bytes = (ts: Iterable<Tensor>) => [...ts].reduce((a, t) => a + t.bytes, 0);
  const params = new Set(trainer.model.parameters());
  const buffers = new Set(trainer.model.namedBuffers().map(([, t]) => t));
  const state = trainer.optimizer.state();
  const step = state['optim.step'];
  const optimizer = new Set(Object.values(state).filter((t) => t !== step));
  step?.dispose();
  const leaves = new Set<Tensor>();
  for (const n of nodes) {
    for (const t of [...n.inputs, ...n.mutates]) if (!t.node) leaves.add(t);
  }
  const other = [...leaves].filter((t) => !params.has(t) && !buffers.has(t) && !optimizer.has(t));
  // Backward starts where grad() seeds the loss's gradient: a fill of the scalar loss.
  const start = nodes.findIndex((n) => n.op === 'fill' && n.inputs[0]?.size === 1 &&
    n.inputs[0].requiresGrad);
  const index = new Map(nodes.map((n, i) => [n, i]));
  const saved = new Set<Tensor>();
  if (start >= 0) {
    for (const n of nodes.slice(start)) {
      for (const t of n.inputs) {
        const at = t.node ? index.get(t.node) : undefined;
        if (at !== undefined && at < start) saved.add(t);
      }
    }
  }
  // Exactly sized intermediates alive from their node to their last reader, plus leaves.
  const last = new Map<Tensor, number>();
  nodes.forEach((n, i) => {
    for (const t of n.outputs) if (!last.has(t)) last.set(t, i);
    for (const t of n.inputs) if (t.node && index.has(t.node)) last.set(t, i);
  });
  const delta = new Float64Array(nodes.length + 1);
  for (const [t, end] of last) {
    const from = index.get(t.node!)!;
    delta[from] += t.bytes;
    delta[end + 1] -= t.bytes;
  }
  let live = 0;
  let peak = 0;
  for (let i = 0; i < nodes.length; i++) {
    live += delta[i];
    peak = Math.max(peak, live);
  }
  const r = {
    params: bytes(params), optimizer: bytes(optimizer), buffers: bytes(buffers),
    saved: bytes(saved), otherLeaves: bytes(other),
  };
  const total = r.params + r.optimizer + r.buffers + r.saved + r.otherLeaves;
  return { ...r, total, livenessPeak: total - r.saved + peak };
}

interface PoolLike {
  stats: { allocations: number; liveBytes: number; peakBytes: number; totalBytes: number };
}

const NO_POOL: PoolLike = { stats: { allocations: 0, liveBytes: 0, peakBytes: 0, totalBytes: 0 } };

/** The engine's three buffer pools: tensors, uniforms, readback staging (private fields). */
function pools(engine: Engine): PoolLike[] {
  const g = engine.gpu as unknown as { pool: PoolLike; uniformPool?: PoolLike;
    stagingPool?: PoolLike };
  return [g.pool, g.uniformPool ?? NO_POOL, g.stagingPool ?? NO_POOL];
}

async function prepareStep(engine: Engine, spec: Extract<CaseSpec, { kind: 'swav-step' }>):
  Promise<PreparedOp> {
  const { data, source } = await benchImages(spec.images, spec.data);
  const trainer = new SwavTrainer(engine, benchConfig, data);
  // As the training loop does with a tuning engine: the model's convolutions timed first.
  await tuneConvolutions(engine, trainer.convShapes());
  const gpu = engine.gpu;
  const tensorPool = gpu.pool;
  let steps = 0;
  const sums = { submits: 0, readbacks: 0, dispatches: 0, allocations: [0, 0, 0], peak: 0,
    encodeMs: 0 };
  let required: RequiredBytes | null = null;
  return {
    note: source,
    async run() {
      const c = { ...gpu.counters };
      const allocs = pools(engine).map((p) => p.stats.allocations);
      tensorPool.stats.peakBytes = tensorPool.stats.liveBytes;
      const { value, nodes } = capture(engine, () => trainer.runStep());
      await value.result;
      if (steps >= 1) {
        sums.submits += gpu.counters.submits - c.submits;
        sums.readbacks += gpu.counters.readbacks - c.readbacks;
        sums.dispatches += gpu.counters.dispatches - c.dispatches;
        sums.encodeMs += engine.lastRun.ms;
        pools(engine).forEach((p, i) => {
          sums.allocations[i] += p.stats.allocations - allocs[i];
        });
        sums.peak = Math.max(sums.peak, tensorPool.stats.peakBytes);
      }
      // After the counts: reading the optimizer's state makes a tensor.
      if (steps === 1) required = requiredBytes(trainer, nodes);
      steps++;
    },
    async profile() {
      const t0 = performance.now();
      const p = await engine.profile(async () => {
        await trainer.runStep().result;
        await engine.sync();
      });
      return { ms: performance.now() - t0, source: p.source,
        kernels: p.kernels.map((k) => ({ label: k.label, ms: k.ms })) };
    },
    counters(): StepCounters {
      const n = Math.max(1, steps - 1);
      return {
        steps, submitsPerStep: sums.submits / n, readbacksPerStep: sums.readbacks / n,
        dispatchesPerStep: sums.dispatches / n, encodeMsPerStep: sums.encodeMs / n,
        allocationsAfterFirst: sums.allocations.reduce((a, b) => a + b, 0),
        allocationsByPool: { tensors: sums.allocations[0], uniforms: sums.allocations[1],
          readback: sums.allocations[2] },
        peakBytes: sums.peak, poolBytes: tensorPool.stats.totalBytes,
        required: required ?? { params: 0, optimizer: 0, buffers: 0, saved: 0, otherLeaves: 0,
          total: 0, livenessPeak: 0 },
      };
    },
    async dispose() {
      await engine.sync();
      trainer.dispose();
    },
  };
}

/** The case's inputs as leaves (in `made`, freed afterwards) and a builder of one run. */
function prepareOp(engine: Engine, spec: CaseSpec, made: Tensor[]): (() => Tensor[]) {
  const keep = (t: Tensor) => {
    made.push(t);
    return t;
  };
  const leaf = (shape: number[], seed: number, requiresGrad = false) =>
    keep(engine.tensor(randomData(sizeOf(shape), seed), shape, { requiresGrad }));
  switch (spec.kind) {
    case 'matmul': {
      const a = leaf([spec.m, spec.k], 1);
      const b = leaf([spec.k, spec.n], 2);
      return () => [matmul(a, b)];
    }
    case 'conv': {
      const x = leaf(spec.x, 1, spec.backward && spec.needDx);
      const w = leaf(spec.w, 2, spec.backward);
      const opts = { stride: spec.stride, padding: spec.padding };
      const [N, , H, W] = spec.x;
      const [O, , KH, KW] = spec.w;
      const dy = leaf([N, O, convOut(H, KH, spec.stride, spec.padding),
        convOut(W, KW, spec.stride, spec.padding)], 3);
      return () => {
        const y = conv2d(x, w, null, opts);
        if (!spec.backward) return [y];
        const gs = grad(y, spec.needDx ? [x, w] : [w], { seed: dy }) as Tensor[];
        return [y, ...gs];
      };
    }
    case 'batchnorm': {
      const C = spec.x[1];
      const x = leaf(spec.x, 1, true);
      const gamma = keep(engine.param(randomData(C, 2).map((v) => 1 + v), [C], 'gamma'));
      const beta = keep(engine.param(randomData(C, 3), [C], 'beta'));
      const runningMean = keep(engine.zeros([C]));
      const runningVar = keep(engine.tensor(new Float32Array(C).fill(1), [C]));
      const dy = leaf(spec.x, 4);
      return () => {
        const y = batchNorm(x, gamma, beta, { training: true, runningMean, runningVar,
          relu: spec.relu });
        return [y, ...(grad(y, [x, gamma, beta], { seed: dy }) as Tensor[])];
      };
    }
    case 'softmax-ce': {
      const x = leaf([spec.rows, spec.cols], 1, true);
      // Soft targets: positive rows summing to 1, as the codes' rows do.
      const raw = randomData(spec.rows * spec.cols, 2).map((v) => v + 1);
      for (let r = 0; r < spec.rows; r++) {
        const row = raw.subarray(r * spec.cols, (r + 1) * spec.cols);
        const total = row.reduce((a, b) => a + b, 0);
        row.forEach((v, i) => { row[i] = v / total; });
      }
      const q = keep(engine.tensor(raw, [spec.rows, spec.cols]));
      return () => {
        const loss = softCrossEntropy(x, q, spec.temperature);
        return [loss, ...(grad(loss, [x]) as Tensor[])];
      };
    }
    case 'sinkhorn': {
      const s = leaf([spec.rows, spec.cols], 1);
      return () => [sinkhorn(s, { epsilon: spec.epsilon, iterations: spec.iterations })];
    }
    case 'swav-step':
      throw new Error('unreachable');
  }
}

/** Distinct shapes of the default model's convolutions, batch norms and loss, from its graph. */
async function listShapes(engine: Engine, cfg: SwavConfig): Promise<ShapesReply> {
  const model = new SwavModel(engine, { backbone: { width: cfg.width, blocks: cfg.blocks },
    hidden: cfg.hidden, featDim: cfg.featDim, prototypes: cfg.prototypes, seed: cfg.seed });
  // Eval mode: batch norms then write no running statistics, so nothing here is ever run.
  model.train(false);
  const B = cfg.batchSize;
  const groups = cfg.crops.map((g) => engine.zeros([B * g.count, 1, g.size, g.size]));
  const { nodes } = capture(engine, () => {
    const { scores } = model.embed(groups);
    swavLoss(scores, { batch: B, crops: cropCount(cfg), assign: cfg.assign,
      temperature: cfg.temperature, epsilon: cfg.epsilon, iterations: cfg.sinkhornIterations });
  });
  const out: ShapesReply = { convs: [], batchnorms: [], softmaxCe: [], sinkhorn: [] };
  const add = <T extends { count: number }>(list: T[], item: Omit<T, 'count'>) => {
    const key = JSON.stringify(item);
    const found = list.find((e) => {
      const { count: _c, ...rest } = e;
      return JSON.stringify(rest) === key;
    });
    if (found) found.count++;
    else list.push({ ...item, count: 1 } as T);
  };
  for (const n of nodes) {
    const a = n.attrs as Record<string, unknown>;
    if (n.op === 'conv2d') {
      const [x, w] = n.inputs;
      const stride = (a.stride as number[])[0];
      const padding = (a.padding as number[])[0];
      const conv = { x: [...x.shape], w: [...w.shape], stride, padding, needDx: x.requiresGrad };
      const key = JSON.stringify(conv);
      const found = out.convs.find((c) => JSON.stringify({ x: c.x, w: c.w, stride: c.stride,
        padding: c.padding, needDx: c.needDx }) === key);
      if (found) found.count++;
      else out.convs.push({ ...conv, count: 1, where: w.name.replace(/\.weight$/, '') });
    } else if (n.op === 'batchNorm') {
      add(out.batchnorms, { x: [...n.inputs[0].shape], relu: Boolean(a.relu) });
    } else if (n.op === 'softCrossEntropy') {
      const [rows, cols] = n.inputs[0].shape;
      if (!out.softmaxCe.length) {
        out.softmaxCe.push({ rows, cols, temperature: a.temperature as number });
      }
    } else if (n.op === 'sinkhorn') {
      const [rows, cols] = n.inputs[0].shape;
      add(out.sinkhorn, { rows, cols, epsilon: a.epsilon as number,
        iterations: a.iterations as number });
    }
  }
  // Drop the recorded nodes: they were only read for their shapes.
  const pending = pendingOf(engine);
  const drop = new Set(nodes);
  pending.splice(0, pending.length, ...pending.filter((n) => !drop.has(n)));
  for (const g of groups) g.dispose();
  for (const t of model.stateDict().values()) t.dispose();
  return out;
}

function packageVersion(): string {
  const url = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(fileURLToPath(url), 'utf8')) as { version: string }).version;
}

export async function createOurs(): Promise<Backend> {
  // Tuned as the CLI's engine is: tilings timed once per adapter and shape, cached on disk.
  const engine = await createEngine({ tune: true });
  return {
    info: () => ({ contestant: 'ours', adapter: engine.gpu.adapterInfo,
      version: `swavgpu ${packageVersion()}` +
        (quietWaitsActive() ? ', quiet waits (no spinning while the device works)' : '') }),
    shapes: () => listShapes(engine, benchConfig),
    async prepare(spec) {
      if (spec.kind === 'swav-step') return prepareStep(engine, spec);
      if (spec.kind === 'conv') {
        await tuneConvolutions(engine, [{ x: spec.x, w: spec.w, stride: spec.stride,
          padding: spec.padding, needDx: spec.needDx }]);
      }
      const made: Tensor[] = [];
      const build = prepareOp(engine, spec, made);
      return {
        run: () => runAndFree(engine, build()),
        async check() {
          const outs = build();
          const values = await engine.run([], outs);
          return values.map(summarise);
        },
        async dispose() {
          await engine.sync();
          for (const t of made) t.dispose();
        },
      };
    },
  };
}
