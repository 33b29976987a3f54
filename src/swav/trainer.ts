// One SwAV training step, recorded as one graph and submitted as one command buffer:
// prototypes renormalised, multi-crop augmentation, backbone per resolution, head over all
// crops, Sinkhorn codes without gradient, swapped-prediction loss, backward, LARS update,
// queue update. Platform-free: the Node runner and the web page both drive it.

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { grad } from '../graph/autodiff.js';
import { GpuImages, MultiCropLoader } from '../data/gpu-images.js';
import { EpochSampler } from '../data/sampler.js';
import type { ImageDataset } from '../data/dataset.js';
import { LARS, isBiasOrNorm } from '../optim/lars.js';
import { warmupCosine } from '../optim/schedule.js';
import { assignmentStats, type AssignmentStats } from './metrics.js';
import { SwavModel } from './model.js';
import { swavLoss } from './loss.js';
import { SwavQueue } from './queue.js';
import { cropCount, validateConfig, type SwavConfig } from './config.js';
import type { ConvShape } from '../ops/tune.js';

export interface StepResult {
  /** Global step index (0 for the first). */
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  stats: AssignmentStats;
  /** Batch image indices of the step (for showing images grouped by prototype). */
  indices: Uint32Array;
}

/** Everything a checkpoint holds besides tensors. */
export interface TrainerPosition {
  step: number;
  queue: { filled: number; next: number } | null;
}

export class SwavTrainer {
  readonly cfg: SwavConfig;
  readonly model: SwavModel;
  readonly optimizer: LARS;
  readonly queue: SwavQueue | null;
  readonly sampler: EpochSampler;
  readonly images: GpuImages;
  readonly loader: MultiCropLoader;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  /** Global index of the next step. */
  step = 0;
  private params: Tensor[];
  private names: string[];
  private protoIndex: number;

  constructor(readonly engine: Engine, config: SwavConfig, readonly data: ImageDataset) {
    this.cfg = validateConfig(config);
    const c = this.cfg;
    this.images = new GpuImages(engine, data, 'train images');
    this.sampler = new EpochSampler(data.count, c.batchSize, c.seed);
    this.stepsPerEpoch = this.sampler.stepsPerEpoch;
    this.totalSteps = Math.max(1, Math.round(c.epochs * this.stepsPerEpoch));
    this.loader = new MultiCropLoader(this.images, {
      batch: c.batchSize, seed: c.seed, groups: c.crops, flip: c.flip, jitter: c.jitter,
      blur: c.blur.p > 0 ? c.blur : undefined, mean: c.mean, std: c.std,
    });
    this.model = new SwavModel(engine, {
      backbone: { width: c.width, blocks: c.blocks }, hidden: c.hidden, featDim: c.featDim,
      prototypes: c.prototypes, seed: c.seed,
    });
    const named = this.model.namedParameters();
    this.params = named.map(([, t]) => t);
    this.names = named.map(([n]) => n);
    this.protoIndex = this.params.indexOf(this.model.prototypes);
    const warmupSteps = Math.min(this.totalSteps, Math.round(c.warmupEpochs * this.stepsPerEpoch));
    this.optimizer = new LARS({
      lr: warmupCosine({ base: c.baseLr, final: c.finalLr, warmupSteps,
        totalSteps: this.totalSteps }),
      momentum: c.momentum, weightDecay: c.weightDecay, trust: c.larsTrust,
      exclude: c.excludeBiasNorm ? isBiasOrNorm : undefined, names: this.names,
    });
    this.queue = c.queueLength > 0 ? new SwavQueue(engine, c.queueLength, c.featDim,
      c.assign.length, c.batchSize) : null;
  }

  /**
   * The distinct convolutions a step runs (input and weight shapes, geometry), read from the
   * model's forward recorded on zero crops and then dropped unrun: what tuning times before
   * the first step.
   */
  convShapes(): ConvShape[] {
    const c = this.cfg;
    const groups = c.crops.map((g) => this.engine.zeros([c.batchSize * g.count, 1, g.size,
      g.size]));
    const before = new Set(this.engine.pendingNodes);
    const wasTraining = this.model.training;
    // Eval mode: the batch norms record no running-statistics update, so all can be dropped.
    this.model.train(false);
    try {
      this.model.embed(groups);
    } finally {
      this.model.train(wasTraining);
    }
    const added = this.engine.pendingNodes.filter((n) => !before.has(n));
    const shapes = new Map<string, ConvShape>();
    for (const n of added) {
      if (n.op !== 'conv2d') continue;
      const [x, w] = n.inputs;
      const a = n.attrs as { stride: [number, number]; padding: [number, number];
        dilation: [number, number] };
      const shape: ConvShape = { x: [...x.shape], w: [...w.shape], stride: a.stride,
        padding: a.padding, dilation: a.dilation, needDx: x.requiresGrad || x.node !== null };
      shapes.set(JSON.stringify(shape), shape);
    }
    this.engine.discard(added);
    for (const g of groups) g.dispose();
    return [...shapes.values()];
  }

