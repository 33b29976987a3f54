// The package as users get it: packed by npm, installed from the tarball into an empty
// folder, then used from plain Node (a matmul on the GPU) and from TypeScript (its
// published types), with the shaders travelling inside the package.

import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
let dir = '';
let tarball = '';

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } });
}

describe('the packed package', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'swavgpu-pack-'));
    // npm pack runs `prepare`, which builds dist/ (TypeScript and the browser bundle).
    const out = run('npm', ['pack', '--silent', '--pack-destination', dir], root).trim();
    tarball = join(dir, out.split('\n').pop()!);
    const app = join(dir, 'app');
    run('mkdir', ['-p', app], dir);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true,
      type: 'module' }));
    // Dependencies come from npm's cache, filled by the checkout's own install.
    run('npm', ['install', '--prefer-offline', '--no-save', tarball], app);
  }, 300_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships the shaders, the compiled entries and the browser bundle', () => {
    const pkg = join(dir, 'app/node_modules/swavgpu');
    const shaders = readdirSync(join(pkg, 'shaders')).filter((f) => f.endsWith('.wgsl'));
    expect(shaders).toEqual(readdirSync(join(root, 'shaders')).filter((f) => f.endsWith('.wgsl')));
    for (const f of ['dist/src/node.js', 'dist/src/node.d.ts', 'dist/src/reference/index.js',
      'dist/browser/swavgpu.js', 'dist/tools/cli.js']) {
      expect(existsSync(join(pkg, f)), f).toBe(true);
    }
  });

  it('runs a matmul from plain Node', () => {
    const app = join(dir, 'app');
    writeFileSync(join(app, 'main.mjs'), [
      "import { createEngine, ops } from 'swavgpu';",
      'const e = await createEngine();',
      'const a = e.tensor([1, 2, 3, 4, 5, 6], [2, 3]);',
      'const b = e.tensor([1, 0, 0, 1, 1, 1], [3, 2]);',
      'console.log(JSON.stringify(Array.from(await ops.matmul(a, b).read())));',
      'await e.dispose();',
    ].join('\n'));
    const out = run('node', ['main.mjs'], app);
    // [[1,2,3],[4,5,6]] x [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
    expect(out.trim().split('\n').pop()).toBe('[4,5,10,11]');
  }, 120_000);

  it('type-checks a TypeScript user file against the published types', () => {
    const app = join(dir, 'app');
    writeFileSync(join(app, 'user.ts'), [
      "import { createEngine, ops, grad, type Tensor } from 'swavgpu';",
      "import { compare, TOL } from 'swavgpu/reference';",
      'const e = await createEngine();',
      "const w: Tensor = e.param([1, 2], [2], 'w');",
      'const [g] = grad(ops.sum(ops.square(w)), [w]);',
      'const v: Float32Array = await g!.read();',
      'const r = compare(v, [2, 4], TOL.f32Elementwise);',
      'const ok: boolean = r.ok;',
      'export { ok };',
    ].join('\n'));
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
      noEmit: true, skipLibCheck: false, types: [] }, files: ['user.ts'] }));
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    let output = '';
    try {
      output = run('node', [tsc, '-p', '.'], app);
    } catch (e) {
      output = String((e as { stdout?: string }).stdout ?? e);
    }
    expect(output).toBe('');
    // A wrong use is caught by the same types.
    writeFileSync(join(app, 'user.ts'), [
      "import { ops } from 'swavgpu';",
      "const n: number = ops.matmul;",
      'export { n };',
    ].join('\n'));
    expect(() => run('node', [tsc, '-p', '.'], app)).toThrow();
  }, 120_000);
});
