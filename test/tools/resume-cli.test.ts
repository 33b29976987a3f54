// The swavgpu command on --resume, bad crop counts, eval options and user errors: the real
// CLI in a child process on a tiny seeded dataset, each answer one line naming the file.

import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, truncateSync, writeFileSync }
  from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeSyntheticMnist } from '../reliability/synthetic.js';
import { loadCheckpoint, saveCheckpoint, CHECKSUM_KEY } from '../../src/io/checkpoint-node.js';

const root = resolve(import.meta.dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'swavgpu-resume-cli-'));
const data = writeSyntheticMnist(join(work, 'data'), 64);
const TINY = ['--data', data, '--subset', '64', '--batch-size', '16', '--width', '2',
  '--checkpoint-every', '2', '--quiet'];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'tools/cli.ts', ...args], {
    cwd: root, encoding: 'utf8', timeout: 120_000,
  });
  // Dawn's adapter warnings are not ours.
  const err = r.stderr.split('\n').filter((l) => !l.startsWith('Warning:')).join('\n');
  return { code: r.status, out: r.stdout, err };
}

/** Every file in a folder with its bytes, to show a failed command left it untouched. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).sort().map((n) =>
    [n, readFileSync(join(dir, n)).toString('base64')]));
}

/** A copy of the finished run (checkpoints at steps 2 and 4). */
function copyRun(name: string): string {
  const dir = join(work, name);
  cpSync(join(work, 'run'), dir, { recursive: true });
  return dir;
}

/** Flips one byte of the data section: the checksum no longer matches. */
function flipData(path: string): void {
  const b = readFileSync(path);
  b[b.length - 5] ^= 0x40;
  writeFileSync(path, b);
}

const CK2 = 'ckpt-000002.safetensors';
const CK4 = 'ckpt-000004.safetensors';

beforeAll(() => {
  const r = cli(['train', ...TINY, '--epochs', '1', '--out', join(work, 'run')]);
  expect(r.code, r.err).toBe(0);
}, 60_000);

