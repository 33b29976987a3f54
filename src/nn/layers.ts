// The layers SwAV is built from: Linear, Conv2d, BatchNorm1d/2d, ReLU, Sequential.

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { relu } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { checkConvTiling, conv2d, type Conv2dOptions, type ConvTiling } from '../ops/conv.js';
import { batchNorm } from '../ops/batchnorm.js';
import { checkKeys, fail, optionKeys } from '../ops/util.js';
import { OpArgumentError } from '../gpu/errors.js';
import { checkInitRng, checkLayerFlag, checkLayerInt, checkLayerNumber, checkLayerPair,
  layerError, Module, type InitRng } from './module.js';

export interface LinearOptions {
  /** Add a learned bias; default true. */
  bias?: boolean;
  /** Prefix of the parameters' names; default 'linear'. */
  name?: string;
}

export type Conv2dLayerOptions = Conv2dOptions & {
  /** Add a learned bias; default false. */
  bias?: boolean;
  name?: string;
};

export interface BatchNormLayerOptions {
  momentum?: number;
  eps?: number;
  relu?: boolean;
  name?: string;
}

// Each layer's option keys, so that a misspelt one ({ strides: 2 }) is refused with the
// closest known key, as the ops refuse theirs, instead of leaving its default in place.
const LINEAR_KEYS = optionKeys<LinearOptions>({ bias: true, name: true });
const CONV2D_KEYS = optionKeys<Conv2dLayerOptions>({ stride: true, padding: true,
  dilation: true, tiling: true, bias: true, name: true });
const BATCHNORM_KEYS = optionKeys<BatchNormLayerOptions>({ momentum: true, eps: true,
  relu: true, name: true });

/** y = x W^T + b with W [out, in], as PyTorch stores it; U(-1/sqrt(in), 1/sqrt(in)) init. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(engine: Engine, readonly inFeatures: number, readonly outFeatures: number,
    rng: InitRng, opts: LinearOptions = {}) {
    super(engine);
    const layer = `Linear "${opts?.name ?? 'linear'}"`;
    checkKeys(layer, 'options', opts, LINEAR_KEYS);
    checkLayerInt(layer, 'inFeatures', inFeatures);
    checkLayerInt(layer, 'outFeatures', outFeatures);
    checkInitRng(layer, rng);
    checkLayerFlag(layer, 'bias', opts.bias);
    const bound = 1 / Math.sqrt(inFeatures);
    const w = new Float32Array(inFeatures * outFeatures).map(() => (2 * rng.uniform() - 1) * bound);
    this.weight = this.addParam('weight', engine.param(w, [outFeatures, inFeatures],
      `${opts.name ?? 'linear'}.weight`));
    this.bias = opts.bias === false ? null : this.addParam('bias', engine.param(
      new Float32Array(outFeatures).map(() => (2 * rng.uniform() - 1) * bound), [outFeatures],
      `${opts.name ?? 'linear'}.bias`));
  }

  forward(x: Tensor): Tensor {
    if (x.rank !== 2 || x.shape[1] !== this.inFeatures) {
      fail('Linear', `expects [N, ${this.inFeatures}], got ${x.describe()}`);
    }
    return matmul(x, this.weight, { transB: true, bias: this.bias ?? undefined });
  }
}

/** NCHW convolution; Kaiming-normal init (fan_out, ReLU gain) as torchvision's ResNet. */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(engine: Engine, readonly inChannels: number, readonly outChannels: number,
    readonly kernel: number, rng: InitRng, readonly opts: Conv2dLayerOptions = {}) {
    super(engine);
    const layer = `Conv2d "${opts?.name ?? 'conv'}"`;
    checkKeys(layer, 'options', opts, CONV2D_KEYS);
    checkLayerInt(layer, 'inChannels', inChannels);
    checkLayerInt(layer, 'outChannels', outChannels);
    checkLayerInt(layer, 'kernel', kernel);
    checkInitRng(layer, rng);
    // The forms and ranges conv2d takes, checked here rather than at the first forward.
    checkLayerPair(layer, 'stride', opts.stride, 1);
    checkLayerPair(layer, 'padding', opts.padding, 0);
    checkLayerPair(layer, 'dilation', opts.dilation, 1);
    checkLayerFlag(layer, 'bias', opts.bias);
    checkLayerTiling(layer, opts.tiling);
    const fanOut = outChannels * kernel * kernel;
    const std = Math.sqrt(2 / fanOut);
    const w = new Float32Array(outChannels * inChannels * kernel * kernel)
      .map(() => rng.normal() * std);
    const name = opts.name ?? 'conv';
    this.weight = this.addParam('weight', engine.param(w,
      [outChannels, inChannels, kernel, kernel], `${name}.weight`));
    this.bias = opts.bias ? this.addParam('bias', engine.param(new Float32Array(outChannels),
      [outChannels], `${name}.bias`)) : null;
  }

  forward(x: Tensor): Tensor {
    // The convolution's own options; bias and name are the layer's.
    const { stride, padding, dilation, tiling } = this.opts;
    return conv2d(x, this.weight, this.bias, { stride, padding, dilation, tiling });
  }
}