  get epoch(): number {
    return Math.floor(this.step / this.stepsPerEpoch);
  }

  get done(): boolean {
    return this.step >= this.totalSteps;
  }

  /**
   * Records step `this.step` and submits it as one command buffer. Resolves, once the GPU
   * has finished it, with the loss and the codes' statistics. Call again before awaiting
   * to keep the GPU busy.
   */
  runStep(extraReads: Tensor[] = []): { step: number; result: Promise<StepResult>;
    extra: Promise<Float32Array[]> } {
    const c = this.cfg;
    const step = this.step;
    const epoch = Math.floor(step / this.stepsPerEpoch);
    const inEpoch = step % this.stepsPerEpoch;
    const B = c.batchSize;
    const indices = this.sampler.batch(epoch, inEpoch);
    const lr = this.optimizer.currentLr();

    this.model.train();
    this.model.normalizePrototypes();
    const groups = this.loader.step(epoch, inEpoch, indices);
    const { z, scores } = this.model.embed(groups);
    const useQueue = this.queue !== null && epoch >= c.queueStart;
    const queueScores = useQueue ? this.queue!.scores(this.model.prototypes) : undefined;
    const { loss, codes } = swavLoss(scores, {
      batch: B, crops: cropCount(c), assign: c.assign, temperature: c.temperature,
      epsilon: c.epsilon, iterations: c.sinkhornIterations, queueScores,
    });
    // Frozen prototypes get no gradient: no momentum, no weight decay, no move. They are
    // left out of grad() itself, so no gradient node is recorded and left pending.
    const frozen = step < c.freezePrototypesSteps;
    const wrt = frozen ? this.params.filter((_, i) => i !== this.protoIndex) : this.params;
    const found = grad(loss, wrt, { allowUnused: true });
    const grads = frozen ? [...found.slice(0, this.protoIndex), null,
      ...found.slice(this.protoIndex)] : found;
    this.optimizer.step(this.params, grads);
    if (useQueue) this.queue!.push(z, c.assign);
    this.step++;
    // Extra reads (parameters, for a finiteness check) ride in the same submission; their
    // copies come after the in-place updates, so they see this step's result.
    const reads = this.engine.run([], [loss, codes[0], ...extraReads]);
    const result = reads.then(([l, q]) => ({
      step, epoch, loss: l[0], lr, indices,
      stats: assignmentStats(q, B, c.prototypes),
    }));
    const extra = reads.then((r) => r.slice(2));
    // A caller that ignores `extra` (or drops `result` after a failure it saw elsewhere)
    // must not turn a lost device into an unhandled rejection; awaiting still throws.
    result.catch(() => undefined);
    extra.catch(() => undefined);
    return { step, result, extra };
  }

  /** The tensors a checkpoint saves: model parameters and buffers, optimizer state, queue. */
  stateTensors(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [n, t] of this.model.stateDict()) out[n] = t;
    for (const [n, t] of Object.entries(this.optimizer.state())) out[n] = t;
    this.queue?.tensors.forEach((t, i) => { out[`queue.${i}`] = t; });
    return out;
  }

  position(): TrainerPosition {
    return { step: this.step, queue: this.queue ? { ...this.queue.state } : null };
  }

  /** Restores a checkpoint's tensors (by name) and position. */
  load(values: Record<string, Float32Array>, pos: TrainerPosition): void {
    const model = this.model.stateDict();
    const optim: Record<string, Float32Array> = {};
    for (const [name, v] of Object.entries(values)) {
      const t = model.get(name);
      if (t) {
        if (t.size !== v.length) {
          throw new Error(`checkpoint: ${name} has ${v.length} values, the model's ` +
            `${t.describe()}`);
        }
        t.write(v);
      } else if (name.startsWith('optim.')) {
        optim[name] = v;
      } else if (name.startsWith('queue.') && this.queue) {
        const q = this.queue.tensors[Number(name.slice(6))];
        if (!q || q.size !== v.length) {
          throw new Error(`checkpoint: ${name} does not fit the queue`);
        }
        q.write(v);
      } else {
        throw new Error(`checkpoint: unexpected tensor ${name} (model or options differ?)`);
      }
    }
    for (const [name] of model) {
      if (!(name in values)) throw new Error(`checkpoint: missing tensor ${name}`);
    }
    this.optimizer.loadState(optim);
    this.step = pos.step;
    if (this.queue && pos.queue) this.queue.state = { ...pos.queue };
  }

  dispose(): void {
    this.loader.dispose();
    this.images.dispose();
  }
}
