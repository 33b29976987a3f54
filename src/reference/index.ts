// The float64 CPU reference of every kernel, one flat entry: `swavgpu/reference`.

export * from './tensor.js';
export * from './random.js';
export * from './compare.js';
export * from './finite-diff.js';
export * from './elementwise.js';
export * from './matmul.js';
export * from './conv.js';
