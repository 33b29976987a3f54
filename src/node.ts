// The Node entry: Dawn through the `webgpu` package, shaders read from the package's
// shaders/ folder. Everything platform-specific in Node is here.

import { existsSync } from 'node:fs';
import { applyTuning } from './tune-node.js';
import { create, globals } from 'webgpu';
import { acquireDevice, isCpuAdapter } from './gpu/acquire.js';
import { installQuietWaits, type QuietWaitOptions } from './gpu/quiet-wait.js';
import { GpuContext } from './gpu/context.js';
import { nodeShaderLoader } from './gpu/node-shaders.js';
import { Engine } from './graph/engine.js';

export * from './index.js';
export { nodeShaderLoader, shaderDir } from './gpu/node-shaders.js';
export { installQuietWaits, quietWaitsActive, type QuietWaitOptions } from './gpu/quiet-wait.js';
export { loadFashionMnist, DEFAULT_FASHION_MNIST_DIR } from './data/fashion-node.js';
export { saveCheckpoint, loadCheckpoint, findLatestCheckpoint, writeFileAtomic, lockFolder,
  CheckpointError, FolderLockedError } from './io/checkpoint-node.js';
export type { FolderLock } from './io/checkpoint-node.js';
export { trainSwav, TrainingError } from './swav/train-node.js';
export { tuneConvolutions } from './tune-node.js';
export type { TrainOptions, TrainSummary, TrainHooks } from './swav/train-node.js';
export { snapshotTrainer, writeTrainerCheckpoint, NonFiniteStateError }
  from './swav/checkpoint-node.js';
export { firstNonFinite, type FiniteCheckInput } from './io/safetensors.js';
export { evaluateCheckpoint, printEvalTable } from './eval/run-node.js';
export type { EvalOptions, EvalResult } from './eval/run-node.js';

export interface NodeEngineOptions {
  /** Extra or replacement shaders by name (tests use this for deliberately broken WGSL). */
  shaders?: Record<string, string>;
  /**
   * Time the tiling variants once per adapter and use the fastest (src/ops/tune.ts): the
   * matmul's at once (a second or so), each convolution shape's where a caller that knows
   * them asks (the SwAV training loop, tuneConvolutions). Choices are cached in
   * $XDG_CACHE_HOME/swavgpu (or ~/.cache/swavgpu) per adapter, so each is timed once.
   */
  tune?: boolean;
  /**
   * Keep the main thread from spinning while it waits for the device (src/gpu/quiet-wait.ts):
   * Dawn's polls run after 0.02 ms sleeps up to 3 ms into a wait, then on 1 ms timers, and
   * on Linux the main thread's timer slack is 1 us meanwhile, so that the sleeps end on time.
   * Default: on for CPU drivers (lavapipe, SwiftShader), whose threads need the core a
   * spinning wait takes; off for GPUs. Options change the pacing (the latest live engine's
   * options are in force for all).
   */
  quietWaits?: boolean | QuietWaitOptions;
  /**
   * Dawn toggles, passed to create(): e.g. ['enable-dawn-features=...']. Unless they name
   * timestamp_quantization themselves, the engine adds it to the disabled features (to the
   * last 'disable-dawn-features=' entry given here, the one Dawn honours, or as one of its
   * own): Dawn otherwise rounds device timestamps down to 65.5 us, a browser's defence
   * against timing attacks that a Node process does not need, and Engine.profile's times
   * would be that coarse.
   */
  dawnFlags?: string[];
  onLost?: (message: string) => void;
}

function vulkanHint(): string {
  const loader = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
    '/usr/lib/aarch64-linux-gnu/libvulkan.so.1',
    '/usr/lib/libvulkan.so.1'].some((p) => existsSync(p));
  const icd = existsSync('/usr/share/vulkan/icd.d');
  const tried = `Tried: Dawn (npm package webgpu) with the Vulkan loader ` +
    `(${loader ? 'found' : 'missing: libvulkan.so.1'}) and ICD folder /usr/share/vulkan/icd.d ` +
    `(${icd ? 'present' : 'missing'}).`;
  return `\n${tried}\nOn Debian 12 without a GPU run ` +
    `\`bash tools/setup-system.sh\` (installs Mesa ` +
    `lavapipe >= 24 from bookworm-backports); elsewhere install your GPU's Vulkan driver.`;
}

const instances = new Map<string, GPU>();

const DISABLE = 'disable-dawn-features=';

/**
 * The flags with timestamp_quantization among the disabled Dawn features: added to the last
 * 'disable-dawn-features=' entry (the one Dawn honours), or as one of its own; flags that
 * name timestamp_quantization themselves (enabled or disabled) are left as they are.
 */
export function withPreciseTimestamps(flags: readonly string[]): string[] {
  const out = [...flags];
  const named = (f: string) => /^(en|dis)able-dawn-features=/.test(f) &&
    f.slice(f.indexOf('=') + 1).split(',').includes('timestamp_quantization');
  if (out.some(named)) return out;
  let i = -1;
  out.forEach((f, k) => {
    if (f.startsWith(DISABLE)) i = k;
  });
  if (i < 0) out.push(`${DISABLE}timestamp_quantization`);
  else out[i] = `${out[i]}${out[i].length > DISABLE.length ? ',' : ''}timestamp_quantization`;
  return out;
}

/** Creates an engine on the best WebGPU adapter Dawn finds. */
export async function createEngine(opts: NodeEngineOptions = {}): Promise<Engine> {
  Object.assign(globalThis, globals);
  // Dawn's GPU object must stay referenced while the device lives, or Dawn aborts. One per
  // set of flags for the whole process: engines made and freed one after another in one
  // process each built and dropped an instance of their own, and now and then the process
  // died in Dawn a few engines later.
  const flags = withPreciseTimestamps(opts.dawnFlags ?? []);
  const key = JSON.stringify(flags);
  let gpu = instances.get(key);
  if (!gpu) {
    gpu = create(flags);
    instances.set(key, gpu);
  }
  const { device, info } = await acquireDevice(gpu, { hint: vulkanHint() });
  const ctx = new GpuContext({
    device, adapterInfo: info, loadShader: nodeShaderLoader(undefined, opts.shaders ?? {}),
    onLost: opts.onLost,
  });
  const quiet = opts.quietWaits ?? isCpuAdapter(info);
  const release = quiet ? installQuietWaits(quiet === true ? {} : quiet) : undefined;
  const engine = new Engine(ctx, gpu, release);
  if (opts.tune) {
    try {
      await applyTuning(engine);
    } catch (e) {
      await engine.dispose();
      throw e;
    }
  }
  return engine;
}
