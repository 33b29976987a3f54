// The GPU layer: one device, its shaders and pipelines, a buffer pool, and a recorder
// that turns dispatch descriptions into one command buffer per run.
//
// Every kernel is a `.wgsl` file in shaders/; its bind group layout and uniform struct
// layout are read from the source (reflect.ts). A dispatch names its buffers and uniform
// members by the names the WGSL gives them, and a wrong or missing name is an error that
// names the shader and the binding.

import { debug, debugLevel } from './debug.js';
import { BindingError, DeviceLostError, LimitError, ShaderError } from './errors.js';
import { BufferPool, type PoolStats } from './pool.js';
import { reflectShader, type EntryInfo, type ShaderInfo } from './reflect.js';

/** Returns the WGSL text of `shaders/<name>.wgsl`. */
export type ShaderLoader = (name: string) => string;

export interface BufferRange {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

export interface DispatchSpec {
  /** Shader file name without `.wgsl`. */
  shader: string;
  /** Entry point; default `main`. */
  entry?: string;
  /** Pipeline-overridable constants (tile and workgroup sizes); part of the cache key. */
  overrides?: Record<string, number>;
  bindings: Record<string, GPUBuffer | BufferRange>;
  /** Members of the entry's uniform struct, by name. */
  uniforms?: Record<string, number | readonly number[]>;
  /** A count of workgroups (folded into x and y past the per-dimension limit), or x, y, z. */
  workgroups: number | readonly [number, number, number];
  /** Shown in errors and debug output; defaults to shader:entry. */
  label?: string;
}

/** GPUBufferUsage's values; the global exists only once a WebGPU implementation loads. */
export const BufferUsage = {
  MAP_READ: 1, MAP_WRITE: 2, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128,
  QUERY_RESOLVE: 512,
} as const;

/** One dispatch of a profiled run and the time it took. */
export interface DispatchTiming {
  /** The dispatch's label: the op that recorded it (conv2d, batchNorm, ...). */
  label: string;
  /** The kernel that ran: `shader:entry{overrides}`. */
  kernel: string;
  /** Workgroups dispatched (before folding into two dimensions). */
  workgroups: number;
  /**
   * Milliseconds: between the timestamps the device wrote at the start and end of the
   * dispatch's own compute pass (source 'device'), or the wall time of submitting it alone
   * and waiting for it (source 'wall', where the adapter lacks timestamp queries).
   */
  ms: number;
}

/** Where a profile's times come from; see DispatchTiming.ms. */
export type TimingSource = 'device' | 'wall';

/** What Recorder.submit returns: the readbacks' values and, when profiled, the times. */
export interface Submitted {
  reads: Promise<ArrayBuffer>[];
  /** Per dispatch, in recorded order; null unless the run was profiled. */
  timings: Promise<DispatchTiming[]> | null;
}

/** Queries per query set: WebGPU's limit on a set's count. */
const QUERIES_PER_SET = 4096;
export const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

interface Kernel {
  key: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  entry: EntryInfo;
  label: string;
}

type Command =
  | { kind: 'dispatch'; spec: DispatchSpec; entry: EntryInfo; key: string;
      uniformOffset: number; groups: [number, number, number]; requested: number }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number;
      size: number }
  | { kind: 'clear'; buffer: GPUBuffer; offset: number; size: number };

const UNIFORM_ALIGN = 256;
/** Bind groups kept before the cache starts again (a SwAV step makes about 350). */
const BIND_GROUP_CACHE = 4096;

/** Turns a workgroup count into a grid that fits the per-dimension limit. */
export function foldWorkgroups(count: number, maxPerDim: number): [number, number, number] {
  if (!Number.isInteger(count) || count < 0) {
    throw new LimitError(`workgroup count ${count} is not a non-negative integer`);
  }
  if (count <= maxPerDim) return [count, 1, 1];
  const y = Math.ceil(count / maxPerDim);
  if (y > maxPerDim) {
    throw new LimitError(`${count} workgroups exceed ${maxPerDim}^2 even when folded`);
  }
  return [maxPerDim, y, 1];
}

export interface GpuContextOptions {
  device: GPUDevice;
  adapterInfo: string;
  loadShader: ShaderLoader;
  /** Called once if the device is lost; the engine refuses work afterwards. */
  onLost?: (message: string) => void;
}

