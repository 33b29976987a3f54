// Modules users build models from.

export { Module, initRng } from './module.js';
export type { InitRng } from './module.js';
export { Linear, Conv2d, BatchNorm, ReLU, Sequential } from './layers.js';
export { ResNet, BasicBlock } from './resnet.js';
export type { ResNetOptions } from './resnet.js';