describe('train --resume', () => {
  it('no checkpoint, a missing folder, or only corrupt ones: one line, folder untouched', () => {
    const missing = cli(['train', ...TINY, '--resume', '--out', join(work, 'absent')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/swavgpu: --resume: .*absent: no such folder/);
    expect(() => readdirSync(join(work, 'absent'))).toThrow();

    const bad = copyRun('bad');
    flipData(join(bad, CK4));
    truncateSync(join(bad, CK2), 100);
    const before = snapshot(bad);
    const r = cli(['train', ...TINY, '--resume', '--out', bad]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/bad: holds no complete checkpoint/);
    expect(r.err).toMatch(new RegExp(`skipped \\S*${CK4} \\(checksum mismatch`));
    expect(r.err).toMatch(new RegExp(`skipped \\S*${CK2} \\(.*runs past the end of the file`));
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(snapshot(bad)).toEqual(before);
  });

  it('falls back past a corrupt newest checkpoint and says which file it used', () => {
    const dir = copyRun('fallback');
    flipData(join(dir, CK4));
    const r = cli(['train', ...TINY, '--resume', '--out', dir, '--epochs', '1.5']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(
      new RegExp(`skipped \\S*${CK4} \\(checksum mismatch.*; using \\S*${CK2}`));
    expect(r.err).toMatch(/resumed from \S*ckpt-000002\.safetensors at step 2/);
    expect(r.err).toMatch(/6 steps of 16/);
  });

  it('safe options are honoured, others that differ are refused naming both values', () => {
    const dir = copyRun('options');
    const before = snapshot(dir);
    const lr = cli(['train', ...TINY, '--resume', '--out', dir, '--lr', '0.1']);
    expect(lr.code).toBe(1);
    expect(lr.err).toMatch(
      /--lr: cannot change on --resume: the checkpoint has 2\.4, the command line gives 0\.1/);
    const seed = cli(['train', ...TINY, '--resume', '--out', dir, '--seed', '3']);
    expect(seed.err).toMatch(/--seed: .*checkpoint has 0, the command line gives 3/);
    expect(snapshot(dir)).toEqual(before);
    // A finished run with no steps to add: nothing to train, exit 0, no NaN.
    const done = cli(['train', ...TINY, '--resume', '--out', dir, '--epochs', '1']);
    expect(done.code, done.err).toBe(0);
    expect(done.err).toMatch(/nothing to train: the run already has 4 of 4 steps/);
    expect(done.err).not.toMatch(/NaN/);
    expect(snapshot(dir)).toEqual(before);
  });

  it('a checkpoint whose tensors do not fit its model names the file, no stack', async () => {
    const dir = copyRun('misfit');
    const path = join(dir, CK4);
    const parsed = await loadCheckpoint(path);
    const meta = { ...parsed.metadata };
    delete meta[CHECKSUM_KEY];
    const tensors = { ...parsed.tensors };
    const name = Object.keys(tensors).find((n) => n.endsWith('bias'))!;
    tensors[name] = { dtype: 'F32', shape: [3], data: new Float32Array(3) };
    await saveCheckpoint(path, tensors, meta);
    const r = cli(['train', ...TINY, '--resume', '--out', dir, '--epochs', '2']);
    expect(r.code).toBe(1);
    const quoted = name.replace(/\./g, '\\.');
    expect(r.err).toMatch(new RegExp(`swavgpu: \\S*${CK4}: .*${quoted} has 3 values`));
    expect(r.err).not.toMatch(/\n\s+at /);
    const e = cli(['eval', '--checkpoint', path, '--data', data, '--bank', '16', '--test', '16',
      '--k', '5']);
    expect(e.code).toBe(1);
    expect(e.err).toMatch(new RegExp(`${CK4}: tensor ${quoted} is 3 values`));
  });
});

describe('a checkpoint holding NaN behind valid checksums', () => {
  /** Rewrites a checkpoint with backbone.conv1.weight[0] = NaN and fresh checksums. */
  async function poison(path: string): Promise<void> {
    const parsed = await loadCheckpoint(path);
    (parsed.tensors['backbone.conv1.weight'].data as Float32Array)[0] = NaN;
    await saveCheckpoint(path, parsed.tensors, parsed.metadata);
  }
  const why = 'tensor backbone\\.conv1\\.weight \\[2, 1, 3, 3\\] holds NaN at element 0 ' +
    '\\(\\[0, 0, 0, 0\\]\\), its first non-finite value';

  it('eval refuses the file, naming the tensor and element; a folder falls back past it',
    async () => {
      const dir = copyRun('nan-eval');
      await poison(join(dir, CK4));
      const r = cli(['eval', '--checkpoint', join(dir, CK4), '--data', data, '--bank', '16',
        '--k', '5', '--test', '16']);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(new RegExp(`swavgpu: \\S*${CK4}: ${why}; a checkpoint must hold ` +
        'finite values'));
      expect(r.err).not.toMatch(/features of|learning rate/);
      // A folder: the older good one is used, and the NaN one named as passed over (this
      // synthetic set has no test split, which is where eval then stops).
      const f = cli(['eval', '--checkpoint', dir, '--data', data, '--bank', '16', '--k', '5',
        '--test', '16']);
      expect(f.err).toMatch(new RegExp(`skipped \\S*${CK4} \\(${why}.*; using \\S*${CK2}`));
      expect(f.err).toMatch(/t10k-images-idx3-ubyte/);
    });

  it('--resume falls back past it, as past a corrupt one, or refuses if none is good',
    async () => {
      const dir = copyRun('nan-resume');
      await poison(join(dir, CK4));
      const r = cli(['train', ...TINY, '--resume', '--out', dir, '--epochs', '1.5']);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(new RegExp(`--resume: skipped \\S*${CK4} \\(${why}.*; using ` +
        `\\S*${CK2}`));
      expect(r.err).toMatch(/resumed from \S*ckpt-000002\.safetensors at step 2/);
      // The run wrote step 4 again, from finite values: it loads.
      await expect(loadCheckpoint(join(dir, CK4))).resolves.toBeDefined();

      const none = copyRun('nan-only');
      await poison(join(none, CK4));
      await poison(join(none, CK2));
      const before = snapshot(none);
      const n = cli(['train', ...TINY, '--resume', '--out', none, '--epochs', '2']);
      expect(n.code).toBe(1);
      expect(n.err).toMatch(new RegExp(`nan-only: holds no complete checkpoint: skipped ` +
        `\\S*${CK4} \\(${why}.*skipped \\S*${CK2} \\(${why}`));
      expect(n.err).not.toMatch(/last good checkpoint|training \d+ parameters/);
      expect(snapshot(none)).toEqual(before);
    });
});

describe('options checked before any work', () => {
  it('crop counts: --global-crops >= 1, --local-crops >= 0, integers', () => {
    const out = join(work, 'never');
    const cases: [string, RegExp][] = [
      ['--global-crops=0', /--global-crops: must be an integer >= 1.*got 0/],
      ['--global-crops=-2', /--global-crops: must be an integer >= 1.*got -2/],
      ['--global-crops=1.5', /--global-crops: must be an integer >= 1.*got 1\.5/],
      ['--local-crops=-1', /--local-crops: must be an integer >= 0, got -1/],
    ];
    for (const [arg, message] of cases) {
      const r = cli(['train', ...TINY, '--out', out, arg]);
      expect(r.code, arg).toBe(1);
      expect(r.err, arg).toMatch(message);
    }
    expect(() => readdirSync(out)).toThrow();
  });

  it('eval options of main are refused before training starts', () => {
    const out = join(work, 'main-never');
    const cases: [string[], RegExp][] = [
      [['--k', '65'], /--k: must be an integer in 1\.\.64, got 65/],
      [['--k', '2.5'], /--k: must be an integer in 1\.\.64, got 2\.5/],
      [['--probe-epochs', '0'], /--probe-epochs: must be an integer >= 1, got 0/],
      [['--bank=-1'], /--bank: must be an integer >= 0 \(0 for all\), got -1/],
      [['--bank', '10'], /--k 20 is more than the --bank 10 images the neighbours are drawn/],
      [['--json', '/nonexistent/x.json'], /--json \/nonexistent\/x\.json: the folder/],
    ];
    for (const [args, message] of cases) {
      const r = cli(['main', ...TINY, '--out', out, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err, args.join(' ')).toMatch(message);
      expect(r.err).not.toMatch(/training \d+ parameters/);
    }
  });

  it('--out that is a file, a missing checkpoint: one line naming the path', () => {
    const file = join(work, 'a-file');
    writeFileSync(file, 'x');
    const r = cli(['train', ...TINY, '--out', file]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/swavgpu: --out \S*a-file: cannot create the output folder \(EEXIST\)/);
    const m = cli(['eval', '--checkpoint', join(work, 'nope.safetensors'), '--data', data]);
    expect(m.code).toBe(1);
    expect(m.err).toMatch(/nope\.safetensors: no such checkpoint file or directory/);
    expect(m.err).not.toMatch(/\n\s+at /);
  });
});

describe('eval', () => {
  it('a folder of corrupt checkpoints lists each; a fallback says which file it used', () => {
    const bad = copyRun('eval-bad');
    flipData(join(bad, CK4));
    flipData(join(bad, CK2));
    const r = cli(['eval', '--checkpoint', bad, '--data', data]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`holds no complete checkpoint: skipped \\S*${CK4} ` +
      `\\(checksum mismatch.*skipped \\S*${CK2} \\(checksum mismatch`));
  });

  it('more neighbours than training images fails before extracting any feature', () => {
    const dir = writeSyntheticMnist(join(work, 'few'), 16);
    for (const kind of ['images-idx3', 'labels-idx1']) {
      writeFileSync(join(dir, `t10k-${kind}-ubyte`),
        readFileSync(join(dir, `train-${kind}-ubyte`)));
    }
    const r = cli(['eval', '--checkpoint', join(work, 'run'), '--data', dir, '--bank', '0']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--k 20: more neighbours than the 16 training images of the bank/);
    expect(r.err).not.toMatch(/features of/);
  });

  it('train and test images of different sizes fail before any work, naming both', () => {
    const dir = writeSyntheticMnist(join(work, 'sizes'), 16);
    const img = readFileSync(join(dir, 'train-images-idx3-ubyte'));
    // A 16-image test split of 14x14 images (a crop of the same bytes).
    const head = Buffer.alloc(16);
    head.writeUInt32BE(0x0803, 0);
    [16, 14, 14].forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'),
      Buffer.concat([head, img.subarray(16, 16 + 16 * 196)]));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'),
      readFileSync(join(dir, 'train-labels-idx1-ubyte')));
    const r = cli(['eval', '--checkpoint', join(work, 'run'), '--data', dir]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp('training images \\(train-images-idx3-ubyte\\) are 28x28 ' +
      'but the test images \\(t10k-images-idx3-ubyte\\) are 14x14'));
    expect(r.err).not.toMatch(/features of/);
  });
});
