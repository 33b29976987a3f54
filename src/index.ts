// The platform-free public API, re-exported by the Node and browser entries.
/// <reference types="@webgpu/types" preserve="true" />

export { Engine } from './graph/engine.js';
export type { RecordSpec, RunStats, Profile } from './graph/engine.js';
export { Tensor, sizeOf, shapeStr } from './graph/tensor.js';
export type { Shape, EncodeContext, Node } from './graph/tensor.js';
export { grad, registerGrad, hasGradRule } from './graph/autodiff.js';
export type { GradRule, GradContext } from './graph/autodiff.js';
export { GpuContext, foldWorkgroups, BufferUsage } from './gpu/context.js';
export type { DispatchSpec, ShaderLoader, BufferRange, DispatchTiming, TimingSource }
  from './gpu/context.js';
export { reflectShader } from './gpu/reflect.js';
export { setDebug, debugLevel } from './gpu/debug.js';
export * from './gpu/errors.js';
export * as ops from './ops/index.js';
export * as optim from './optim/index.js';
export * as nn from './nn/index.js';
export * as swav from './swav/index.js';
export * as evaluation from './eval/index.js';
export * as reference from './reference/index.js';
export { GpuImages, MultiCropLoader } from './data/gpu-images.js';
export { EpochSampler } from './data/sampler.js';
export { sampleCrops } from './data/crops.js';
export { parseIdx, decodeIdx, IdxError } from './data/idx.js';
export type { ImageDataset } from './data/dataset.js';
export { parseSafetensors, serializeSafetensors, SafetensorsError } from './io/safetensors.js';
export { FileError, FileSystemError } from './io/file-error.js';
