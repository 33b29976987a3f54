// Node's shader loader: reads shaders/<name>.wgsl from the package directory, found by
// walking up from this file (it sits in src/gpu in a checkout and dist/src/gpu in a
// package).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShaderError } from './errors.js';
import type { ShaderLoader } from './context.js';

export function shaderDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'shaders')) && existsSync(join(dir, 'package.json'))) {
      return join(dir, 'shaders');
    }
    dir = dirname(dir);
  }
  throw new ShaderError(`cannot find the shaders/ folder above ${fileURLToPath(import.meta.url)}`);
}

export function nodeShaderLoader(dir = shaderDir(),
  extra: Record<string, string> = {}): ShaderLoader {
  const cache = new Map<string, string>();
  return (name: string) => {
    if (name in extra) return extra[name];
    let s = cache.get(name);
    if (s === undefined) {
      const path = join(dir, `${name}.wgsl`);
      if (!existsSync(path)) {
        throw new ShaderError(`no shader file ${path} (a shader of your own is passed by ` +
          `name: createEngine({ shaders: { ${name}: source } }))`);
      }
      s = readFileSync(path, 'utf8');
      cache.set(name, s);
    }
    return s;
  };
}
