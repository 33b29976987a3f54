// The benchmark's cases: matmul, every convolution and batch norm shape of the default SwAV
// model (read from its recorded graph), its loss ops, and one whole training step.

import { defaultConfig } from '../../src/swav/config.js';
import type { CaseSpec, Contestant, ShapesReply } from './protocol.js';

export type Unit = 'GFLOP/s' | 'ms' | 'images/s';

export interface BenchCase {
  name: string;
  spec: CaseSpec;
  unit: Unit;
  /** The peers this case is compared with. */
  peers: Contestant[];
  /** Work per operation: flops (GFLOP/s) or images (images/s). */
  work?: number;
  /** The smallest ratio (ours over the better peer, > 1 means ours is better) aimed for. */
  target?: number;
  /** Calls of this shape per training step (convolutions, batch norms, Sinkhorn). */
  perStep?: number;
  /** Layers of the model with this shape. */
  where?: string;
  /** Cases in --quick mode. */
  quick: boolean;
}

const WEBGPU_PEERS: Contestant[] = ['tfjs', 'jax'];
const dims = (s: readonly number[]) => s.join('x');

export function higherIsBetter(unit: Unit): boolean {
  return unit !== 'ms';
}

/** Every case, in the order they run. */
export function buildCases(shapes: ShapesReply,
  opts: { images: number; data: string; torchThreads?: number }):
  BenchCase[] {
  const cases: BenchCase[] = [];
  for (const n of [512, 1024]) {
    cases.push({
      name: `matmul ${n}^3`, spec: { kind: 'matmul', m: n, k: n, n }, unit: 'GFLOP/s',
      peers: WEBGPU_PEERS, work: 2 * n ** 3, target: 2, quick: true,
    });
  }
  for (const backward of [false, true]) {
    for (const c of shapes.convs) {
      const [O, , KH, KW] = c.w;
      const pass = backward ? (c.needDx ? 'fwd+bwd' : 'fwd+dw') : 'fwd';
      cases.push({
        name: `conv ${dims(c.x)}>${O} ${KH}x${KW}/s${c.stride}p${c.padding} ${pass}`,
        spec: { kind: 'conv', x: c.x, w: c.w, stride: c.stride, padding: c.padding, backward,
          needDx: c.needDx },
        unit: 'ms', peers: WEBGPU_PEERS, target: 2, perStep: c.count, where: c.where,
        // Quick mode: forward and backward together.
        quick: backward,
      });
    }
  }
  // One case per batch-norm shape; where the model has it with and without the fused ReLU,
  // the ReLU variant (the difference is one comparison per element).
  const bnShapes = new Map<string, { x: number[]; relu: number; plain: number }>();
  for (const b of shapes.batchnorms) {
    const key = dims(b.x);
    const e = bnShapes.get(key) ?? { x: b.x, relu: 0, plain: 0 };
    if (b.relu) e.relu += b.count;
    else e.plain += b.count;
    bnShapes.set(key, e);
  }
  for (const [key, b] of bnShapes) {
    cases.push({
      name: `batchnorm ${key}${b.relu ? ' +relu' : ''} fwd+bwd`,
      spec: { kind: 'batchnorm', x: b.x, relu: b.relu > 0 }, unit: 'ms', peers: WEBGPU_PEERS,
      perStep: b.relu + b.plain, where: `${b.relu} with ReLU, ${b.plain} without`, quick: false,
    });
  }
  for (const s of shapes.softmaxCe) {
    cases.push({
      name: `softmax-ce ${s.rows}x${s.cols} fwd+bwd`,
      spec: { kind: 'softmax-ce', rows: s.rows, cols: s.cols, temperature: s.temperature },
      unit: 'ms', peers: WEBGPU_PEERS, perStep: 1, quick: true,
    });
  }
  for (const s of shapes.sinkhorn) {
    cases.push({
      name: `sinkhorn ${s.rows}x${s.cols} ${s.iterations} it`,
      spec: { kind: 'sinkhorn', rows: s.rows, cols: s.cols, epsilon: s.epsilon,
        iterations: s.iterations },
      unit: 'ms', peers: WEBGPU_PEERS, perStep: s.count, quick: true,
    });
  }
  const cfg = defaultConfig;
  const crops = cfg.crops.map((g) => `${g.count}x${g.size}`).join('+');
  cases.push({
    name: `swav step B=${cfg.batchSize} ${crops}`,
    spec: { kind: 'swav-step', images: opts.images, data: opts.data,
      threads: opts.torchThreads ?? 0 },
    unit: 'images/s', peers: ['torch'], work: cfg.batchSize, target: 0.1, quick: true,
  });
  return cases;
}

/** Keeps the cases whose name contains one of the comma-separated filters. */
export function filterCases(cases: BenchCase[], only: string | undefined): BenchCase[] {
  if (!only) return cases;
  const parts = only.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  return cases.filter((c) => parts.some((p) => c.name.toLowerCase().includes(p)));
}
