// An image set uploaded once to the GPU as packed u8 pixels, and a loader that turns it
// into SwAV's augmented multi-crop batches step after step without new allocations.

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { CROP_FLOATS, multiCrop, type PackedImages } from '../ops/augment.js';
import { SAMPLING_KEYS, sampleCrops, type CropSamplingOptions } from './crops.js';
import { checkKeys } from '../ops/util.js';

export interface ImageSource {
  /** count x height x width u8 pixels, row-major. */
  images: Uint8Array;
  count: number;
  height: number;
  width: number;
}

/**
 * The whole image set on the GPU, uploaded once. As f32, Fashion-MNIST's 60000 28x28
 * images would take 188 MB, past the 128 MiB storage binding limit; as u8 packed four to a
 * word they take 47 MB, and shaders/augment.wgsl unpacks them.
 *
 * `tensor` therefore holds PACKED BYTES, not float values: element k is pixels 4k..4k+3
 * (little-endian). It is only meant as the input of multiCrop; reading it as floats gives
 * meaningless numbers.
 */
export class GpuImages implements PackedImages {
  readonly tensor: Tensor;
  readonly count: number;
  readonly height: number;
  readonly width: number;

  constructor(engine: Engine, source: ImageSource, name = 'images') {
    const { images, count, height, width } = source ?? {};
    for (const [field, v] of [['count', count], ['height', height], ['width', width]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) {
        throw new RangeError(`GpuImages ${name}: ${field} must be an integer >= 1, got ${v}`);
      }
    }
    if (!(images instanceof Uint8Array) || images.length !== count * height * width) {
      throw new RangeError(`GpuImages ${name}: images must be a Uint8Array of count x height x ` +
        `width = ${count}x${height}x${width} = ${count * height * width} bytes, got ` +
        `${images instanceof Uint8Array ? `${images.length} bytes` : typeof images}`);
    }
    const words = Math.ceil(images.length / 4);
    // A view when the bytes are already word-aligned and whole; otherwise one padded copy.
    const aligned = images.byteOffset % 4 === 0 && images.length % 4 === 0;
    const bytes = aligned ? images : new Uint8Array(words * 4);
    if (!aligned) bytes.set(images);
    // engine.tensor copies a Float32Array's bytes to the GPU unchanged, so a float view of
    // the packed bytes uploads them as they are (no value conversion touches them).
    const view = new Float32Array(bytes.buffer, bytes.byteOffset, words);
    this.tensor = engine.tensor(view, [words], { name: `${name} (u8 x4 packed)` });
    this.count = count;
    this.height = height;
    this.width = width;
  }

  dispose(): void {
    this.tensor.dispose();
  }
}

export interface MultiCropLoaderOptions
  extends Omit<CropSamplingOptions, 'epoch' | 'step' | 'height' | 'width'> {
  /** Normalization after augmentation: (v - mean) / std. */
  mean?: number;
  std?: number;
}

/**
 * Makes one step's crops: samples their parameters on the CPU (sampleCrops, keyed by seed,
 * epoch and step), writes them and the batch's indices into leaves allocated once, and
 * records one multiCrop dispatch per resolution group.
 */
export class MultiCropLoader {
  readonly images: GpuImages;
  private opts: MultiCropLoaderOptions;
  /** The options sampleCrops takes (mean and std are the loader's). */
  private sampling: Omit<CropSamplingOptions, 'epoch' | 'step' | 'height' | 'width'>;
  private indexHost: Float32Array;
  private indexLeaf: Tensor;
  private paramHost: Float32Array[];
  private paramLeaves: Tensor[];
  private last: { outputs: Tensor[]; epoch: number; step: number } | null = null;

  constructor(images: GpuImages, opts: MultiCropLoaderOptions) {
    this.images = images;
    this.opts = opts;
    checkKeys('MultiCropLoader', 'options', opts, [...SAMPLING_KEYS.filter((k) =>
      !['epoch', 'step', 'height', 'width'].includes(k)), 'mean', 'std']);
    const { mean: _mean, std: _std, ...sampling } = opts;
    this.sampling = sampling;
    // Sampling once up front checks every option before anything is allocated.
    this.paramHost = sampleCrops({ ...sampling, epoch: 0, step: 0, height: images.height,
      width: images.width });
    const engine = images.tensor.engine;
    this.indexHost = new Float32Array(opts.batch);
    this.indexLeaf = engine.zeros([opts.batch], { name: 'multi-crop indices' });
    this.paramLeaves = this.paramHost.map((p, g) =>
      engine.zeros([p.length / CROP_FLOATS, CROP_FLOATS], { name: `multi-crop params ${g}` }));
  }

  /**
   * Crops of batch `indices` at (epoch, step): one tensor [B x count, 1, size, size] per
   * group, crop-major. The previous step's crops must have run first, since their inputs
   * are rewritten here.
   */
  step(epoch: number, step: number, indices: ArrayLike<number>): Tensor[] {
    const { batch } = this.opts;
    const prev = this.last;
    // Scheduled into a run is enough: the engine orders later writes after that run.
    if (prev && prev.outputs.some((t) => t.state === 'pending' && !t.node?.scheduled)) {
      throw new RangeError(`MultiCropLoader.step(${epoch}, ${step}): the crops of step ` +
        `(${prev.epoch}, ${prev.step}) have not run yet, and their inputs are about to be ` +
        `rewritten; run or read them first`);
    }
    if (!indices || indices.length !== batch) {
      throw new RangeError(`MultiCropLoader.step: expected ${batch} image indices, got ` +
        `${indices?.length}`);
    }
    for (let b = 0; b < batch; b++) {
      const v = indices[b];
      if (!Number.isInteger(v) || v < 0 || v >= this.images.count) {
        throw new RangeError(`MultiCropLoader.step: indices[${b}] = ${v} is not an image ` +
          `index in [0, ${this.images.count})`);
      }
      this.indexHost[b] = v;
    }
    sampleCrops({ ...this.sampling, epoch, step, height: this.images.height,
      width: this.images.width }, this.paramHost);
    this.indexLeaf.write(this.indexHost);
    this.paramLeaves.forEach((leaf, g) => leaf.write(this.paramHost[g]));
    const { mean, std } = this.opts;
    const outputs = this.opts.groups.map((g, gi) =>
      multiCrop(this.images, this.indexLeaf, this.paramLeaves[gi], { size: g.size, mean, std }));
    this.last = { outputs, epoch, step };
    return outputs;
  }

  dispose(): void {
    this.indexLeaf.dispose();
    for (const t of this.paramLeaves) t.dispose();
  }
}
