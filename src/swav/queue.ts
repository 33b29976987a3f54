// SwAV's queue: recent embeddings of each assignment crop, scored against the current
// prototypes at every step and put before the batch's scores when computing codes, once
// full. A ring buffer: Sinkhorn's result for the batch rows does not depend on the order
// of the queued rows, so rows are overwritten in place instead of shifted.

import type { Engine } from '../graph/engine.js';
import type { Tensor } from '../graph/tensor.js';
import { stopGradient } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { assignRows, sliceRows } from '../ops/shape.js';
import { fail } from '../ops/util.js';

export interface QueueState {
  /** Rows written so far, up to the length. */
  filled: number;
  /** Next row to overwrite. */
  next: number;
}

export class SwavQueue {
  readonly tensors: Tensor[];
  state: QueueState = { filled: 0, next: 0 };

  constructor(readonly engine: Engine, readonly length: number, readonly dim: number,
    readonly assignCrops: number, readonly batch: number) {
    if (!Number.isInteger(length) || length < batch || length % batch !== 0) {
      fail('SwavQueue', `queue length ${length} must be a positive multiple of the batch ` +
        `size ${batch}`);
    }
    this.tensors = Array.from({ length: assignCrops }, (_, i) =>
      engine.zeros([length, dim], { name: `queue.${i}` }));
  }

  get full(): boolean {
    return this.state.filled >= this.length;
  }

  /** Scores of the queued embeddings against the prototypes, or nulls until full. */
  scores(prototypes: Tensor): (Tensor | null)[] {
    if (!this.full) return this.tensors.map(() => null);
    return this.engine.noGrad(() =>
      this.tensors.map((q) => matmul(q, prototypes, { transB: true })));
  }

  /** Writes each assignment crop's embeddings (rows crop*B.. of z) into the queue. */
  push(z: Tensor, assign: number[]): void {
    const B = this.batch;
    assign.forEach((crop, i) => {
      const rows = this.engine.noGrad(() => stopGradient(sliceRows(z, crop * B, (crop + 1) * B)));
      assignRows(this.tensors[i], this.state.next, rows);
    });
    this.state = {
      filled: Math.min(this.length, this.state.filled + B),
      next: (this.state.next + B) % this.length,
    };
  }
}
