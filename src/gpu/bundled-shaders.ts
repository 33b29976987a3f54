// Stand-in for the shader texts of the browser bundle: tools/build-browser.ts swaps this
// module for a generated one that imports every shaders/*.wgsl as text. Unbundled, it has none.

/** Shader texts by name (`elementwise` for shaders/elementwise.wgsl); null when not bundled. */
export const bundledShaders: Readonly<Record<string, string>> | null =
  null as Readonly<Record<string, string>> | null;
