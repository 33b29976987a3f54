// The browser entry: WebGPU from navigator.gpu, shaders compiled into the bundle, datasets
// fetched over HTTP. Everything platform-specific in a browser is here.

import { acquireDevice } from './gpu/acquire.js';
import { bundledShaders } from './gpu/bundled-shaders.js';
import type { ShaderLoader } from './gpu/context.js';
import { GpuContext } from './gpu/context.js';
import { ShaderError } from './gpu/errors.js';
import { checkImageDataset, type ImageDataset } from './data/dataset.js';
import { decodeIdx, IdxError, type IdxArray } from './data/idx.js';
import { Engine } from './graph/engine.js';

export * from './index.js';

export interface BrowserEngineOptions {
  /** Extra or replacement shaders by name (WGSL text). */
  shaders?: Record<string, string>;
  /** The WebGPU entry point; default navigator.gpu. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  onLost?: (message: string) => void;
}

/** What to do when a browser offers no WebGPU; appended to AdapterError messages. */
export const WEBGPU_HINT = '\nTo fix: use Chrome or Edge 113 or newer (or a Safari or Firefox ' +
  'release with WebGPU turned on), with hardware acceleration on. WebGPU exists only on https:// ' +
  'and http://localhost pages. On Linux or in a headless or CI browser, start Chromium with ' +
  '--enable-unsafe-webgpu (it then runs on its SwiftShader CPU adapter when there is no GPU).';

/** Loads shaders from the bundle; throws ShaderError naming the shader and what is bundled. */
export function bundledShaderLoader(extra: Record<string, string> = {}): ShaderLoader {
  return (name: string) => {
    if (name in extra) return extra[name];
    if (!bundledShaders) {
      throw new ShaderError(`shader ${name}.wgsl: this copy of swavgpu has no shaders built in; ` +
        `use the bundle (npm run build:browser, dist/browser/swavgpu.js) or pass them as ` +
        `createEngine({ shaders })`);
    }
    const s = bundledShaders[name];
    if (s === undefined) {
      throw new ShaderError(`shader ${name}.wgsl is not in the bundle (it has: ` +
        `${Object.keys(bundledShaders).sort().join(', ')}): one of the engine's added since ` +
        `the bundle was built needs npm run build:browser; a shader of your own is passed by ` +
        `name: createEngine({ shaders: { ${name}: source } })`);
    }
    return s;
  };
}

/** True when this page can ask for WebGPU at all (an adapter may still be refused). */
export function hasWebGpu(): boolean {
  return typeof navigator !== 'undefined' && !!navigator.gpu;
}

/** Creates an engine on the page's WebGPU adapter; AdapterError says what to do when none. */
export async function createEngine(opts: BrowserEngineOptions = {}): Promise<Engine> {
  const gpu = opts.gpu ?? (typeof navigator !== 'undefined' ? navigator.gpu : undefined);
  const { device, info } = await acquireDevice(gpu, {
    powerPreference: opts.powerPreference, hint: WEBGPU_HINT,
  });
  const ctx = new GpuContext({
    device, adapterInfo: info, loadShader: bundledShaderLoader(opts.shaders ?? {}),
    onLost: opts.onLost,
  });
  return new Engine(ctx);
}

async function fetchIdx(url: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new IdxError(url, `cannot fetch: ${(e as Error).message}`, { cause: e });
  }
  return decodeIdx(bytes, url);
}

/**
 * Fetches one split of Fashion-MNIST from `baseUrl` (a folder holding the gzip'd IDX files,
 * as Debian's dataset-fashion-mnist names them), keeping the first `limit` images.
 */
export async function fetchFashionMnist(baseUrl: string, split: 'train' | 'test' = 'train',
  options: { limit?: number } = {}): Promise<ImageDataset> {
  const prefix = split === 'train' ? 'train' : 't10k';
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const imagesUrl = `${base}${prefix}-images-idx3-ubyte.gz`;
  const labelsUrl = `${base}${prefix}-labels-idx1-ubyte.gz`;
  const [images, labels] = await Promise.all([fetchIdx(imagesUrl), fetchIdx(labelsUrl)]);
  if (images.type !== 'u8' || images.shape.length !== 3) {
    throw new IdxError(imagesUrl, `expected u8 images [N, height, width], got ${images.type} ` +
      `[${images.shape.join(', ')}]`);
  }
  if (labels.type !== 'u8' || labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]) {
    throw new IdxError(labelsUrl, `expected ${images.shape[0]} u8 labels, got ${labels.type} ` +
      `[${labels.shape.join(', ')}]`);
  }
  const [n, height, width] = images.shape;
  const count = Math.min(options.limit ?? n, n);
  const ds: ImageDataset = {
    images: (images.data as Uint8Array).slice(0, count * height * width),
    labels: (labels.data as Uint8Array).slice(0, count), count, height, width,
  };
  checkImageDataset(ds, `Fashion-MNIST ${split} from ${base}`);
  return ds;
}
