// The browser bundle without a browser: it builds, carries every shaders/*.wgsl byte for
// byte, imports nothing from Node, says what to do without WebGPU, and computes on Dawn
// when handed Node's GPU object in place of navigator.gpu.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { create, globals } from 'webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as Bundle from '../../src/browser.js';
import { buildBrowser, SHADER_DIR } from '../../tools/build-browser.js';

let dir: string;
let outfile: string;
let bundle: typeof Bundle;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'swavgpu-bundle-'));
  outfile = join(dir, 'swavgpu.js');
  await buildBrowser({ outfile });
  bundle = await import(pathToFileURL(outfile).href) as typeof Bundle;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('dist/browser/swavgpu.js', () => {
  it('holds every shader exactly as on disk, and names what it has for a missing one', () => {
    const load = bundle.bundledShaderLoader();
    const files = readdirSync(SHADER_DIR).filter((f) => f.endsWith('.wgsl'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      expect(load(f.replace(/\.wgsl$/, '')), f).toBe(readFileSync(join(SHADER_DIR, f), 'utf8'));
    }
    expect(() => load('nonexistent')).toThrow(/nonexistent\.wgsl is not in the bundle \(it has: /);
    expect(() => load('nonexistent'))
      .toThrow(/passed by name: createEngine\(\{ shaders: \{ nonexistent: source \} \}\)$/);
    // A stale bundle lacking one of the engine's own shaders is rebuilt, not worked around.
    expect(() => load('nonexistent')).toThrow("): one of the engine's added since the bundle " +
      'was built needs npm run build:browser; a shader of your own');
  });

  it('imports no Node module and has a source map', () => {
    const text = readFileSync(outfile, 'utf8');
    expect(text).not.toMatch(/from ["']node:|require\(["']/);
    expect(text).toContain('//# sourceMappingURL=swavgpu.js.map');
    const map = JSON.parse(readFileSync(`${outfile}.map`, 'utf8')) as { sources: string[] };
    expect(map.sources.some((s) => s.endsWith('src/browser.ts'))).toBe(true);
  });

  it('says what to do when there is no WebGPU', async () => {
    const err = await bundle.createEngine({ gpu: undefined }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(bundle.AdapterError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/no navigator\.gpu[\s\S]*Chrome or Edge 113[\s\S]*--enable-unsafe-webgpu/);
  });

  it('runs its ops on Dawn when given a GPU object, with the bundled shaders', async () => {
    Object.assign(globalThis, globals);
    const gpu = create([]);
    const engine = await bundle.createEngine({ gpu });
    try {
      const x = engine.tensor([1, -2, 3, -4, 5, -6], [2, 3]);
      const y = bundle.ops.sum(bundle.ops.relu(x), 1);
      expect([...await y.read()]).toEqual([4, 5]);
    } finally {
      await engine.dispose();
    }
  });
});
