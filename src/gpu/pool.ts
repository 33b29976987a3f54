// A pool of storage buffers keyed by rounded size, so that a training loop that asks
// for the same shapes every step allocates nothing after its first step.

import { debug } from './debug.js';

/** Sizes are rounded up to 256 bytes (the storage offset alignment) below 1 MiB and to
 * 1/16 of the next power of two above it, so that near sizes share buffers. */
export function roundSize(bytes: number): number {
  const b = Math.max(bytes, 4);
  if (b <= 1 << 20) return Math.ceil(b / 256) * 256;
  const step = 2 ** Math.ceil(Math.log2(b)) / 16;
  return Math.ceil(b / step) * step;
}

export interface PoolStats {
  /** Buffers created since the pool was made. */
  allocations: number;
  /** Buffers handed out and not yet returned. */
  live: number;
  liveBytes: number;
  /** Most bytes ever handed out at once. */
  peakBytes: number;
  /** Bytes held by the pool: live and free. */
  totalBytes: number;
}

export class BufferPool {
  /**
   * Free buffers per size and usage, newest first: acquire takes the oldest, so that a step
   * that acquires and releases in the same order as the step before gets the same buffers
   * again, whatever order the last step's buffers came back in (and its bind groups, cached
   * by buffer, are found again instead of made anew).
   */
  private free = new Map<string, GPUBuffer[]>();
  private serial = new WeakMap<GPUBuffer, number>();
  private nextSerial = 0;
  private sizes = new WeakMap<GPUBuffer, number>();
  private all = new Set<GPUBuffer>();
  readonly stats: PoolStats = {
    allocations: 0, live: 0, liveBytes: 0, peakBytes: 0, totalBytes: 0,
  };

  constructor(private device: GPUDevice, private label: string) {}

  acquire(bytes: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const size = roundSize(bytes);
    const key = `${size}:${usage}`;
    let buf = this.free.get(key)?.pop();
    if (!buf) {
      buf = this.device.createBuffer({ size, usage, label: `${this.label}:${size}` });
      this.sizes.set(buf, size);
      this.serial.set(buf, this.nextSerial++);
      this.all.add(buf);
      this.stats.allocations++;
      this.stats.totalBytes += size;
      debug(2, `pool: new buffer of ${size} bytes (${this.all.size} in all)`);
    }
    this.stats.live++;
    this.stats.liveBytes += size;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.liveBytes);
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) throw new Error('BufferPool.release: buffer is not from this pool');
    const key = `${size}:${buf.usage}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    // Sorted by serial, descending: the oldest at the end, where acquire pops.
    const n = this.serial.get(buf)!;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.serial.get(list[mid])! > n) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf);
    this.stats.live--;
    this.stats.liveBytes -= size;
  }

  /** Frees every buffer, handed out or not. */
  destroy(): void {
    for (const b of this.all) b.destroy();
    this.all.clear();
    this.free.clear();
  }
}
