// The live SwAV panel's contract with a trainer: the panel calls step() in a loop and draws
// what each step returns. The SwAV trainer (src/swav/) is not built yet, so
// createLiveTrainer is null and the panel says so; wiring it is replacing that null with a
// factory that wraps the trainer (see the comment on createLiveTrainer).

import type * as Swavgpu from '../../src/browser.js';
import type { Engine, ImageDataset } from '../../src/browser.js';

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
}

/** How many training images the panel fetches for the trainer. */
export const LIVE_IMAGES = 2048;

/**
 * Builds the trainer for the panel; null until src/swav/ exists. To wire it, export the
 * trainer from src/index.ts and replace null with, for example:
 *
 *   async ({ api, engine, data, seed }) => {
 *     const t = await api.swav.createTrainer(engine, data, { seed, ...small settings });
 *     return {
 *       prototypes: t.prototypes,
 *       step: async () => {
 *         const s = await t.step();   // one submit; loss and codes read back
 *         return { loss: s.loss, imagesPerSecond: s.imagesPerSecond,
 *                  assignments: s.assignments, images: s.images };
 *       },
 *       dispose: () => t.dispose(),
 *     };
 *   }
 */
export const createLiveTrainer: ((opts: LiveTrainerOptions) => Promise<LiveTrainer>) | null =
  null as ((opts: LiveTrainerOptions) => Promise<LiveTrainer>) | null;