/**
 * A forced tiling, checked by conv2d's own rules at construction and reported under the
 * layer's name (conv2d would refuse it only at the first forward).
 */
function checkLayerTiling(layer: string, tiling: unknown): void {
  if (tiling === undefined) return;
  if (typeof tiling !== 'object' || tiling === null || Array.isArray(tiling)) {
    layerError(layer, 'tiling must be a ConvTiling object { TM, TN, WG_X, WG_Y, ... }, got ' +
      JSON.stringify(tiling));
  }
  try {
    checkConvTiling(tiling as ConvTiling);
  } catch (e) {
    if (!(e instanceof OpArgumentError)) throw e;
    // The op's message names conv2d; this one names the layer instead.
    layerError(layer, e.message.replace(/^conv2d: /, ''));
  }
}

/** Batch normalisation over N (2-D input) or N, H, W (4-D); optional fused ReLU. */
export class BatchNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;

  constructor(engine: Engine, readonly channels: number,
    readonly opts: BatchNormLayerOptions = {}) {
    super(engine);
    const name = opts?.name ?? 'bn';
    const layer = `BatchNorm "${name}"`;
    checkKeys(layer, 'options', opts, BATCHNORM_KEYS);
    checkLayerInt(layer, 'channels', channels);
    // The ranges batchNorm takes (PyTorch's convention: running = (1 - m) running + m batch).
    if (opts.momentum !== undefined) {
      checkLayerNumber(layer, 'momentum', opts.momentum, (v) => v >= 0 && v <= 1,
        'a number in [0, 1]');
    }
    if (opts.eps !== undefined) {
      checkLayerNumber(layer, 'eps', opts.eps, (v) => v > 0, 'a finite number > 0');
    }
    checkLayerFlag(layer, 'relu', opts.relu);
    this.weight = this.addParam('weight', engine.param(new Float32Array(channels).fill(1),
      [channels], `${name}.weight`));
    this.bias = this.addParam('bias', engine.param(new Float32Array(channels), [channels],
      `${name}.bias`));
    this.runningMean = this.addBuffer('running_mean', engine.zeros([channels],
      { name: `${name}.running_mean` }));
    this.runningVar = this.addBuffer('running_var', engine.tensor(
      new Float32Array(channels).fill(1), [channels], { name: `${name}.running_var` }));
  }

  forward(x: Tensor): Tensor {
    return batchNorm(x, this.weight, this.bias, {
      training: this.training, runningMean: this.runningMean, runningVar: this.runningVar,
      momentum: this.opts.momentum ?? 0.1, eps: this.opts.eps ?? 1e-5, relu: this.opts.relu,
    });
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

export class Sequential extends Module {
  readonly layers: Module[];

  constructor(engine: Engine, layers: Module[]) {
    super(engine);
    if (!Array.isArray(layers)) layerError('Sequential', 'layers must be an array of modules');
    layers.forEach((m, i) => {
      if (!(m instanceof Module)) {
        layerError('Sequential', `layers[${i}] must be a Module, got ${String(m)}`);
      }
    });
    this.layers = layers;
    layers.forEach((m, i) => this.addModule(String(i), m));
  }

  forward(x: Tensor): Tensor {
    return this.layers.reduce((h, m) => m.forward(h), x);
  }
}
