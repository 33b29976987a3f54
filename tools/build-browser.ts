// Builds the browser bundle dist/browser/swavgpu.js (ESM, source maps) with every
// shaders/*.wgsl compiled in as text; also exports the esbuild pieces the web server reuses.
//
// The .wgsl files stay the one source of truth: Node reads them from disk
// (src/gpu/node-shaders.ts); here an esbuild plugin swaps src/gpu/bundled-shaders.ts for a
// virtual module that imports each file with esbuild's text loader.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SHADER_DIR = join(ROOT, 'shaders');
export const BROWSER_ENTRY = join(ROOT, 'src', 'browser.ts');
/** The stand-in module the plugin replaces. */
const SHADER_STUB = join(ROOT, 'src', 'gpu', 'bundled-shaders.ts');
const VIRTUAL_NS = 'swavgpu-shaders';

/** Browsers that ship WebGPU all run ES2022. */
export const BROWSER_TARGET = 'es2022';

function shaderFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.wgsl')).sort();
}

/** The generated module: one text import per shader, gathered into `bundledShaders`. */
export function shaderModuleSource(dir: string): string {
  const files = shaderFiles(dir);
  const imports = files.map((f, i) => `import s${i} from ${JSON.stringify(`./${f}`)};`);
  const entries = files.map((f, i) => `  ${JSON.stringify(f.slice(0, -'.wgsl'.length))}: s${i},`);
  return [...imports, 'export const bundledShaders = Object.freeze({', ...entries, '});', '']
    .join('\n');
}

/** Replaces src/gpu/bundled-shaders.ts with the texts of every `.wgsl` in `dir`. */
export function shadersPlugin(dir: string = SHADER_DIR): esbuild.Plugin {
  return {
    name: 'swavgpu-shaders',
    setup(build) {
      build.onResolve({ filter: /[/\\]bundled-shaders(\.js|\.ts)?$/ }, (args) => {
        const target = resolve(args.resolveDir, args.path).replace(/\.js$/, '.ts');
        const stub = target.endsWith('.ts') ? target : `${target}.ts`;
        if (stub !== SHADER_STUB) return undefined;
        return { path: 'bundled-shaders', namespace: VIRTUAL_NS };
      });
      build.onLoad({ filter: /.*/, namespace: VIRTUAL_NS }, () => ({
        contents: shaderModuleSource(dir), loader: 'js', resolveDir: dir,
        // A shader added or removed rebuilds the module in serve mode.
        watchDirs: [dir],
      }));
      build.onLoad({ filter: /\.wgsl$/ }, (args) => ({
        contents: readFileSync(args.path, 'utf8'), loader: 'text',
      }));
    },
  };
}

/** esbuild options shared by the bundle, the web page and the embed example. */
export function commonOptions(): esbuild.BuildOptions {
  return {
    bundle: true, format: 'esm', platform: 'browser', target: BROWSER_TARGET,
    sourcemap: true, logLevel: 'warning', legalComments: 'none',
  };
}

/** Builds dist/browser/swavgpu.js (+ .map); returns the shader names bundled. */
export async function buildBrowser(opts: { outfile?: string; minify?: boolean } = {}):
  Promise<{ outfile: string; bytes: number; shaders: string[] }> {
  const outfile = opts.outfile ?? join(ROOT, 'dist', 'browser', 'swavgpu.js');
  const result = await esbuild.build({
    ...commonOptions(), entryPoints: [BROWSER_ENTRY], outfile, minify: opts.minify ?? false,
    plugins: [shadersPlugin()], metafile: true,
  });
  // A renamed stub would leave the bundle with no shaders and no error until run time.
  if (!Object.keys(result.metafile.inputs).some((k) => k.startsWith(`${VIRTUAL_NS}:`))) {
    throw new Error(`build-browser: ${relative(ROOT, SHADER_STUB)} was not replaced; ` +
      `the bundle would carry no shaders`);
  }
  return {
    outfile, bytes: statSync(outfile).size,
    shaders: shaderFiles(SHADER_DIR).map((f) => f.slice(0, -'.wgsl'.length)),
  };
}

/** True when this module is the script node was started with. */
export function isMain(metaUrl: string): boolean {
  return !!process.argv[1] && pathToFileURL(resolve(process.argv[1])).href === metaUrl;
}

if (isMain(import.meta.url)) {
  const minify = process.argv.includes('--minify');
  const r = await buildBrowser({ minify });
  const rel = relative(process.cwd(), r.outfile).split(sep).join('/');
  process.stdout.write(`${rel}: ${(r.bytes / 1024).toFixed(0)} KiB, shaders: ` +
    `${r.shaders.join(', ')}\n`);
}
