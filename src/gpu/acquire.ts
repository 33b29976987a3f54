// Adapter and device acquisition shared by the Node and browser entries: requests the
// adapter's own limits (not WebGPU's defaults) so large tensors fit where they can.

import { debug } from './debug.js';
import { AdapterError } from './errors.js';

/** The limits the engine raises to the adapter's maximum. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupsPerDimension',
] as const;

/**
 * Whether an adapter is a CPU Vulkan driver (Mesa's lavapipe/llvmpipe, SwiftShader), where
 * register tiles and runs per thread beat workgroup memory; GPUs want the opposite.
 */
export function isCpuAdapter(adapterInfo: string): boolean {
  return /llvmpipe|lavapipe|swiftshader/i.test(adapterInfo);
}

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
  /** Text appended to the error when no adapter is found (what to install). */
  hint?: string;
}

export async function acquireDevice(gpu: GPU | undefined, opts: AcquireOptions = {}):
  Promise<{ adapter: GPUAdapter; device: GPUDevice; info: string }> {
  if (!gpu) {
    throw new AdapterError(`WebGPU is not available here (no navigator.gpu).${opts.hint ?? ''}`);
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({
      powerPreference: opts.powerPreference ?? 'high-performance',
    });
  } catch (e) {
    throw new AdapterError(`requestAdapter failed: ${(e as Error).message}.${opts.hint ?? ''}`);
  }
  if (!adapter) {
    throw new AdapterError(`no WebGPU adapter was found.${opts.hint ?? ''}`);
  }
  const requiredLimits: Record<string, number> = {};
  for (const k of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  // Timestamp queries serve Engine.profile and SWAVGPU_DEBUG=3; nothing else depends on them.
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('timestamp-query')
    ? ['timestamp-query'] : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures,
    label: 'swavgpu' });
  const i = adapter.info;
  const info = [i?.vendor, i?.architecture, i?.device, i?.description].filter(Boolean).join(' ') ||
    'unknown adapter';
  debug(1, `adapter: ${info}`);
  for (const k of RAISED_LIMITS) {
    debug(1, `  ${k} = ${(device.limits as unknown as Record<string, number>)[k]}`);
  }
  debug(1, `  timestamp queries: ${requiredFeatures.length ? 'yes' : 'no'}`);
  return { adapter, device, info };
}