export class GpuContext {
  readonly device: GPUDevice;
  readonly limits: GPUSupportedLimits;
  readonly adapterInfo: string;
  readonly pool: BufferPool;
  private uniformPool: BufferPool;
  private stagingPool: BufferPool;
  /** Readbacks whose map is pending: destroying the device under them crashes Dawn. */
  private inflightMaps = new Set<Promise<void>>();
  private loadShader: ShaderLoader;
  private shaders =
    new Map<string, { info: ShaderInfo; source: string; module?: GPUShaderModule }>();
  private kernels = new Map<string, Kernel>();
  private compiling = new Map<string, Promise<Kernel>>();
  /**
   * Bind groups by kernel and bound ranges. A training loop binds the same pooled buffers
   * every step, and each createBindGroup is a native call of 10-20 us (a 1 ms conv2d call
   * spent 0.02-0.04 ms making its two). Pooled buffers live as long as the context, so an
   * entry never outlives what it binds; the map is emptied past BIND_GROUP_CACHE entries.
   */
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private lostMessage: string | null = null;
  private uncaptured: string[] = [];
  /** Per-adapter choices made by timing (src/ops/tune.ts), keyed by kernel family or shape. */
  readonly tuned = new Map<string, unknown>();
  /**
   * Set where the engine was created to tune (Node: `createEngine({ tune: true })`): callers
   * that know their shapes ahead (the SwAV training loop) then time them before running.
   */
  autotune = false;
  /** Submissions and readbacks since creation, for the benchmark's per-step counts. */
  readonly counters = { submits: 0, readbacks: 0, dispatches: 0 };
  /**
   * Whether profiled runs take device timestamps (the device was created with the
   * 'timestamp-query' feature), rather than each dispatch's wall time submitted alone.
   */
  readonly timestamps: boolean;

