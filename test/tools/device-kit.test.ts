// tools/device/: run.sh and prepare.sh in a scratch copy of the tree, with stand-ins on PATH
// for node, ldconfig, dpkg and apt-get, so that nothing on this machine is unpacked or
// fetched. What is checked: the exit status says whether every step passed, the loaders are
// unpacked only where the linker lacks them, and a failed download is said.

import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync,
  writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = resolve(import.meta.dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'swavgpu-device-kit-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Node.js as the kit carries it: checks and bench print a line and exit as the test says.
const FAKE_NODE = `#!/bin/sh
case "$1" in
  --version) echo v0-fake ;;
  *checks.js) echo "185 of 185 outputs within tolerance"; exit "\${FAKE_CHECKS_EXIT:-0}" ;;
  *bench.js) echo "bench ran"; exit "\${FAKE_BENCH_EXIT:-0}" ;;
esac
`;

/** A stand-in command in bin/: a shell script. */
function stub(bin: string, name: string, script: string): void {
  writeFileSync(join(bin, name), `#!/bin/bash\n${script}`);
  chmodSync(join(bin, name), 0o755);
}

let trees = 0;
/** A scratch tree holding the kit's script and, unless `gpu` is false, a carried .gpu/. */
function tree(script: 'run.sh' | 'prepare.sh', gpu = true): { dir: string; bin: string } {
  const dir = join(work, `tree${trees++}`);
  const bin = join(dir, 'bin');
  mkdirSync(join(dir, 'tools/device'), { recursive: true });
  mkdirSync(bin);
  copyFileSync(join(root, 'tools/device', script), join(dir, 'tools/device', script));
  if (gpu) {
    mkdirSync(join(dir, '.gpu/deb'), { recursive: true });
    writeFileSync(join(dir, '.gpu/node.gz'), gzipSync(FAKE_NODE));
    writeFileSync(join(dir, '.gpu/dawn.node.gz'), gzipSync('not a module'));
    writeFileSync(join(dir, '.gpu/REVISION'), 'abc1234\n');
    writeFileSync(join(dir, '.gpu/deb/libvulkan1_fake.deb'), '');
  }
  // dpkg and a plain ldconfig only record that they ran; nothing is unpacked.
  stub(bin, 'dpkg', `echo "dpkg $*" >> "${dir}/calls"`);
  return { dir, bin };
}

/**
 * ldconfig -p as a machine with many libraries prints it: the ones asked about first (when
 * `has`), then 20 000 more lines, past what a pipe holds once its reader has gone.
 */
function ldconfig(bin: string, dir: string, has: boolean): void {
  const known = has ? 'echo "	libvulkan.so.1 (libc6,x86-64) => /lib/libvulkan.so.1"\n' +
    'echo "	libGLdispatch.so.0 (libc6,x86-64) => /lib/libGLdispatch.so.0"\n' : '';
  stub(bin, 'ldconfig', `if [ "$1" != -p ]; then echo ldconfig >> "${dir}/calls"; exit 0; fi
${known}for i in $(seq 1 20000); do echo "	libfill$i.so (libc6,x86-64) => /lib/libfill$i.so"; done
`);
}

function run(dir: string, bin: string, env: Record<string, string> = {}) {
  const out = join(dir, 'out');
  const r = spawnSync('bash', [join(dir, 'tools/device/run.sh')], { encoding: 'utf8',
    timeout: 60_000, env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, OUT: out,
      ...env } });
  const log = existsSync(join(out, 'device.log')) ? readFileSync(join(out, 'device.log'), 'utf8')
    : '';
  const calls = existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8') : '';
  return { code: r.status, log, calls, err: r.stderr };
}

const exits = (log: string) => [...log.matchAll(/\[device\] +exit (\d+)/g)].map((m) => m[1]);

describe('tools/device/run.sh', () => {
  it('exits 0 when every step passed, and leaves present loaders alone', () => {
    const { dir, bin } = tree('run.sh');
    ldconfig(bin, dir, true);
    const r = run(dir, bin);
    expect(r.code, r.log + r.err).toBe(0);
    expect(exits(r.log)).toEqual(['0', '0', '0']);
    expect(r.log).toContain('revision abc1234, node v0-fake');
    // grep -q stopped reading at the first match: ldconfig died of SIGPIPE, pipefail called
    // that a missing library, and the loaders were unpacked over the machine's own.
    expect(r.log).not.toContain('unpacking');
    expect(r.calls).toBe('');
  });

  it('exits 1 when a step failed, each step still running and logged', () => {
    const { dir, bin } = tree('run.sh');
    ldconfig(bin, dir, true);
    const checks = run(dir, bin, { FAKE_CHECKS_EXIT: '3' });
    expect(checks.code).toBe(1);
    expect(checks.log).toContain('exit 3 (185 of 185 outputs within tolerance)');
    expect(exits(checks.log)).toEqual(['3', '3', '0']);
    // The benchmark alone (a crash, or stopped by SECONDS_LEFT: no bench.json).
    const bench = run(dir, bin, { FAKE_BENCH_EXIT: '124' });
    expect(bench.code).toBe(1);
    expect(exits(bench.log).slice(-3)).toEqual(['0', '0', '124']);
  });

  it('unpacks the loaders where the linker lacks them', () => {
    const { dir, bin } = tree('run.sh');
    ldconfig(bin, dir, false);
    const r = run(dir, bin);
    expect(r.code, r.log + r.err).toBe(0);
    expect(r.log).toContain('unpacking the Vulkan and glvnd loaders');
    expect(r.calls).toBe('dpkg -x .gpu/deb/libvulkan1_fake.deb /\nldconfig\n');
  });

  it('without a carried .gpu/ says so and exits 1', () => {
    const { dir, bin } = tree('run.sh', false);
    const r = run(dir, bin);
    expect(r.code).toBe(1);
    expect(r.err).toContain('run.sh: no .gpu/node.gz here: run tools/device/prepare.sh and ' +
      'carry .gpu');
  });
});

describe('tools/device/prepare.sh', () => {
  it('a failed download of the loaders is said, with apt-get\'s message, before bundling', () => {
    const { dir, bin } = tree('prepare.sh', false);
    mkdirSync(join(dir, 'node_modules/webgpu'), { recursive: true });
    stub(bin, 'apt-get', 'echo "E: Unable to locate package libvulkan1" >&2; exit 100');
    stub(bin, 'npx', `echo "npx $*" >> "${dir}/calls"`);
    const r = spawnSync('bash', [join(dir, 'tools/device/prepare.sh')], { encoding: 'utf8',
      timeout: 60_000, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('E: Unable to locate package libvulkan1');
    expect(r.stderr).toContain('prepare.sh: apt-get could not download the Vulkan and glvnd ' +
      'loaders (its message is above; after apt-get update, run this again)');
    expect(existsSync(join(dir, 'calls'))).toBe(false);
  });
});
