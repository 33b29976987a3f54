// Layer constructors refuse bad sizes and options where they are given, naming the layer,
// the argument and the allowed range, instead of a raw RangeError from a typed array or an
// error at the first forward.

import { describe, expect, it } from 'vitest';
import { OpArgumentError } from '../../src/gpu/errors.js';
import { BatchNorm, Conv2d, Linear, ReLU, Sequential } from '../../src/nn/layers.js';
import { initRng, type InitRng } from '../../src/nn/module.js';
import { ResNet } from '../../src/nn/resnet.js';
import { SwavModel } from '../../src/swav/model.js';
import { useEngine } from '../helpers/gpu.js';

const engine = useEngine();
const rng = () => initRng(0);

/** Expects `f` to throw an OpArgumentError with exactly this message. */
function refuses(f: () => unknown, message: string): void {
  expect(f).toThrow(OpArgumentError);
  expect(f).toThrow(message);
}

describe('Linear', () => {
  it('names the layer and the bad size', () => {
    const e = engine();
    // Was "RangeError: Invalid typed array length: -2".
    refuses(() => new Linear(e, 2, -1, rng()),
      'Linear "linear": outFeatures must be an integer >= 1, got -1');
    refuses(() => new Linear(e, 0, 3, rng(), { name: 'probe' }),
      'Linear "probe": inFeatures must be an integer >= 1, got 0');
    refuses(() => new Linear(e, 2.5, 3, rng()),
      'Linear "linear": inFeatures must be an integer >= 1, got 2.5');
    refuses(() => new Linear(e, 2, 3, {} as InitRng),
      'Linear "linear": rng must be an InitRng ({ normal, uniform }, from initRng(seed)), ' +
      'got object');
    refuses(() => new Linear(e, 2, 3, rng(), { bias: 'no' as never }),
      'Linear "linear": bias must be true or false, got no');
  });

  it('refuses unknown option keys, naming the closest', () => {
    // { bais: false } kept the bias.
    refuses(() => new Linear(engine(), 2, 3, rng(), { bais: false } as never),
      'Linear "linear": unknown option "bais" (did you mean "bias"?); Linear "linear" takes ' +
      'bias, name');
  });

  it('good sizes still build and run', async () => {
    const l = new Linear(engine(), 3, 2, rng(), { bias: false });
    expect(l.weight.shape).toEqual([2, 3]);
    expect(l.bias).toBeNull();
    const y = l.forward(engine().tensor([1, 0, 0], [1, 3]));
    expect(Array.from(await y.read())).toEqual(Array.from(await l.weight.read())
      .filter((_, i) => i % 3 === 0));
  });
});

describe('Conv2d', () => {
  it('validates channels, kernel and geometry options at construction', () => {
    const e = engine();
    // Was accepted, and failed only at the first forward.
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { stride: 0 }),
      'Conv2d "conv": stride must be an integer >= 1 or a pair [h, w] of them, got 0');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { padding: [1, -1], name: 'stem' }),
      'Conv2d "stem": padding must be an integer >= 0 or a pair [h, w] of them, got [1,-1]');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { dilation: [1, 1, 1] as never }),
      'Conv2d "conv": dilation must be an integer >= 1 or a pair [h, w] of them, got [1,1,1]');
    refuses(() => new Conv2d(e, 0, 2, 3, rng()),
      'Conv2d "conv": inChannels must be an integer >= 1, got 0');
    refuses(() => new Conv2d(e, 1, -4, 3, rng()),
      'Conv2d "conv": outChannels must be an integer >= 1, got -4');
    refuses(() => new Conv2d(e, 1, 2, 0, rng()),
      'Conv2d "conv": kernel must be an integer >= 1, got 0');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { bias: 1 as never }),
      'Conv2d "conv": bias must be true or false, got 1');
  });

  it('validates a forced tiling at construction by conv2d\'s rules, naming the layer', () => {
    const e = engine();
    const cpu = { TM: 16, TN: 8, WG_X: 8, WG_Y: 1 };
    // Each was accepted, and refused by conv2d only at the first forward.
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { tiling: { ...cpu, WG_X: 0 }, name: 'stem' }),
      'Conv2d "stem": tiling.WG_X must be an integer in 1..256, got 0');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { tiling: { ...cpu, WG_X: 64, WG_Y: 8 } }),
      'Conv2d "conv": tiling.WG_X * tiling.WG_Y must be at most 256 invocations, got 64 x 8');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { tiling: { ...cpu, VEC: 4 } }),
      'Conv2d "conv": tiling.VEC (4) applies to forward \'rows\' only, got forward by default');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { tiling: { ...cpu, TM: 17 } }),
      'Conv2d "conv": tiling.TM must be an integer in 1..16, got 17');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { tiling: 'fast' as never }),
      'Conv2d "conv": tiling must be a ConvTiling object { TM, TN, WG_X, WG_Y, ... }, ' +
      'got "fast"');
  });

  it('a valid forced tiling builds and computes the convolution', async () => {
    const e = engine();
    const c = new Conv2d(e, 1, 1, 2, rng(), { tiling: { TM: 4, TN: 4, WG_X: 4, WG_Y: 2,
      forward: 'generic' } });
    c.weight.write(Float32Array.of(1, 2, 3, 4));
    // [[0,1,2],[3,4,5],[6,7,8]] * [[1,2],[3,4]]: 0+2+9+16 = 27, 37, 57, 67.
    const y = c.forward(e.tensor(Float32Array.from({ length: 9 }, (_, i) => i), [1, 1, 3, 3]));
    expect(Array.from(await y.read())).toEqual([27, 37, 57, 67]);
  });

  it('refuses unknown option keys and tiling keys at construction, naming the closest', () => {
    const e = engine();
    const cpu = { TM: 16, TN: 8, WG_X: 8, WG_Y: 1 };
    const keys = 'Conv2d "conv" takes stride, padding, dilation, tiling, bias, name';
    // { strides: 2 } built a stride-1 layer: forward passes conv2d its known keys only.
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { strides: 2 } as never),
      `Conv2d "conv": unknown option "strides" (did you mean "stride"?); ${keys}`);
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { pad: 1, name: 'stem' } as never),
      'Conv2d "stem": unknown option "pad" (did you mean "padding"?); Conv2d "stem" takes ');
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), null as never),
      'Conv2d "conv": options must be an object with keys among stride, padding, dilation, ' +
      'tiling, bias, name, got null');
    // A misspelt tiling key passed the constructor and was refused at the first forward.
    refuses(() => new Conv2d(e, 1, 2, 3, rng(), { tiling: { ...cpu, foward: 'rows' } as never }),
      'Conv2d "conv": unknown key "foward" in tiling (did you mean "forward"?); tiling takes ' +
      'TM, TN, WG_X, WG_Y, forward, BK, VEC, inputGrad');
  });

  it('numbers and pairs within range still build and run', async () => {
    const e = engine();
    const c = new Conv2d(e, 1, 2, 3, rng(), { stride: [2, 1], padding: 1, dilation: 1,
      bias: true });
    expect(c.forward(e.zeros([1, 1, 5, 4])).shape).toEqual([1, 2, 3, 4]);
  });
});

