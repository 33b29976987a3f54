// The engine users hold: leaves, lazily recorded nodes, and the executor that runs them.
//
// Ops record nodes; nothing touches the GPU until a value is asked for (read) or run()
// is called. A run takes every pending node the targets need plus every pending node
// that writes a leaf in place (optimizer updates, running statistics), in creation order
// -- which is a topological order, since a node's inputs exist before it -- and encodes
// them into one command buffer. An intermediate's buffer goes back to the pool right
// after its last consumer is encoded; later dispatches in the same command buffer may
// reuse it, which WebGPU orders correctly.

import { BufferUsage, GpuContext, STORAGE_USAGE, type BufferRange, type DispatchSpec,
  type DispatchTiming, type TimingSource } from '../gpu/context.js';
import { debug, debugLevel } from '../gpu/debug.js';
import { DeviceLostError, LimitError, OpArgumentError, ShaderError } from '../gpu/errors.js';
import { Tensor, sizeOf, shapeStr, type EncodeContext, type Node, type Shape } from './tensor.js';

let nextNodeId = 1;

/**
 * Refuses an array holding anything but numbers (a typed array holds nothing else): Float32Array
 * would turn a string or an object into NaN without a word.
 */
function checkNumbers(what: string, data: ArrayLike<number>): void {
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    throw new OpArgumentError(`${what}: data is a ${data.constructor.name}; float32 tensors ` +
      'take numbers (convert with Float32Array.from(data, Number))');
  }
  if (ArrayBuffer.isView(data)) return;
  for (let i = 0; i < data.length; i++) {
    const v: unknown = data[i];
    if (typeof v !== 'number') {
      throw new OpArgumentError(`${what}: data[${i}] is ${v === null ? 'null' : typeof v}` +
        `${typeof v === 'string' ? ` ${JSON.stringify(v)}` : ''}, not a number`);
    }
  }
}

/** A buffer derived from a leaf (EncodeContext.derived) and the leaf version it holds. */
interface Derived {
  buffer: GPUBuffer;
  bytes: number;
  usage: number;
  /** The leaf's version when the dispatches that fill it were recorded; -1 for none. */
  version: number;
}

export interface RecordSpec {
  op: string;
  inputs: Tensor[];
  /** Shapes of the outputs. */
  outputs: Shape[];
  attrs?: Record<string, unknown>;
  encode: (ctx: EncodeContext) => void;
  mutates?: Tensor[];
  /** False for ops whose outputs never carry gradient (codes, argmax, updates). */
  differentiable?: boolean;
}

export interface RunStats {
  nodes: number;
  dispatches: number;
  allocations: number;
  ms: number;
}

/** What Engine.profile returns. */
export interface Profile<T> {
  /** What the profiled function returned. */
  result: T;
  /** 'device': timestamps written by the device; 'wall': each dispatch run alone. */
  source: TimingSource;
  /** Every dispatch of the profiled runs, in the order they ran. */
  kernels: DispatchTiming[];
}

