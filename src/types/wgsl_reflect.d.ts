// wgsl_reflect's package entry is a CommonJS build that Node's ESM loader cannot read
// named exports from; the engine imports its ES module build by path, typed here.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
