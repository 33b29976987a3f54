// The swavgpu command's answers to bad input: each names the option or the file and what
// is wrong in it, exits non-zero, and does so before any training starts.

import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = resolve(import.meta.dirname, '../..');

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'tools/cli.ts', ...args], {
    cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function idx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const header = new DataView(new ArrayBuffer(4 + 4 * dims.length));
  header.setUint32(0, magic);
  dims.forEach((d, i) => header.setUint32(4 + 4 * i, d));
  const out = new Uint8Array(header.byteLength + data.length);
  out.set(new Uint8Array(header.buffer));
  out.set(data, header.byteLength);
  return out;
}

/** A folder of Fashion-MNIST-named files, with one of them replaced by `bad`. */
function dataDir(bad: Partial<Record<'images' | 'labels', Uint8Array>>): string {
  const dir = mkdtempSync(join(tmpdir(), 'swavgpu-cli-'));
  const n = 8;
  const images = bad.images ?? idx(0x803, [n, 28, 28], new Uint8Array(n * 784).fill(7));
  const labels = bad.labels ?? idx(0x801, [n], new Uint8Array(n).fill(3));
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(images));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(labels));
  return dir;
}

describe('swavgpu command line', () => {
  it('--help lists the commands and the options', () => {
    const r = cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/train\s+train SwAV/);
    expect(r.out).toMatch(/--queue-length N/);
    expect(r.out).toMatch(/--checkpoint PATH/);
  });

  it('an unknown option or command is refused with the usage', () => {
    const r = cli(['train', '--batchsize', '4']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/Unknown option '--batchsize'/);
    expect(cli(['fly']).err).toMatch(/unknown command "fly"/);
  });

  it('invalid option values name the option and the value', () => {
    const cases: [string[], RegExp][] = [
      [['--batch-size', 'abc'], /--batch-size: expected a number, got "abc"/],
      [['--batch-size', '1'], /--batch-size: must be an integer >= 2 \(batch norm\), got 1/],
      [['--temperature', '0'], /--temperature: must be > 0, got 0/],
      [['--global-scale', '0.5'], /--global-scale: expected 2 comma-separated numbers/],
      [['--local-scale', '0.5,2'], /--crops: scale must be \(lo, hi\) with 0 < lo <= hi <= 1/],
      [['--queue-length', '100'], /--queue-length: must be 0 or a multiple of the batch size 64/],
      [['--epsilon=-1'], /--epsilon: must be > 0, got -1/],
    ];
    for (const [args, message] of cases) {
      const r = cli(['train', '--out', join(tmpdir(), 'never'), ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err, args.join(' ')).toMatch(message);
    }
  });

  it('each command refuses options it does not take, before the engine starts', () => {
    // No Vulkan driver: a command that got as far as the engine would say no adapter.
    const noGpu = { VK_ICD_FILENAMES: '/nonexistent-icd.json',
      VK_DRIVER_FILES: '/nonexistent-icd.json' };
    const out = join(mkdtempSync(join(tmpdir(), 'swavgpu-cli-')), 'never');
    const ev = cli(['eval', '--checkpoint', 'runs/c', '--k', '3', '--resume', '--epochs', '7',
      '--lr', '5', '--out', out], noGpu);
    expect(ev.code).toBe(2);
    expect(ev.err).toBe('swavgpu: eval does not take --resume, --epochs, --lr, --out (train ' +
      'and main options); eval takes --checkpoint, --data, --json, --bank, --test, ' +
      '--probe-epochs, --k\n');
    const tr = cli(['train', '--out', out, '--subset', '64', '--checkpoint', 'runs/c',
      '--json', '/x/y.json', '--k', '99', '--bank', '3'], noGpu);
    expect(tr.code).toBe(2);
    expect(tr.err).toBe('swavgpu: train does not take --checkpoint (an eval option), --json, ' +
      "--k, --bank (eval and main options); swavgpu --help lists train's options\n");
    const main = cli(['main', '--out', out, '--checkpoint', 'runs/c'], noGpu);
    expect(main.code).toBe(2);
    expect(main.err).toMatch(/^swavgpu: main does not take --checkpoint \(an eval option\); main /);
    expect(cli(['eval', '--quiet'], noGpu).err).toMatch(/eval does not take --quiet \(a train /);
    expect(() => readdirSync(out)).toThrow();
  });

  it('--test 0 means all test images, as --bank 0 means all, and --help says so', () => {
    const help = cli(['--help']).out;
    expect(help).toMatch(/--test N +test images \(default 10000, all of them; 0 for all too\)/);
    expect(help).toMatch(/--bank N .*\n.*0 for all 60000/);
  });

  it('a missing dataset names the path and what to install', () => {
    const r = cli(['train', '--data', '/nonexistent/fmnist', '--out',
      mkdtempSync(join(tmpdir(), 'swavgpu-out-'))]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/\/nonexistent\/fmnist\/train-images-idx3-ubyte/);
    expect(r.err).toMatch(/apt-get install dataset-fashion-mnist|--data DIR/);
  });

  it('a wrong magic number, a truncated file and a label count that does not match', () => {
    const out = () => mkdtempSync(join(tmpdir(), 'swavgpu-out-'));
    const magic = cli(['train', '--out', out(), '--data', dataDir({
      images: idx(0x12340803, [8, 28, 28], new Uint8Array(8 * 784)) })]);
    expect(magic.code).toBe(1);
    expect(magic.err).toMatch(/train-images-idx3-ubyte\.gz: .*magic/i);
    const truncated = cli(['train', '--out', out(), '--data', dataDir({
      images: idx(0x803, [8, 28, 28], new Uint8Array(100)) })]);
    expect(truncated.code).toBe(1);
    expect(truncated.err).toMatch(/train-images-idx3-ubyte\.gz: truncated/);
    const count = cli(['train', '--out', out(), '--data', dataDir({
      labels: idx(0x801, [5], new Uint8Array(5)) })]);
    expect(count.code).toBe(1);
    expect(count.err).toMatch(/8 images.*5 labels|5 labels.*8 images/);
  });

  it('eval of a file that is not a checkpoint names the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'swavgpu-eval-'));
    const bogus = join(dir, 'model.safetensors');
    writeFileSync(bogus, new Uint8Array([1, 2, 3]));
    const r = cli(['eval', '--checkpoint', bogus]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model\.safetensors/);
    mkdirSync(join(dir, 'empty'));
    expect(cli(['eval', '--checkpoint', join(dir, 'empty')]).err)
      .toMatch(/empty: holds no complete checkpoint/);
  });
});

describe('no WebGPU adapter', () => {
  it('says what was tried and what to install, instead of a bare null', () => {
    // Point the Vulkan loader at a driver that does not exist: Dawn then finds no adapter.
    const r = cli(['eval', '--checkpoint', '/nonexistent'], {
      VK_ICD_FILENAMES: '/nonexistent-icd.json', VK_DRIVER_FILES: '/nonexistent-icd.json',
    });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no WebGPU adapter was found/);
    expect(r.err).toMatch(/Tried: Dawn \(npm package webgpu\) with the Vulkan loader/);
    expect(r.err).toMatch(/bash tools\/setup-system\.sh/);
  });
});