  constructor(opts: GpuContextOptions) {
    this.device = opts.device;
    this.limits = opts.device.limits;
    this.adapterInfo = opts.adapterInfo;
    this.timestamps = opts.device.features?.has('timestamp-query') ?? false;
    this.loadShader = opts.loadShader;
    this.pool = new BufferPool(this.device, 'tensor');
    this.uniformPool = new BufferPool(this.device, 'uniforms');
    this.stagingPool = new BufferPool(this.device, 'readback');
    this.device.lost.then((info) => {
      if (this.lostMessage !== null) return;
      this.lostMessage = `GPU device lost (${info.reason}): ${info.message}`;
      opts.onLost?.(this.lostMessage);
    });
    this.device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.uncaptured.push(ev.error.message);
    };
  }

  get lost(): boolean {
    return this.lostMessage !== null;
  }

  /** The three pools' counts: tensors, per-submission uniforms and readback staging. */
  get poolStats(): { tensor: PoolStats; uniforms: PoolStats; readback: PoolStats } {
    return { tensor: this.pool.stats, uniforms: this.uniformPool.stats,
      readback: this.stagingPool.stats };
  }

  /** Throws DeviceLostError, naming `what`, once the device is lost or the engine disposed. */
  checkNotLost(what: string): void {
    if (this.lostMessage !== null) throw new DeviceLostError(`${what}: ${this.lostMessage}`);
  }

  /** checkNotLost, then a ShaderError for any error the device reported since the last. */
  checkAlive(what: string): void {
    this.checkNotLost(what);
    if (this.uncaptured.length) {
      const errs = this.uncaptured.splice(0);
      throw new ShaderError(`${what}: the GPU reported an error earlier: ${errs.join('; ')}`);
    }
  }

  /** Reflection of a shader file (cached); throws ShaderError naming the file. */
  shader(name: string): ShaderInfo {
    let s = this.shaders.get(name);
    if (!s) {
      const source = this.loadShader(name);
      s = { info: reflectShader(`${name}.wgsl`, source), source };
      this.shaders.set(name, s);
    }
    return s.info;
  }

  entryInfo(shader: string, entry = 'main'): EntryInfo {
    const info = this.shader(shader);
    const e = info.entries.get(entry);
    if (!e) {
      throw new BindingError(`${shader}.wgsl has no compute entry point '${entry}' ` +
        `(it has: ${[...info.entries.keys()].join(', ')})`);
    }
    return e;
  }

  private kernelKey(spec: DispatchSpec): string {
    const o = spec.overrides ?? {};
    const parts = Object.keys(o).sort().map((k) => `${k}=${o[k]}`);
    return `${spec.shader}:${spec.entry ?? 'main'}{${parts.join(',')}}`;
  }

  /**
   * Compiles WGSL with the device's compiler: the module, or its errors as
   * `file:line:col: message` each followed by the source line.
   */
  private async compileModule(file: string, source: string):
    Promise<{ module: GPUShaderModule; errors: string | null }> {
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: source, label: file });
    const info = await module.getCompilationInfo();
    const scopeErr = await this.device.popErrorScope();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (!errors.length && !scopeErr) return { module, errors: null };
    const lines = source.split('\n');
    const text = errors.map((m) =>
      `${file}:${m.lineNum}:${m.linePos}: ${m.message}\n    ${lines[m.lineNum - 1] ?? ''}`);
    if (!text.length && scopeErr) text.push(`${file}: ${scopeErr.message}`);
    return { module, errors: text.join('\n') };
  }

  /**
   * The device compiler's account (file:line:col and the line) of WGSL that the reflection
   * step could not parse; `err` itself where the compiler finds nothing wrong.
   */
  async diagnose(err: ShaderError): Promise<ShaderError> {
    if (!err.wgsl || this.lost) return err;
    const { errors } = await this.compileModule(err.wgsl.file, err.wgsl.source);
    return errors ? new ShaderError(`shader compilation failed:\n${errors}`) : err;
  }

  /** Compiles (once) the pipeline of a dispatch; reports WGSL errors as file:line:col. */
  async kernel(spec: DispatchSpec): Promise<Kernel> {
    const key = this.kernelKey(spec);
    const done = this.kernels.get(key);
    if (done) return done;
    let p = this.compiling.get(key);
    if (!p) {
      p = this.compile(spec, key);
      this.compiling.set(key, p);
    }
    try {
      return await p;
    } finally {
      this.compiling.delete(key);
    }
  }

  private async compile(spec: DispatchSpec, key: string): Promise<Kernel> {
    const entryName = spec.entry ?? 'main';
    const entry = this.entryInfo(spec.shader, entryName);
    const s = this.shaders.get(spec.shader)!;
    const file = `${spec.shader}.wgsl`;
    for (const k of Object.keys(spec.overrides ?? {})) {
      if (!entry.overrides.includes(k)) {
        throw new BindingError(`${file}: entry ${entryName} has no override '${k}' ` +
          `(it has: ${entry.overrides.join(', ') || 'none'})`);
      }
    }
    if (!s.module) {
      const { module, errors } = await this.compileModule(file, s.source);
      if (errors) throw new ShaderError(`shader compilation failed:\n${errors}`);
      s.module = module;
      if (debugLevel() >= 4) debug(4, `${file}:\n${s.source}`, spec.shader);
    }
    const layout = this.device.createBindGroupLayout({
      label: key,
      entries: entry.bindings.map((b) => ({
        binding: b.binding,
        visibility: 4 /* GPUShaderStage.COMPUTE */,
        buffer: { type: b.type },
      })),
    });
    this.device.pushErrorScope('validation');
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await this.device.createComputePipelineAsync({
        label: key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout], label: key }),
        compute: { module: s.module, entryPoint: entryName, constants: spec.overrides ?? {} },
      });
    } catch (e) {
      await this.device.popErrorScope();
      throw new ShaderError(`${key}: pipeline creation failed: ${(e as Error).message}`);
    }
    const err = await this.device.popErrorScope();
    if (err) throw new ShaderError(`${key}: pipeline creation failed: ${err.message}`);
    debug(1, `compiled ${key}`, spec.shader);
    const k: Kernel = { key, pipeline, layout, entry, label: key };
    this.kernels.set(key, k);
    return k;
  }

  /** A recorder for one run: dispatches and copies, encoded into one command buffer. */
  recorder(label: string): Recorder {
    this.checkAlive(label);
    return new Recorder(this, label);
  }

  /** The bind group of `kernel` over `entries` (buffer bindings), made once and reused. */
  bindGroup(kernel: Kernel, entries: GPUBindGroupEntry[]): GPUBindGroup {
    let key = kernel.key;
    for (const e of entries) {
      const r = e.resource as GPUBufferBinding;
      let id = this.bufferIds.get(r.buffer);
      if (id === undefined) this.bufferIds.set(r.buffer, (id = this.nextBufferId++));
      key += `|${e.binding}:${id}:${r.offset ?? 0}:${r.size ?? -1}`;
    }
    let group = this.bindGroups.get(key);
    if (!group) {
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.clear();
      group = this.device.createBindGroup({ layout: kernel.layout, entries, label: kernel.label });
      this.bindGroups.set(key, group);
    }
    return group;
  }

  acquireUniforms(bytes: number): GPUBuffer {
    return this.uniformPool.acquire(bytes, BufferUsage.UNIFORM | BufferUsage.COPY_DST);
  }

  releaseUniforms(buf: GPUBuffer): void {
    this.uniformPool.release(buf);
  }

  /** Copies `bytes` from a buffer back to the CPU; one submission, one map. */
  async readBuffer(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.checkAlive('read');
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.acquireStaging(size);
    const enc = this.device.createCommandEncoder({ label: 'readback' });
    enc.copyBufferToBuffer(src, offset, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    this.counters.submits++;
    return this.mapStaging(staging, bytes);
  }

  mapStaging(staging: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    const p = this.mapStagingNow(staging, bytes);
    const tracked = p.then(() => undefined, () => undefined);
    this.inflightMaps.add(tracked);
    void tracked.then(() => this.inflightMaps.delete(tracked));
    return p;
  }

  /** Settles once every readback in flight has been delivered (or has failed). */
  async idle(): Promise<void> {
    await Promise.all([...this.inflightMaps]);
  }

  private async mapStagingNow(staging: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    this.counters.readbacks++;
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
    } catch (e) {
      this.stagingPool.release(staging);
      this.checkAlive('read');
      throw e;
    }
    const out = staging.getMappedRange(0, Math.ceil(bytes / 4) * 4).slice(0, bytes);
    staging.unmap();
    this.stagingPool.release(staging);
    return out;
  }

  /** A mappable buffer for readbacks, reused once unmapped (no allocation per step). */
  acquireStaging(bytes: number): GPUBuffer {
    return this.stagingPool.acquire(Math.max(bytes, 4),
      BufferUsage.MAP_READ | BufferUsage.COPY_DST);
  }

  destroy(): void {
    this.lostMessage ??= 'the engine was disposed';
    this.pool.destroy();
    this.uniformPool.destroy();
    this.stagingPool.destroy();
    this.kernels.clear();
    this.bindGroups.clear();
    this.device.destroy();
  }
}