export class Engine {
  readonly gpu: GpuContext;
  private pending: Node[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  /** Runs scheduled but not yet submitted; writes wait behind them. */
  private unsubmitted = 0;
  private noGradDepth = 0;
  private finalizer = new FinalizationRegistry<GPUBuffer>((buf) => {
    if (!this.gpu.lost) this.gpu.pool.release(buf);
  });
  /** Stats of the last run, for the benchmark and debug output. */
  lastRun: RunStats = { nodes: 0, dispatches: 0, allocations: 0, ms: 0 };
  private keepAlive: unknown;
  /** Open profile() calls: each collects the timings of every run submitted meanwhile. */
  private profilers = new Set<Promise<DispatchTiming[]>[]>();
  /** Buffers derived from leaves, by leaf and key; freed with the leaf. */
  private derivedOf = new WeakMap<Tensor, Map<string, Derived>>();

  private onDispose: (() => void) | undefined;

  /**
   * `keepAlive` holds objects that must outlive the device (Dawn's GPU object in Node);
   * `onDispose` runs once the engine is disposed (Node: releases its quiet waits).
   */
  constructor(gpu: GpuContext, keepAlive?: unknown, onDispose?: () => void) {
    this.gpu = gpu;
    this.keepAlive = keepAlive;
    this.onDispose = onDispose;
  }

  get limits(): GPUSupportedLimits {
    return this.gpu.limits;
  }

  // ---- leaves -------------------------------------------------------------------------

  private checkShape(what: string, shape: Shape): void {
    if (!Array.isArray(shape)) {
      throw new OpArgumentError(`${what}: shape must be an array of dimensions, got ` +
        `${JSON.stringify(shape) ?? typeof shape}`);
    }
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) {
        throw new OpArgumentError(`${what}: shape ${JSON.stringify(shape)} must have positive ` +
          `integer dimensions`);
      }
    }
    const bytes = sizeOf(shape) * 4;
    if (bytes > this.gpu.limits.maxStorageBufferBindingSize) {
      throw new LimitError(`${what}: shape ${shapeStr(shape)} needs ${bytes} bytes, past ` +
        `the adapter's maxStorageBufferBindingSize ` +
        `(${this.gpu.limits.maxStorageBufferBindingSize})`);
    }
  }

  private allocate(t: Tensor): GPUBuffer {
    const buf = this.gpu.pool.acquire(t.bytes, STORAGE_USAGE);
    t.buffer = buf;
    this.finalizer.register(t, buf, t);
    return buf;
  }

  /** A leaf holding `data` (float32). */
  tensor(data: ArrayLike<number>, shape: Shape, opts: { name?: string;
    requiresGrad?: boolean } = {}): Tensor {
    const name = opts.name ?? 'tensor';
    this.checkShape(name, shape);
    if (data === null || typeof data !== 'object' || typeof data.length !== 'number') {
      throw new OpArgumentError(`${name}: data must be an array or typed array of numbers, ` +
        `got ${data === null ? 'null' : typeof data}`);
    }
    if (data.length !== sizeOf(shape)) {
      throw new OpArgumentError(`${name}: ${data.length} values do not fill shape ` +
        `${shapeStr(shape)} (${sizeOf(shape)} values)`);
    }
    checkNumbers(name, data);
    this.gpu.checkAlive(name);
    const t = new Tensor(this, shape, null, 0, opts.requiresGrad ?? false, opts.name);
    this.allocate(t);
    this.writeTensor(t, data);
    return t;
  }

  zeros(shape: Shape, opts: { name?: string; requiresGrad?: boolean } = {}): Tensor {
    this.checkShape(opts.name ?? 'zeros', shape);
    return this.tensor(new Float32Array(sizeOf(shape)), shape, opts);
  }

  /** A trainable leaf: gradients flow to it. */
  param(data: ArrayLike<number>, shape: Shape, name: string): Tensor {
    return this.tensor(data, shape, { name, requiresGrad: true });
  }

  writeTensor(t: Tensor, data: ArrayLike<number>): void {
    this.gpu.checkNotLost(`write to ${t.describe()}`);
    if (t.node || !t.buffer) {
      throw new OpArgumentError(`write: ${t.describe()} is not a leaf with a buffer ` +
        `(state ${t.state})`);
    }
    if (data.length !== t.size) {
      throw new OpArgumentError(`write: ${data.length} values for ${t.describe()}`);
    }
    checkNumbers(`write to ${t.describe()}`, data);
    const f = data instanceof Float32Array ? data : Float32Array.from(data);
    // The version advances when the write is handed to the queue, so runs encoded before
    // it see the old version and runs encoded after it the new one, as the device does.
    if (this.unsubmitted === 0) {
      this.gpu.device.queue.writeBuffer(t.buffer, 0, f.buffer, f.byteOffset, f.byteLength);
      t.version++;
      return;
    }
    // A run recorded earlier has not been submitted yet (it is compiling): the write must
    // land after it, so it waits its turn on the run queue with a copy of the data.
    const copy = f.slice();
    const buf = t.buffer;
    this.queue = this.queue.then(() => {
      if (!this.gpu.lost) this.gpu.device.queue.writeBuffer(buf, 0, copy);
      t.version++;
    });
  }

  disposeTensor(t: Tensor): void {
    if (t.state === 'disposed') return;
    // A pending in-place update runs with the next run whatever its targets, so one that
    // reads or writes t would fail every later run: refuse rather than break the engine.
    // (A pure pending node that reads t fails only if it is ever asked for, and says why.)
    const user = this.pending.find((n) => n.mutates.length > 0 &&
      (n.inputs.includes(t) || n.mutates.includes(t)));
    if (user && !this.gpu.lost) {
      throw new OpArgumentError(`dispose: ${t.describe()} is still used by the pending op ` +
        `${user.op}#${user.id}; run the engine first (engine.run()) or dispose it later`);
    }
    if (t.buffer && !this.gpu.lost) {
      this.finalizer.unregister(t);
      this.gpu.pool.release(t.buffer);
    }
    for (const d of this.derivedOf.get(t)?.values() ?? []) {
      this.finalizer.unregister(d);
      if (!this.gpu.lost) this.gpu.pool.release(d.buffer);
    }
    this.derivedOf.delete(t);
    t.buffer = null;
    t.state = 'disposed';
  }

  // ---- recording ----------------------------------------------------------------------

  /**
   * Runs `fn` with gradient tracking off: its outputs require no gradient. Tracking is off
   * while `fn` runs synchronously (ops record synchronously), so an async function is
   * refused: tracking could not stay off across its awaits without also holding it off for
   * whatever else runs meanwhile. A function that records its ops and returns a promise
   * (of a read, say) is fine.
   */
  noGrad<T>(fn: () => T): T {
    if (typeof fn !== 'function') {
      throw new OpArgumentError(`noGrad: expects a function, got ${typeof fn}`);
    }
    const asyncFn = fn.constructor?.name === 'AsyncFunction';
    if (asyncFn) {
      throw new OpArgumentError('noGrad: expects a synchronous function; an async one would ' +
        'track gradients again after its first await (record the ops inside noGrad, await ' +
        'outside it)');
    }
    this.noGradDepth++;
    try {
      return fn();
    } finally {
      this.noGradDepth--;
    }
  }

  get gradEnabled(): boolean {
    return this.noGradDepth === 0;
  }

  /** Records a node; used by every op. Checks that inputs are usable. */
  record(spec: RecordSpec): Tensor[] {
    // A disposed engine (or a lost device) takes no more work: refused here, not at run.
    this.gpu.checkNotLost(spec.op);
    for (const [i, t] of spec.inputs.entries()) {
      if (t.engine !== this) {
        throw new OpArgumentError(`${spec.op}: input ${i} (${t.describe()}) belongs to ` +
          `another engine`);
      }
      if (t.state === 'released') {
        throw new OpArgumentError(`${spec.op}: input ${i} (${t.describe()}) was an ` +
          `intermediate of an earlier run and its buffer was released; call keep() on it ` +
          `before that run, or build gradients before running`);
      }
      if (t.state === 'disposed') {
        throw new OpArgumentError(`${spec.op}: input ${i} (${t.describe()}) was disposed`);
      }
    }
    for (const [i, t] of (spec.mutates ?? []).entries()) {
      if (t.engine !== this || t.node !== null || t.state !== 'ready') {
        throw new OpArgumentError(`${spec.op}: in-place target ${i} (${t.describe()}) must be ` +
          `a leaf of this engine with a buffer (state ${t.state})`);
      }
    }
    for (const s of spec.outputs) this.checkShape(spec.op, s);
    const requiresGrad = (spec.differentiable ?? true) && this.gradEnabled &&
      spec.inputs.some((t) => t.requiresGrad);
    const node: Node = {
      id: nextNodeId++, op: spec.op, inputs: spec.inputs, outputs: [],
      attrs: spec.attrs ?? {}, mutates: spec.mutates ?? [], encode: spec.encode,
      scheduled: false,
    };
    for (const [i, s] of spec.outputs.entries()) {
      node.outputs.push(new Tensor(this, s, node, i, requiresGrad));
    }
    this.pending.push(node);
    return node.outputs;
  }

  /** Nodes recorded and not yet scheduled, in creation order. */
  get pendingNodes(): readonly Node[] {
    return this.pending;
  }

  /**
   * Drops pending nodes nobody will use (autodiff's dead ends): they never run, and their
   * outputs refuse further use as released intermediates do.
   */
  discard(nodes: Iterable<Node>): void {
    const drop = new Set(nodes);
    for (const n of drop) {
      if (n.scheduled || n.mutates.length) {
        throw new Error(`discard: node ${n.op}#${n.id} is scheduled or writes in place`);
      }
      for (const t of n.outputs) t.state = 'released';
    }
    this.pending = this.pending.filter((n) => !drop.has(n));
  }

  // ---- running ------------------------------------------------------------------------

  /** Pending nodes needed for `targets`, plus every pending node that mutates a leaf. */
  private schedule(targets: Tensor[]): Node[] {
    const chosen = new Set<Node>();
    const stack: Node[] = [];
    const visit = (n: Node) => {
      if (n.scheduled || chosen.has(n)) return;
      chosen.add(n);
      stack.push(n);
    };
    for (const t of targets) {
      if (!(t instanceof Tensor)) {
        throw new OpArgumentError(`run: targets and reads must be Tensors, got ${typeof t}`);
      }
      if (t.engine !== this) {
        throw new OpArgumentError(`run: ${t.describe()} belongs to another engine`);
      }
      if (t.state === 'pending' && t.node) visit(t.node);
      else if (t.state !== 'ready' && t.state !== 'pending') {
        throw new OpArgumentError(`run: ${t.describe()} is ${t.state}`);
      }
    }
    for (const n of this.pending) if (n.mutates.length) visit(n);
    while (stack.length) {
      const n = stack.pop()!;
      for (const t of n.inputs) if (t.state === 'pending' && t.node) visit(t.node);
    }
    const nodes = [...chosen].sort((a, b) => a.id - b.id);
    for (const n of nodes) n.scheduled = true;
    this.pending = this.pending.filter((n) => !n.scheduled);
    return nodes;
  }

  /**
   * Runs what the targets need (and pending in-place updates) as one submission.
   * Resolves once submitted; `reads` get their values once the GPU is done.
   */
  run(targets: Tensor[] = [], reads: Tensor[] = []): Promise<Float32Array[]> {
    const nodes = this.schedule([...targets, ...reads]);
    // Tensors only read are not kept: their buffers return to the pool after the copy.
    // A target keeps its siblings (the other outputs of its node, e.g. top-k's indices).
    const materialize = new Set<Tensor>(targets);
    for (const t of targets) for (const o of t.node?.outputs ?? []) materialize.add(o);
    return this.enqueue(nodes, materialize, reads).then((ps) => Promise.all(ps));
  }

  /** Submits what the targets need without waiting for any value. */
  flush(targets: Tensor[] = []): Promise<void> {
    const nodes = this.schedule(targets);
    return this.enqueue(nodes, new Set(targets), []).then(() => undefined);
  }

  private enqueue(nodes: Node[], materialize: Set<Tensor>, reads: Tensor[]):
    Promise<Promise<Float32Array>[]> {
    this.unsubmitted++;
    const job = this.queue.then(() => this.execute(nodes, materialize, reads).catch((e) => {
      this.unrun(nodes);
      throw e;
    })).finally(() => {
      this.unsubmitted--;
    });
    this.queue = job.catch(() => undefined);
    return job;
  }

  /** Runs what `t` needs and returns its values; `t` keeps its buffer afterwards. */
  read(t: Tensor): Promise<Float32Array> {
    return this.run([t], [t]).then((r) => r[0]);
  }

  private async execute(nodes: Node[], materialize: Set<Tensor>,
    reads: Tensor[]): Promise<Promise<Float32Array>[]> {
    // Derived buffers the run fills: if it fails before its submission, they hold nothing.
    const filling: Derived[] = [];
    try {
      return await this.encodeAndSubmit(nodes, materialize, reads, filling);
    } catch (e) {
      for (const d of filling) d.version = -1;
      // A shader only the reflection step parsed (and failed to): the compiler says where.
      if (e instanceof ShaderError && e.wgsl) throw await this.gpu.diagnose(e);
      throw e;
    }
  }

  /**
   * The derived buffer `key` of leaf t, made (holding nothing yet) where it does not exist or
   * has another size or usage.
   */
  private derivedBuffer(t: Tensor, key: string, bytes: number, usage: number): Derived {
    let byKey = this.derivedOf.get(t);
    if (!byKey) {
      byKey = new Map();
      this.derivedOf.set(t, byKey);
    }
    let d = byKey.get(key);
    if (d && (d.bytes !== bytes || d.usage !== usage)) {
      this.finalizer.unregister(d);
      this.gpu.pool.release(d.buffer);
      d = undefined;
    }
    if (!d) {
      d = { buffer: this.gpu.pool.acquire(bytes, usage), bytes, usage, version: -1 };
      byKey.set(key, d);
      // Freed with the leaf: disposeTensor, or when the leaf is collected.
      this.finalizer.register(t, d.buffer, d);
    }
    return d;
  }

  private async encodeAndSubmit(nodes: Node[], materialize: Set<Tensor>, reads: Tensor[],
    filling: Derived[]): Promise<Promise<Float32Array>[]> {
    const t0 = performance.now();
    const allocs0 = this.gpu.pool.stats.allocations;
    if (this.gpu.lost) throw new DeviceLostError(`run: ${'the device is lost or disposed'}`);
    const rec = this.gpu.recorder(`run of ${nodes.length} nodes`);
    // Last consumer of each tensor within this run.
    const lastUse = new Map<Tensor, number>();
    nodes.forEach((n, i) => {
      for (const t of n.inputs) lastUse.set(t, i);
    });
    const inRun = new Set(nodes);
    // Pending nodes outside this run still need their inputs later.
    const neededLater = new Set<Tensor>();
    for (const n of this.pending) for (const t of n.inputs) neededLater.add(t);
    const readSet = new Set(reads);
    const keep = (t: Tensor) => materialize.has(t) || t.kept || neededLater.has(t) ||
      readSet.has(t);
    const range = (t: Tensor): BufferRange => {
      if (!t.buffer) {
        throw new OpArgumentError(`run: ${t.describe()} has no buffer (state ${t.state})`);
      }
      return { buffer: t.buffer, offset: 0, size: t.bytes };
    };
    const transient = (t: Tensor) => t.node !== null && inRun.has(t.node) && !keep(t);
    for (const [i, node] of nodes.entries()) {
      for (const t of node.inputs) {
        if (!t.buffer) {
          throw new OpArgumentError(`${node.op}: input ${t.describe()} has no buffer ` +
            `(state ${t.state})`);
        }
      }
      for (const t of node.outputs) this.allocate(t);
      const scratch: GPUBuffer[] = [];
      const ctx: EncodeContext = {
        node, gpu: this.gpu, recorder: rec,
        input: (k) => range(node.inputs[k]),
        output: (k) => range(node.outputs[k]),
        mutated: (k) => range(node.mutates[k]),
        dispatch: (spec: DispatchSpec) => rec.dispatch({ label: node.op, ...spec }),
        scratch: (bytes, opts) => {
          const b = this.gpu.pool.acquire(bytes,
            opts?.uniform ? STORAGE_USAGE | BufferUsage.UNIFORM : STORAGE_USAGE);
          scratch.push(b);
          return { buffer: b, offset: 0, size: Math.ceil(bytes / 4) * 4 };
        },
        derived: (k, key, bytes, opts) => {
          const t = node.inputs[k];
          if (t.node !== null) return { range: ctx.scratch(bytes, opts), valid: false };
          const d = this.derivedBuffer(t, key, bytes,
            opts?.uniform ? STORAGE_USAGE | BufferUsage.UNIFORM : STORAGE_USAGE);
          const valid = d.version === t.version;
          if (!valid) {
            d.version = t.version;
            filling.push(d);
          }
          return { range: { buffer: d.buffer, offset: 0, size: Math.ceil(bytes / 4) * 4 }, valid };
        },
      };
      try {
        node.encode(ctx);
      } finally {
        for (const b of scratch) this.gpu.pool.release(b);
      }
      // In-place writes: what is derived from the old values is stale from here on.
      for (const t of node.mutates) t.version++;
      for (const t of node.outputs) {
        t.state = 'ready';
        if (transient(t) && !lastUse.has(t)) this.releaseTransient(t);
      }
      for (const t of new Set(node.inputs)) {
        if (lastUse.get(t) === i && transient(t)) this.releaseTransient(t);
      }
    }
    const readIdx = reads.map((t) => rec.readback(range(t).buffer, 0, t.bytes));
    // Read-only tensors go back to the pool once their copy is recorded (copies come last).
    for (const t of readSet) {
      if (t.node && inRun.has(t.node) && !materialize.has(t) && !t.kept && !neededLater.has(t)) {
        this.releaseTransient(t);
      }
    }
    const dispatches = rec.dispatchCount;
    const profilers = [...this.profilers];
    const { reads: promises, timings } = await rec.submit({
      profile: profilers.length > 0 || debugLevel() >= 3 });
    this.lastRun = {
      nodes: nodes.length, dispatches,
      allocations: this.gpu.pool.stats.allocations - allocs0,
      ms: performance.now() - t0,
    };
    if (debugLevel() >= 2) {
      const s = this.lastRun;
      debug(2, `run: ${s.nodes} nodes, ${s.dispatches} dispatches, ${s.allocations} new ` +
        `buffers, encoded in ${s.ms.toFixed(1)} ms`);
    }
    if (timings) {
      for (const p of profilers) p.push(timings);
      if (debugLevel() >= 3) {
        const source = this.gpu.timestamps ? 'device' : 'wall, alone';
        timings.then((ts) => {
          for (const t of ts) debug(3, `${t.label}: ${t.ms.toFixed(3)} ms (${source})`, t.label);
        }, () => undefined);
      }
    }
    return readIdx.map((k) => promises[k].then((ab) => new Float32Array(ab)));
  }

  /**
   * A run that failed before its submission (a shader that does not compile, a wrong
   * binding, a lost device) computed nothing: its nodes go back to pending, so none of
   * their outputs passes for a computed value, and asking again fails the same way.
   */
  private unrun(nodes: Node[]): void {
    // In-place updates of a failed run are dropped, not retried: they would join every
    // later run and fail it again. Pure nodes go back to pending, so a read of their
    // outputs fails the same way instead of returning zeros.
    for (const n of nodes) {
      if (n.mutates.length) {
        n.scheduled = true;
        for (const t of n.outputs) t.state = 'released';
        continue;
      }
      n.scheduled = false;
      for (const t of n.outputs) {
        if (t.state === 'disposed') continue;
        if (t.buffer) {
          this.finalizer.unregister(t);
          if (!this.gpu.lost) this.gpu.pool.release(t.buffer);
        }
        t.buffer = null;
        t.state = 'pending';
      }
    }
    this.pending = [...nodes.filter((n) => !n.mutates.length), ...this.pending]
      .sort((a, b) => a.id - b.id);
  }

  private releaseTransient(t: Tensor): void {
    if (t.buffer) {
      this.finalizer.unregister(t);
      this.gpu.pool.release(t.buffer);
    }
    t.buffer = null;
    t.state = 'released';
  }

  /**
   * Runs `fn` and times every dispatch of the runs the engine submits until it returns (or
   * its promise settles) and those runs are submitted: on adapters with timestamp queries
   * by the device's own timestamps around each dispatch, the runs still one submission
   * each (source 'device'); elsewhere each dispatch is submitted alone and awaited (source
   * 'wall': slower, and each time includes a submission and a wait). Resolves once every
   * profiled dispatch has finished. Runs of other callers made meanwhile are timed too.
   */
  async profile<T>(fn: () => T | Promise<T>): Promise<Profile<T>> {
    const collected: Promise<DispatchTiming[]>[] = [];
    this.profilers.add(collected);
    let result: T;
    try {
      result = await fn();
      // Runs fn scheduled but did not await are profiled too.
      await this.queue;
    } catch (e) {
      // Nobody will read these times: a run's failure (a lost device) must not go unhandled.
      for (const p of collected) p.catch(() => undefined);
      throw e;
    } finally {
      this.profilers.delete(collected);
    }
    const kernels = (await Promise.all(collected)).flat();
    return { result, source: this.gpu.timestamps ? 'device' : 'wall', kernels };
  }

  /** Waits until everything submitted so far has finished on the GPU. */
  async sync(): Promise<void> {
    await this.queue;
    if (!this.gpu.lost) await this.gpu.device.queue.onSubmittedWorkDone();
  }

  /** Frees the device; the engine refuses work afterwards. */
  async dispose(): Promise<void> {
    try {
      await this.queue;
    } catch {
      // A failed run still leaves a device to free.
    }
    this.pending = [];
    // Readbacks already submitted are delivered first: destroying the device under a
    // pending map left Dawn's threads in a state that crashed the next device.
    if (!this.gpu.lost) await this.gpu.idle();
    if (!this.gpu.lost) this.gpu.destroy();
    this.keepAlive = undefined;
    const done = this.onDispose;
    this.onDispose = undefined;
    done?.();
  }
}
