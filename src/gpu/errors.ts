// Error classes of the engine; each message names the op or shader and what is wrong.

export class SwavgpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad shapes or argument values given to an op, thrown before any GPU work. */
export class OpArgumentError extends SwavgpuError {}

/** A WGSL file that does not compile or reflect; message has file:line:col. */
export class ShaderError extends SwavgpuError {
  /**
   * The WGSL that failed to parse where only the reflection step saw it (whose parser gives
   * no column): the engine then asks the device's compiler for file:line:col.
   */
  wgsl?: { file: string; source: string };
}

/** A binding, uniform member or override the TypeScript side got wrong. */
export class BindingError extends SwavgpuError {}

/** No WebGPU adapter or device could be had. */
export class AdapterError extends SwavgpuError {}

/** The GPU device was lost, or the engine was disposed. */
export class DeviceLostError extends SwavgpuError {}

/** A size past what the adapter allows (binding size, buffer size). */
export class LimitError extends SwavgpuError {}

/** A feature the engine does not have; see FEATURES.md for the list of gaps. */
export class NotSupportedError extends SwavgpuError {}