describe('BatchNorm', () => {
  it('validates channels, momentum and eps at construction', () => {
    const e = engine();
    // Was accepted, and failed only at the first forward.
    refuses(() => new BatchNorm(e, 3, { momentum: 2 }),
      'BatchNorm "bn": momentum must be a number in [0, 1], got 2');
    refuses(() => new BatchNorm(e, 3, { momentum: -0.1, name: 'bn1' }),
      'BatchNorm "bn1": momentum must be a number in [0, 1], got -0.1');
    refuses(() => new BatchNorm(e, 3, { momentum: Number.NaN }),
      'BatchNorm "bn": momentum must be a number in [0, 1], got NaN');
    refuses(() => new BatchNorm(e, 3, { eps: 0 }),
      'BatchNorm "bn": eps must be a finite number > 0, got 0');
    refuses(() => new BatchNorm(e, 3, { eps: Infinity }),
      'BatchNorm "bn": eps must be a finite number > 0, got Infinity');
    refuses(() => new BatchNorm(e, 0), 'BatchNorm "bn": channels must be an integer >= 1, got 0');
    refuses(() => new BatchNorm(e, 3, { relu: 'yes' as never }),
      'BatchNorm "bn": relu must be true or false, got yes');
  });

  it('refuses unknown option keys, naming the closest', () => {
    const e = engine();
    // { momentun: 0.01 } kept the default momentum 0.1.
    refuses(() => new BatchNorm(e, 3, { momentun: 0.01 } as never),
      'BatchNorm "bn": unknown option "momentun" (did you mean "momentum"?); BatchNorm "bn" ' +
      'takes momentum, eps, relu, name');
    refuses(() => new BatchNorm(e, 3, { epsilon: 1e-3, name: 'bn1' } as never),
      'BatchNorm "bn1": unknown option "epsilon" (did you mean "eps"?)');
  });

  it('the ends of the momentum range are allowed', () => {
    const e = engine();
    expect(new BatchNorm(e, 3, { momentum: 0 }).channels).toBe(3);
    expect(new BatchNorm(e, 3, { momentum: 1, eps: 1e-3 }).channels).toBe(3);
  });
});

describe('Sequential and ResNet', () => {
  it('Sequential refuses what is not a module', () => {
    const e = engine();
    refuses(() => new Sequential(e, [new ReLU(e), (() => 1) as never]),
      'Sequential: layers[1] must be a Module, got');
  });

  it('ResNet names its bad option', () => {
    const e = engine();
    refuses(() => new ResNet(e, rng(), { inChannels: 0 }),
      'ResNet: inChannels must be an integer >= 1, got 0');
    refuses(() => new ResNet(e, rng(), { width: 0 }),
      'ResNet: width must be an integer >= 1, got 0');
    // A stride of 0 was let through to the first block's convolution.
    refuses(() => new ResNet(e, rng(), { blocks: [1, 1], strides: [1, 0] }),
      'ResNet: blocks [1,1] and strides [1,0] must be integers >= 1, as many of each');
    refuses(() => new ResNet(e, rng(), { blocks: [] }),
      'ResNet: blocks must be a non-empty array of block counts, got ');
    refuses(() => new ResNet(e, undefined as never),
      'ResNet: rng must be an InitRng ({ normal, uniform }, from initRng(seed)), got undefined');
    // { widht: 8 } built the default width-16 network.
    refuses(() => new ResNet(e, rng(), { widht: 8 } as never),
      'ResNet: unknown option "widht" (did you mean "width"?)');
  });

  it('SwavModel refuses an unknown option, naming the closest', () => {
    const e = engine();
    refuses(() => new SwavModel(e, { prototype: 30 } as never),
      'SwavModel: unknown option "prototype" (did you mean "prototypes"?)');
    refuses(() => new SwavModel(e, { backbone: { blocks: [1], strid: [1] } } as never),
      'ResNet: unknown option "strid" (did you mean "strides"?)');
    expect(new SwavModel(e, { prototypes: 30, featDim: 8 }).prototypes.shape).toEqual([30, 8]);
  });
});
