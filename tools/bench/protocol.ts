// What the benchmark's parent and its worker processes say to each other: case specs,
// requests and replies (plain JSON, so the PyTorch worker speaks it too).

import type { TimingSource } from '../../src/gpu/context.js';

/** One benchmarked computation; every contestant builds the same one in its own API. */
export type CaseSpec =
  | { kind: 'matmul'; m: number; k: number; n: number }
  | {
      kind: 'conv';
      /** [N, C, H, W] and [O, C, KH, KW]. */
      x: number[];
      w: number[];
      stride: number;
      padding: number;
      /** Forward plus the gradients the network needs, given the output's gradient. */
      backward: boolean;
      /** False where the layer's input is the image (no input gradient in training). */
      needDx: boolean;
    }
  | {
      kind: 'batchnorm';
      /** [N, C] or [N, C, H, W]; training mode, forward and backward. */
      x: number[];
      relu: boolean;
    }
  | { kind: 'softmax-ce'; rows: number; cols: number; temperature: number }
  | { kind: 'sinkhorn'; rows: number; cols: number; epsilon: number; iterations: number }
  | {
      kind: 'swav-step';
      /** Images in the training set (the first N of Fashion-MNIST, or synthetic ones). */
      images: number;
      /** Where the Fashion-MNIST IDX files are ('' for synthetic images). */
      data: string;
      /** PyTorch's intra-op threads; 0: the faster of 1 and every core, timed at start. */
      threads: number;
    };

export type Contestant = 'ours' | 'tfjs' | 'jax' | 'torch';

export type Request =
  | { id: number; cmd: 'info' }
  | { id: number; cmd: 'prepare'; spec: CaseSpec; targetMs: number; maxInner: number }
  | { id: number; cmd: 'sample' }
  | { id: number; cmd: 'check' }
  | { id: number; cmd: 'profile' }
  | { id: number; cmd: 'finish' }
  | { id: number; cmd: 'shapes' }
  | { id: number; cmd: 'quit' };

/** Per training step of ours, measured over the timed samples (after the first step). */
export interface StepCounters {
  steps: number;
  submitsPerStep: number;
  readbacksPerStep: number;
  dispatchesPerStep: number;
  /** CPU time the engine spent scheduling, encoding and submitting the step's run. */
  encodeMsPerStep: number;
  /** Buffers created by the engine's pools over the steps after the first (all pools). */
  allocationsAfterFirst: number;
  allocationsByPool: { tensors: number; uniforms: number; readback: number };
  /** Most bytes of the tensor pool handed out at once during one step. */
  peakBytes: number;
  /** Bytes of the tensor pool's buffers, live and free, at the end. */
  poolBytes: number;
  required: RequiredBytes;
}

/** What must be alive at once, estimated from one step's recorded graph. */
export interface RequiredBytes {
  params: number;
  /** Optimizer state (LARS momentum buffers). */
  optimizer: number;
  /** Batch-norm running statistics. */
  buffers: number;
  /** Forward tensors that backward nodes read (saved activations). */
  saved: number;
  /** Other leaves the step reads: the image set on the GPU, the loader's parameters. */
  otherLeaves: number;
  /** params + optimizer + buffers + saved + otherLeaves. */
  total: number;
  /** Peak of exactly-sized live tensors walking the step's nodes in the engine's order. */
  livenessPeak: number;
}

export interface InfoReply {
  contestant: Contestant;
  adapter: string;
  version: string;
}

export interface PrepareReply {
  /** Operations per sample, chosen so that a sample lasts about targetMs. */
  inner: number;
  /** The first call (compilation included), ms. */
  firstMs: number;
  note?: string;
}

/** One operation of the prepared case under Engine.profile (ours only). */
export interface ProfileReply {
  /** Wall time of the profiled operation, ms. */
  ms: number;
  source: TimingSource;
  /** Every dispatch: the op that recorded it and its milliseconds. */
  kernels: { label: string; ms: number }[];
}

export interface SampleReply {
  /** Wall time per operation, ms. */
  ms: number;
  /** CPU time of the process's threads other than the main one (lavapipe's), per op, ms. */
  cpuMs?: number;
}

/** [sum, sum of squares] of each output of one operation, in float64. */
export type CheckReply = [number, number][];

export interface FinishReply {
  counters?: StepCounters;
}

export interface ShapesReply {
  convs: { x: number[]; w: number[]; stride: number; padding: number; needDx: boolean;
    count: number; where: string }[];
  batchnorms: { x: number[]; relu: boolean; count: number }[];
  softmaxCe: { rows: number; cols: number; temperature: number }[];
  sinkhorn: { rows: number; cols: number; epsilon: number; iterations: number; count: number }[];
}

export type Reply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string };
