// Tensors and the nodes that produce them. A tensor is either a leaf that owns a GPU
// buffer (uploaded data, parameters, optimizer state) or the pending output of a node;
// nothing runs until a value is asked for (see engine.ts).

import type { GpuContext, DispatchSpec, BufferRange } from '../gpu/context.js';
import type { Recorder } from '../gpu/context.js';
import type { Engine } from './engine.js';

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/**
 * pending: produced by a node that has not run; ready: has a buffer; released: an
 * intermediate of an earlier run whose buffer went back to the pool; disposed: freed by
 * the user.
 */
export type TensorState = 'pending' | 'ready' | 'released' | 'disposed';

let nextTensorId = 1;

export class Tensor {
  readonly id = nextTensorId++;
  readonly shape: Shape;
  readonly size: number;
  readonly engine: Engine;
  /** The node that produces this tensor; null for leaves. */
  node: Node | null;
  outputIndex: number;
  /**
   * The GPU buffer. Write a leaf's values only through write() or an op that records the
   * leaf in `mutates`: both advance `version`, on which buffers derived from the leaf (a
   * convolution's packed weights) depend.
   */
  buffer: GPUBuffer | null = null;
  /**
   * How many times this leaf's values have been replaced (write(), in-place ops), counted in
   * the order the device sees them; 0 for tensors never written after creation.
   */
  version = 0;
  state: TensorState;
  requiresGrad: boolean;
  /** Materialize at the next run even if no target needs it. */
  kept = false;
  name: string;

  constructor(engine: Engine, shape: Shape, node: Node | null, outputIndex: number,
    requiresGrad: boolean, name?: string) {
    this.engine = engine;
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    this.node = node;
    this.outputIndex = outputIndex;
    this.state = node ? 'pending' : 'ready';
    this.requiresGrad = requiresGrad;
    this.name = name ?? (node ? `${node.op}#${node.id}` : `leaf#${this.id}`);
  }

  get rank(): number {
    return this.shape.length;
  }

  get bytes(): number {
    return this.size * 4;
  }

  /** A short description for error messages: name and shape. */
  describe(): string {
    return `${this.name} ${shapeStr(this.shape)}`;
  }

  /** Keeps this intermediate's value after the run that computes it. */
  keep(): this {
    this.kept = true;
    return this;
  }

  /** Runs what is pending (one submission) and returns the values. */
  read(): Promise<Float32Array> {
    return this.engine.read(this);
  }

  /** Returns the buffer to the engine's pool; the tensor can no longer be used. */
  dispose(): void {
    this.engine.disposeTensor(this);
  }

  /** Copies new values into a leaf's buffer (ordered before the next run). */
  write(data: ArrayLike<number>): void {
    this.engine.writeTensor(this, data);
  }
}

/** What an op's encode function gets: its buffers and a way to record dispatches. */
export interface EncodeContext {
  readonly node: Node;
  readonly gpu: GpuContext;
  readonly recorder: Recorder;
  /** The buffer range of input i (exactly its bytes). */
  input(i: number): BufferRange;
  output(i: number): BufferRange;
  /** The range of a mutated tensor (node.mutates[i]). */
  mutated(i: number): BufferRange;
  dispatch(spec: DispatchSpec): void;
  /** A temporary buffer released to the pool once this node is encoded. */
  scratch(bytes: number, opts?: { uniform?: boolean }): BufferRange;
  /**
   * A buffer of `bytes` derived from input i (a layout of its values the kernel prefers),
   * named by `key`. For a leaf it is kept while the leaf lives, and `valid` says whether it
   * still holds what was derived from the leaf's current version: if not, the caller must
   * record the dispatches that fill it, in this node. For any other input it is a scratch
   * buffer, never valid.
   */
  derived(i: number, key: string, bytes: number, opts?: { uniform?: boolean }):
    { range: BufferRange; valid: boolean };
}

export interface Node {
  readonly id: number;
  readonly op: string;
  readonly inputs: Tensor[];
  readonly outputs: Tensor[];
  readonly attrs: Readonly<Record<string, unknown>>;
  /** Leaves this node writes in place (optimizer state, running statistics). */
  readonly mutates: Tensor[];
  encode(ctx: EncodeContext): void;
  scheduled: boolean;
}
