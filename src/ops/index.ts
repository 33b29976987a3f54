// Every op family, one namespace: import { ops } from 'swavgpu'.

export * from './elementwise.js';
export * from './reduce.js';
export * from './shape.js';
export * from './matmul.js';
export * from './transpose.js';
export * from './conv.js';
export * from './batchnorm.js';
export * from './l2norm.js';
export * from './pool.js';
export * from './softmax.js';
export * from './sinkhorn.js';
export * from './augment.js';
export * from './topk.js';
export * from './tune.js';
