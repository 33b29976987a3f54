// The float64 CPU reference of every kernel, one flat entry: `swavgpu/reference`.

export * from './tensor.js';
export * from './random.js';
export * from './compare.js';
export * from './finite-diff.js';
export * from './elementwise.js';
export * from './matmul.js';
export * from './transpose.js';
export * from './shape.js';
export * from './conv.js';
export * from './reduce.js';
export * from './pool.js';
export * from './batchnorm.js';
export * from './l2norm.js';
export * from './softmax.js';
export * from './sinkhorn.js';
export * from './optim.js';
export * from './topk.js';
export * from './augment.js';
