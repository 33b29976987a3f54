// The SwAV network: backbone, projection head, L2-normalised features and the prototypes.
// Parameter names follow the official code's (backbone., projection_head.N., prototypes.)
// so a checkpoint reads as a PyTorch state dict.

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { l2Normalize } from '../ops/l2norm.js';
import { matmul } from '../ops/matmul.js';
import { concatRows, assign } from '../ops/shape.js';
import { checkKeys, fail, optionKeys } from '../ops/util.js';
import { BatchNorm, Linear } from '../nn/layers.js';
import { Module, initRng } from '../nn/module.js';
import { ResNet, type ResNetOptions } from '../nn/resnet.js';

export interface SwavModelOptions {
  backbone?: ResNetOptions;
  /** Hidden width of the projection head. */
  hidden?: number;
  /** Feature (embedding) size. */
  featDim?: number;
  /** Number of prototypes K. */
  prototypes?: number;
  seed?: number;
}

class Head extends Module {
  readonly fc1: Linear;
  readonly bn: BatchNorm;
  readonly fc2: Linear;

  constructor(engine: Engine, inF: number, hidden: number, out: number,
    rng: ReturnType<typeof initRng>) {
    super(engine);
    // Index 2 is the official head's ReLU, fused into the batch norm here.
    this.fc1 = this.addModule('0', new Linear(engine, inF, hidden, rng, { name: 'head.0' }));
    this.bn = this.addModule('1', new BatchNorm(engine, hidden, { relu: true, name: 'head.1' }));
    this.fc2 = this.addModule('3', new Linear(engine, hidden, out, rng, { name: 'head.3' }));
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.bn.forward(this.fc1.forward(x)));
  }
}

export class SwavModel extends Module {
  readonly backbone: ResNet;
  readonly head: Head;
  readonly prototypes: Tensor;
  readonly featDim: number;
  readonly numPrototypes: number;

  constructor(engine: Engine, opts: SwavModelOptions = {}) {
    super(engine);
    checkKeys('SwavModel', 'options', opts, optionKeys<SwavModelOptions>({ backbone: true,
      hidden: true, featDim: true, prototypes: true, seed: true }));
    const rng = initRng(opts.seed ?? 0);
    this.backbone = this.addModule('backbone', new ResNet(engine, rng, opts.backbone));
    this.featDim = opts.featDim ?? 64;
    this.numPrototypes = opts.prototypes ?? 100;
    const hidden = opts.hidden ?? 2 * this.backbone.outChannels;
    this.head = this.addModule('projection_head', new Head(engine, this.backbone.outChannels,
      hidden, this.featDim, rng));
    const protos = new Linear(engine, this.featDim, this.numPrototypes, rng,
      { bias: false, name: 'prototypes' });
    this.addModule('prototypes', protos);
    this.prototypes = protos.weight;
  }

  /** Backbone features (before the head) of one batch of images. */
  forward(x: Tensor): Tensor {
    return this.backbone.forward(x);
  }

  /** Rescales every prototype to unit length in place (done at each step's start). */
  normalizePrototypes(): void {
    const p = this.prototypes;
    assign(p, this.engine.noGrad(() => l2Normalize(p)));
  }

  /**
   * Runs the backbone once per resolution group, then the head once over all crops
   * together (so its batch norm sees every crop), and scores them against the prototypes.
   */
  embed(groups: Tensor[]): { z: Tensor; scores: Tensor } {
    if (groups.length === 0) fail('SwavModel.embed', 'needs at least one crop group');
    const feats = concatRows(groups.map((g) => this.backbone.forward(g)));
    const z = l2Normalize(this.head.forward(feats));
    const scores = matmul(z, this.prototypes, { transB: true });
    return { z, scores };
  }
}
