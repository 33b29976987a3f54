// A small ResNet for 28x28 grayscale images: a 3x3 stem, stages of basic blocks, and
// global average pooling. Width and depth are options; the defaults fit a CPU adapter.

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { addRelu } from '../ops/elementwise.js';
import { globalAvgPool } from '../ops/pool.js';
import { checkKeys, fail, optionKeys } from '../ops/util.js';
import { BatchNorm, Conv2d } from './layers.js';
import { checkInitRng, checkLayerInt, Module, type InitRng } from './module.js';

export interface ResNetOptions {
  /** Input channels (1 for grayscale). */
  inChannels?: number;
  /** Channels of the stem and the first stage; each later stage doubles them. */
  width?: number;
  /** Basic blocks per stage; the stage count is this list's length. */
  blocks?: number[];
  /** Stride of each stage's first block. */
  strides?: number[];
}

/** conv3x3-BN-ReLU-conv3x3-BN, plus the input (projected by a 1x1 conv if needed), ReLU. */
export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm;
  readonly shortcut: { conv: Conv2d; bn: BatchNorm } | null;

  constructor(engine: Engine, inC: number, outC: number, stride: number, rng: InitRng,
    name: string) {
    super(engine);
    this.conv1 = this.addModule('conv1', new Conv2d(engine, inC, outC, 3, rng,
      { stride, padding: 1, name: `${name}.conv1` }));
    this.bn1 = this.addModule('bn1', new BatchNorm(engine, outC, { relu: true,
      name: `${name}.bn1` }));
    this.conv2 = this.addModule('conv2', new Conv2d(engine, outC, outC, 3, rng,
      { padding: 1, name: `${name}.conv2` }));
    this.bn2 = this.addModule('bn2', new BatchNorm(engine, outC, { name: `${name}.bn2` }));
    if (stride !== 1 || inC !== outC) {
      const conv = new Conv2d(engine, inC, outC, 1, rng, { stride, name: `${name}.downsample.0` });
      const bn = new BatchNorm(engine, outC, { name: `${name}.downsample.1` });
      const seq = new DownSample(engine, conv, bn);
      this.addModule('downsample', seq);
      this.shortcut = { conv, bn };
    } else {
      this.shortcut = null;
    }
  }

  forward(x: Tensor): Tensor {
    const h = this.bn2.forward(this.conv2.forward(this.bn1.forward(this.conv1.forward(x))));
    const s = this.shortcut ? this.shortcut.bn.forward(this.shortcut.conv.forward(x)) : x;
    // relu(h + s) in one pass forward and one backward.
    return addRelu(h, s);
  }
}

/** Named like PyTorch's `downsample` Sequential so state dicts line up. */
class DownSample extends Module {
  constructor(engine: Engine, readonly conv: Conv2d, readonly bn: BatchNorm) {
    super(engine);
    this.addModule('0', conv);
    this.addModule('1', bn);
  }

  forward(x: Tensor): Tensor {
    return this.bn.forward(this.conv.forward(x));
  }
}

export class ResNet extends Module {
  readonly outChannels: number;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm;
  readonly stages: BasicBlock[][] = [];

  constructor(engine: Engine, rng: InitRng, readonly opts: ResNetOptions = {}) {
    super(engine);
    checkInitRng('ResNet', rng);
    checkKeys('ResNet', 'options', opts, optionKeys<ResNetOptions>({ inChannels: true,
      width: true, blocks: true, strides: true }));
    const inC = checkLayerInt('ResNet', 'inChannels', opts.inChannels ?? 1);
    const width = checkLayerInt('ResNet', 'width', opts.width ?? 16);
    const blocks = opts.blocks ?? [1, 1, 1];
    if (!Array.isArray(blocks) || !blocks.length) {
      fail('ResNet', `blocks must be a non-empty array of block counts, got ${String(blocks)}`);
    }
    const strides = opts.strides ?? blocks.map((_, i) => (i === 0 ? 1 : 2));
    if (!Array.isArray(strides) || blocks.length !== strides.length ||
      blocks.some((b) => !Number.isInteger(b) || b < 1) ||
      strides.some((s) => !Number.isInteger(s) || s < 1)) {
      fail('ResNet', `blocks [${blocks}] and strides [${strides}] must be integers >= 1, as ` +
        'many of each (one per stage)');
    }
    this.conv1 = this.addModule('conv1', new Conv2d(engine, inC, width, 3, rng,
      { padding: 1, name: 'conv1' }));
    this.bn1 = this.addModule('bn1', new BatchNorm(engine, width, { relu: true, name: 'bn1' }));
    let c = width;
    blocks.forEach((n, s) => {
      const outC = width * 2 ** s;
      const stage: BasicBlock[] = [];
      const stageModule = this.addModule(`layer${s + 1}`, new Stage(engine));
      for (let b = 0; b < n; b++) {
        const block = new BasicBlock(engine, c, outC, b === 0 ? strides[s] : 1, rng,
          `layer${s + 1}.${b}`);
        stageModule.add(String(b), block);
        stage.push(block);
        c = outC;
      }
      this.stages.push(stage);
    });
    this.outChannels = c;
  }

  forward(x: Tensor): Tensor {
    if (x.rank !== 4) fail('ResNet', `expects [N, C, H, W], got ${x.describe()}`);
    let h = this.bn1.forward(this.conv1.forward(x));
    for (const stage of this.stages) for (const b of stage) h = b.forward(h);
    return globalAvgPool(h);
  }
}

class Stage extends Module {
  add(name: string, m: Module): void {
    this.addModule(name, m);
  }

  forward(x: Tensor): Tensor {
    return x;
  }
}
