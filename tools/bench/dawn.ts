// Dawn for the peer libraries, which look for WebGPU where a browser puts it: the `webgpu`
// package's globals and a navigator holding its GPU object.

import { availableParallelism } from 'node:os';

let held: { gpu: GPU; adapter: string } | null = null;

/** Installs navigator.gpu once per process; the GPU object stays referenced (Dawn aborts
 * when it is collected while a device lives). */
export async function installDawn(): Promise<{ gpu: GPU; adapter: string }> {
  if (held) return held;
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([]);
  Object.defineProperty(globalThis, 'navigator', {
    value: { gpu, userAgent: 'Node.js', hardwareConcurrency: availableParallelism() },
    configurable: true, writable: true,
  });
  const adapter = await gpu.requestAdapter();
  const i = adapter?.info;
  const name = [i?.vendor, i?.architecture, i?.device, i?.description].filter(Boolean).join(' ');
  held = { gpu, adapter: name || 'unknown adapter' };
  return held;
}