export class Recorder {
  private commands: Command[] = [];
  private uniformBytes = 0;
  private uniformData = new Uint8Array(new ArrayBuffer(4096));
  private readbacks: { src: GPUBuffer; offset: number; bytes: number; staging?: GPUBuffer }[] = [];

  constructor(private ctx: GpuContext, readonly label: string) {}

  get dispatchCount(): number {
    return this.commands.filter((c) => c.kind === 'dispatch').length;
  }

  /** Records a dispatch; checks bindings and uniforms against the shader's reflection. */
  dispatch(spec: DispatchSpec): void {
    const entryName = spec.entry ?? 'main';
    const entry = this.ctx.entryInfo(spec.shader, entryName);
    const file = `${spec.shader}.wgsl`;
    const where = spec.label ? `${spec.label} (${file}:${entryName})` : `${file}:${entryName}`;
    const wanted = new Set(entry.bindings.map((b) => b.name));
    for (const name of Object.keys(spec.bindings)) {
      if (!wanted.has(name)) {
        throw new BindingError(`${where}: no binding named '${name}' ` +
          `(the shader has: ${[...wanted].join(', ')})`);
      }
    }
    let uniformOffset = -1;
    const ranges: { name: string; buffer: GPUBuffer; offset: number; end: number;
      writable: boolean }[] = [];
    for (const b of entry.bindings) {
      if (b.members) {
        if (spec.bindings[b.name] !== undefined) {
          const members = b.members.map((m) => m.name).join(', ');
          throw new BindingError(`${where}: binding '${b.name}' is the uniform struct the ` +
            `engine fills from \`uniforms\` (members ${members}); pass its members there, ` +
            `not a buffer`);
        }
        uniformOffset = this.packUniforms(where, b.name, b.members, b.size, spec.uniforms ?? {});
        continue;
      }
      const given = spec.bindings[b.name];
      if (!given) throw new BindingError(`${where}: binding '${b.name}' was not given a buffer`);
      const range = 'buffer' in given ? given : { buffer: given as GPUBuffer };
      const offset = range.offset ?? 0;
      const size = range.size ?? range.buffer.size - offset;
      const uniform = b.type === 'uniform';
      const usage = uniform ? BufferUsage.UNIFORM : BufferUsage.STORAGE;
      if (!(range.buffer.usage & usage) || range.buffer.mapState !== 'unmapped') {
        throw new BindingError(`${where}: binding '${b.name}' needs an unmapped buffer made ` +
          `with ${uniform ? 'UNIFORM' : 'STORAGE'} usage; this one has usage ` +
          `${range.buffer.usage} and is ${range.buffer.mapState}`);
      }
      // What WebGPU would reject only when the run is submitted (an invalid bind group, its
      // error reported later, the run's values left as they were): refused here instead.
      const align = uniform ? 'minUniformBufferOffsetAlignment'
        : 'minStorageBufferOffsetAlignment';
      const alignment = this.ctx.limits[align];
      if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0) {
        throw new BindingError(`${where}: binding '${b.name}' has offset ${String(offset)}, ` +
          'not a byte count (a non-negative integer)');
      }
      if (offset % alignment !== 0) {
        throw new BindingError(`${where}: binding '${b.name}' starts at byte ${offset}, not a ` +
          `multiple of the adapter's ${align} (${alignment})`);
      }
      if (Number.isInteger(size) && size > 0 && size < b.minSize) {
        throw new BindingError(`${where}: binding '${b.name}' is ${size} bytes, fewer than ` +
          `the ${b.minSize} its type needs (a runtime-sized array counts one element)`);
      }
      if (!Number.isInteger(size) || size <= 0 || (!uniform && size % 4 !== 0) ||
        offset + size > range.buffer.size) {
        const why = !uniform && size % 4 !== 0 ? ' (a storage binding is whole 4-byte words)' : '';
        throw new BindingError(`${where}: binding '${b.name}' of ${size} bytes at byte ` +
          `${offset} does not fit its buffer of ${range.buffer.size} bytes${why}`);
      }
      const max = uniform ? this.ctx.limits.maxUniformBufferBindingSize
        : this.ctx.limits.maxStorageBufferBindingSize;
      if (size > max) {
        throw new LimitError(`${where}: binding '${b.name}' is ${size} bytes, past the ` +
          `adapter's ${uniform ? 'maxUniformBufferBindingSize' : 'maxStorageBufferBindingSize'} ` +
          `of ${max}`);
      }
      if (uniform && size < b.size) {
        throw new BindingError(`${where}: uniform binding '${b.name}' is ${size} bytes; the ` +
          `shader declares ${b.size}`);
      }
      ranges.push({ name: b.name, buffer: range.buffer, offset, end: offset + size,
        writable: b.type === 'storage' });
    }
    // A buffer written through one binding and bound again, overlapping, in the same dispatch:
    // WebGPU refuses the whole command buffer at submission.
    for (const [i, p] of ranges.entries()) {
      for (const q of ranges.slice(i + 1)) {
        if (p.buffer === q.buffer && (p.writable || q.writable) && p.offset < q.end &&
          q.offset < p.end) {
          throw new BindingError(`${where}: bindings '${p.name}' and '${q.name}' overlap in ` +
            `one buffer (bytes ${Math.max(p.offset, q.offset)} to ${Math.min(p.end, q.end)}) ` +
            `and '${p.writable ? p.name : q.name}' is written: WebGPU allows no such aliasing ` +
            `within a dispatch (write to a separate output)`);
        }
      }
    }
    if (uniformOffset < 0 && spec.uniforms && Object.keys(spec.uniforms).length) {
      throw new BindingError(`${where}: uniforms given but the entry has no uniform binding`);
    }
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    let groups: [number, number, number];
    if (typeof spec.workgroups === 'number') {
      groups = foldWorkgroups(spec.workgroups, max);
    } else {
      groups = [...spec.workgroups] as [number, number, number];
      if (groups.some((g) => g > max)) {
        throw new LimitError(`${where}: workgroups [${groups}] exceed ${max} per dimension`);
      }
    }
    const workgroups = groups[0] * groups[1] * groups[2];
    if (workgroups === 0) return;
    // Before folding: a folded grid may hold up to a row of idle workgroups more.
    const requested = typeof spec.workgroups === 'number' ? spec.workgroups : workgroups;
    this.commands.push({ kind: 'dispatch', spec, entry, key: '', uniformOffset, groups,
      requested });
  }

  private packUniforms(where: string, binding: string, members: NonNullable<
    EntryInfo['bindings'][number]['members']>, size: number,
  values: Record<string, number | readonly number[]>): number {
    for (const k of Object.keys(values)) {
      if (!members.some((m) => m.name === k)) {
        throw new BindingError(`${where}: uniform struct '${binding}' has no member '${k}' ` +
          `(it has: ${members.map((m) => m.name).join(', ')})`);
      }
    }
    const offset = this.uniformBytes;
    const end = offset + Math.ceil(size / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    if (end > this.uniformData.length) {
      const grown = new Uint8Array(new ArrayBuffer(Math.max(end, this.uniformData.length * 2)));
      grown.set(this.uniformData);
      this.uniformData = grown;
    }
    const view = new DataView(this.uniformData.buffer, offset, size);
    for (const m of members) {
      const v = values[m.name];
      if (v === undefined) {
        throw new BindingError(`${where}: uniform '${binding}.${m.name}' was not given a value`);
      }
      const arr = typeof v === 'number' ? [v] : v;
      if (arr.length !== m.components) {
        throw new BindingError(`${where}: uniform '${binding}.${m.name}' takes ` +
          `${m.components} values, got ${arr.length}`);
      }
      arr.forEach((x, i) => {
        const at = m.offset + 4 * i;
        if (m.kind === 'f32') view.setFloat32(at, x, true);
        else if (m.kind === 'u32') {
          if (!(x >= 0 && x <= 0xffffffff && Number.isInteger(x))) {
            throw new BindingError(`${where}: uniform '${binding}.${m.name}' = ${x} is not a u32`);
          }
          view.setUint32(at, x, true);
        } else view.setInt32(at, x, true);
      });
    }
    this.uniformBytes = end;
    return offset;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    if (size > 0) this.commands.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
  }

  clear(buffer: GPUBuffer, offset = 0, size = buffer.size - offset): void {
    if (size > 0) this.commands.push({ kind: 'clear', buffer, offset, size });
  }

  /** Asks for the bytes of a buffer range once the run has executed. */
  readback(src: GPUBuffer, offset: number, bytes: number): number {
    this.readbacks.push({ src, offset, bytes });
    return this.readbacks.length - 1;
  }

  /**
   * Compiles what is needed, encodes everything into one command buffer and submits it.
   * Returns the readbacks' promises (resolved when the GPU has finished) and, for a
   * profiled run, each dispatch's time: with timestamp queries every dispatch gets a
   * compute pass of its own whose start and end the device stamps, still one submission;
   * without them each dispatch is submitted alone and awaited (slow: the wall time includes
   * the submission and the wait).
   */
  async submit(opts: { profile?: boolean } = {}): Promise<Submitted> {
    const ctx = this.ctx;
    ctx.checkAlive(this.label);
    const kernels = new Map<string, Kernel>();
    for (const c of this.commands) {
      if (c.kind !== 'dispatch') continue;
      const k = await ctx.kernel(c.spec);
      c.key = k.key;
      kernels.set(k.key, k);
    }
    ctx.checkAlive(this.label);
    const device = ctx.device;
    let uniforms: GPUBuffer | null = null;
    if (this.uniformBytes > 0) {
      uniforms = ctx.acquireUniforms(this.uniformBytes);
      device.queue.writeBuffer(uniforms, 0, this.uniformData, 0, this.uniformBytes);
    }
    const profile = opts.profile ?? false;
    const stamped = profile && ctx.timestamps ? new Stamps(device, this.dispatchCount) : null;
    const wall: DispatchTiming[] = [];
    const timed: { label: string; kernel: string; workgroups: number }[] = [];
    let enc = device.createCommandEncoder({ label: this.label });
    let pass: GPUComputePassEncoder | null = null;
    const flushForTiming = async (t: Omit<DispatchTiming, 'ms'>) => {
      pass?.end();
      pass = null;
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      ctx.counters.submits++;
      await device.queue.onSubmittedWorkDone();
      wall.push({ ...t, ms: performance.now() - t0 });
      enc = device.createCommandEncoder({ label: this.label });
    };
    for (const c of this.commands) {
      if (c.kind === 'dispatch') {
        const k = kernels.get(c.key)!;
        const entries: GPUBindGroupEntry[] = k.entry.bindings.map((b) => {
          if (b.members) {
            return { binding: b.binding, resource: { buffer: uniforms!, offset: c.uniformOffset,
              size: b.size } };
          }
          const g = c.spec.bindings[b.name];
          const r = 'buffer' in g ? g : { buffer: g as GPUBuffer };
          return { binding: b.binding, resource: { buffer: r.buffer, offset: r.offset ?? 0,
            size: r.size } };
        });
        const group = ctx.bindGroup(k, entries);
        const t = { label: c.spec.label ?? k.key, kernel: k.key, workgroups: c.requested };
        if (stamped) {
          pass?.end();
          pass = enc.beginComputePass({ label: this.label,
            timestampWrites: stamped.writes(timed.length) });
          timed.push(t);
        }
        pass ??= enc.beginComputePass({ label: this.label });
        pass.setPipeline(k.pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(...c.groups);
        ctx.counters.dispatches++;
        if (stamped) {
          pass.end();
          pass = null;
        } else if (profile) await flushForTiming(t);
      } else {
        pass?.end();
        pass = null;
        if (c.kind === 'copy') {
          enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        }
        else enc.clearBuffer(c.buffer, c.offset, c.size);
      }
    }
    (pass as GPUComputePassEncoder | null)?.end();
    const stampStaging = stamped?.resolve(enc, ctx) ?? null;
    for (const r of this.readbacks) {
      const size = Math.ceil(r.bytes / 4) * 4;
      r.staging = ctx.acquireStaging(size);
      if (size > 0) enc.copyBufferToBuffer(r.src, r.offset, r.staging, 0, size);
    }
    device.queue.submit([enc.finish()]);
    ctx.counters.submits++;
    if (uniforms) ctx.releaseUniforms(uniforms);
    const reads = this.readbacks.map((r) => ctx.mapStaging(r.staging!, r.bytes));
    let timings: Promise<DispatchTiming[]> | null = null;
    if (stamped && stampStaging) {
      timings = ctx.mapStaging(stampStaging, 16 * this.dispatchCount).then((ab) => {
        const ns = new BigUint64Array(ab);
        return timed.map((t, i) => ({ ...t, ms: Number(ns[2 * i + 1] - ns[2 * i]) / 1e6 }));
      }).finally(() => stamped.destroy());
    } else if (profile) timings = Promise.resolve(wall);
    return { reads, timings };
  }
}

/**
 * The query sets of a profiled run: two timestamps per dispatch (its pass's start and end),
 * in sets of QUERIES_PER_SET, resolved into one buffer and read back with the run.
 */
class Stamps {
  private sets: GPUQuerySet[] = [];
  private resolved: GPUBuffer | null = null;

  constructor(device: GPUDevice, private dispatches: number) {
    for (let left = 2 * dispatches; left > 0; left -= QUERIES_PER_SET) {
      this.sets.push(device.createQuerySet({ type: 'timestamp',
        count: Math.min(left, QUERIES_PER_SET), label: 'profile' }));
    }
    if (dispatches > 0) {
      this.resolved = device.createBuffer({ size: 16 * dispatches, label: 'profile',
        usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    }
  }

  /** The timestampWrites of dispatch i's pass. */
  writes(i: number): GPUComputePassTimestampWrites {
    const q = 2 * i;
    return { querySet: this.sets[Math.floor(q / QUERIES_PER_SET)],
      beginningOfPassWriteIndex: q % QUERIES_PER_SET,
      endOfPassWriteIndex: q % QUERIES_PER_SET + 1 };
  }

  /**
   * Records the resolve and the copy into a staging buffer (to map once submitted) of every
   * timestamp, in order; null when the run has no dispatch.
   */
  resolve(enc: GPUCommandEncoder, ctx: GpuContext): GPUBuffer | null {
    if (!this.resolved) return null;
    for (const [k, set] of this.sets.entries()) {
      enc.resolveQuerySet(set, 0, set.count, this.resolved, 8 * k * QUERIES_PER_SET);
    }
    const bytes = 16 * this.dispatches;
    const staging = ctx.acquireStaging(bytes);
    enc.copyBufferToBuffer(this.resolved, 0, staging, 0, bytes);
    return staging;
  }

  destroy(): void {
    for (const s of this.sets) s.destroy();
    this.resolved?.destroy();
  }
}
