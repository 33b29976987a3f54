// The live SwAV panel's contract with a trainer, and its wiring to the engine's SwavTrainer
// (the bundle's `swav` namespace): the panel calls step() in a loop and draws what each
// step returns. Another trainer fits the panel by implementing LiveTrainer.

import type * as Swavgpu from '../../src/browser.js';
import type { Engine, ImageDataset } from '../../src/browser.js';

type SwavConfig = Swavgpu.swav.SwavConfig;

/** Images shown in the grid, u8 pixels row-major as count x height x width. */
export interface LiveImages {
  pixels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

export interface LiveStep {
  /** The SwAV swapped-prediction loss of this step. */
  loss: number;
  /** Training throughput of this step (images per second, all crops of an image as one). */
  imagesPerSecond: number;
  /** The prototype each image of this step's batch is assigned to (argmax of its code). */
  assignments: Int32Array;
  /** The batch's images, one per entry of `assignments`, for the grid; optional. */
  images?: LiveImages;
}

export interface LiveTrainer {
  /** Number of prototypes K: assignments are in 0..K-1. */
  readonly prototypes: number;
  /** Runs one training step and reads back what the panel draws. */
  step(): Promise<LiveStep>;
  dispose(): void;
}

export interface LiveTrainerOptions {
  /** The bundle's exports (the page never imports the engine's sources directly). */
  api: typeof Swavgpu;
  engine: Engine;
  /** A slice of Fashion-MNIST's training split, fetched from the server's /data/. */
  data: ImageDataset;
  seed: number;
  /** Settings over LIVE_CONFIG (the tests take a smaller batch). */
  config?: Partial<SwavConfig>;
}

/** How many training images the panel fetches for the trainer. */
export const LIVE_IMAGES = 2048;

/**
 * The panel's recipe: the engine's defaults, with a schedule long enough that a person
 * watching sees it move (the LR schedule spans `epochs` over the fetched slice).
 */
export const LIVE_CONFIG: Partial<SwavConfig> = { epochs: 50, batchSize: 64, logEvery: 1,
  checkpointEvery: 0 };

/**
 * On a CPU adapter a smaller step: 16 images, two 28-pixel and two 14-pixel crops and 30
 * prototypes took about 3 s a step in headless Chromium's SwiftShader, against 18 s for
 * LIVE_CONFIG's batch of 64 with six crops and 100 prototypes.
 */
export const CPU_LIVE_CONFIG: Partial<SwavConfig> = { batchSize: 16, prototypes: 30, crops: [
  { count: 2, size: 28, scale: [0.4, 1] }, { count: 2, size: 14, scale: [0.15, 0.4] },
] };

/** The panel's settings for an adapter, by its description (GpuContext.adapterInfo). */
export function liveConfig(defaults: SwavConfig, adapterInfo: string,
  overrides: Partial<SwavConfig> = {}, seed = 0): SwavConfig {
  const cpu = /swiftshader|llvmpipe|lavapipe/i.test(adapterInfo);
  return { ...defaults, ...LIVE_CONFIG, ...(cpu ? CPU_LIVE_CONFIG : {}), ...overrides, seed };
}

/** Rows `indices` of the dataset, for the grid. */
export function gatherImages(data: ImageDataset, indices: ArrayLike<number>): LiveImages {
  const px = data.height * data.width;
  const pixels = new Uint8Array(indices.length * px);
  for (let i = 0; i < indices.length; i++) {
    pixels.set(data.images.subarray(indices[i] * px, (indices[i] + 1) * px), i * px);
  }
  return { pixels, count: indices.length, height: data.height, width: data.width };
}

/** Wraps the engine's SwavTrainer for the panel. */
export async function createLiveTrainer(opts: LiveTrainerOptions): Promise<LiveTrainer> {
  const { SwavTrainer, defaultConfig } = opts.api.swav;
  const cfg = liveConfig(defaultConfig, opts.engine.gpu.adapterInfo, opts.config, opts.seed);
  const trainer = new SwavTrainer(opts.engine, cfg, opts.data);
  return {
    prototypes: cfg.prototypes,
    step: async () => {
      const t0 = performance.now();
      const r = await trainer.runStep().result;
      const seconds = (performance.now() - t0) / 1000;
      return {
        loss: r.loss, imagesPerSecond: cfg.batchSize / seconds,
        assignments: r.stats.assignments, images: gatherImages(opts.data, r.indices),
      };
    },
    dispose: () => trainer.dispose(),
  };
}
