// Every op family, one namespace: import { ops } from 'swavgpu'.

export * from './elementwise.js';
export * from './reduce.js';
export * from './shape.js';
