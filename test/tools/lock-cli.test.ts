// One training per output folder: the real CLI in child processes on a tiny seeded dataset.
// A second `train` into a folder in use is refused before its engine starts, naming the
// folder and the pid; the lock goes on SIGTERM and Ctrl-C; one left by a killed process is
// taken over by the next run, with a note.

import { afterAll, describe, it, expect } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writeSyntheticMnist } from '../reliability/synthetic.js';

const root = resolve(import.meta.dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'swavgpu-lock-cli-'));
/** Every background training started, so that none outlives the file. */
const started: Background[] = [];
afterAll(async () => {
  // A test that failed midway leaves its training running (400 epochs): stop it first, so
  // that it neither outlives the tests nor writes into the folder as it is removed.
  for (const run of started) {
    if (run.exited()) continue;
    run.child.kill('SIGKILL');
    await run.exit;
  }
  rmSync(work, { recursive: true, force: true });
});
const data = writeSyntheticMnist(join(work, 'data'), 64);
const TINY = ['--data', data, '--subset', '64', '--batch-size', '16', '--width', '2',
  '--checkpoint-every', '2', '--quiet'];
/** No Vulkan driver: a command that got as far as the engine would say no adapter. */
const NO_GPU = { VK_ICD_FILENAMES: '/nonexistent-icd.json',
  VK_DRIVER_FILES: '/nonexistent-icd.json' };
const CLI = ['--import', 'tsx', 'tools/cli.ts'];

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env },
  });
  const err = r.stderr.split('\n').filter((l) => !l.startsWith('Warning:')).join('\n');
  return { code: r.status, out: r.stdout, err };
}

interface Background {
  child: ChildProcess;
  /** Its stderr so far. */
  err: () => string;
  exit: Promise<number | null>;
  exited: () => boolean;
}

function background(args: string[]): Background {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: root });
  let err = '';
  let exited = false;
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<number | null>((done) => child.on('exit', (code) => {
    exited = true;
    done(code);
  }));
  const run = { child, err: () => err, exit, exited: () => exited };
  started.push(run);
  return run;
}

/**
 * Waits until the training has written its first checkpoint (`ckpt-*` in `out`) and logged
 * its first step, so that a signal lands mid-run, for at most 90 s.
 */
async function trainingIn(run: Background, out: string): Promise<void> {
  const t0 = Date.now();
  const ready = () => /step 1\/\d+/.test(run.err()) && existsSync(out) &&
    readdirSync(out).some((n) => /^ckpt-\d+\.safetensors$/.test(n));
  while (!ready()) {
    if (run.exited()) throw new Error(`the training ended early: ${run.err()}`);
    if (Date.now() - t0 > 90_000) throw new Error(`no checkpoint in 90 s: ${run.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until the run's stderr matches `what`. */
async function until(run: Background, what: RegExp): Promise<void> {
  while (!what.test(run.err())) {
    if (run.exited()) throw new Error(`the training ended before ${what}: ${run.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const lockOf = (dir: string) => join(dir, 'swavgpu.lock');
/** Long enough to be in flight when signalled: 4 steps per epoch. */
const LONG = ['--epochs', '400'];

describe('one training per --out', () => {
  it('a second train into a folder in use is refused, naming it and the pid; SIGTERM ' +
    'frees it', async () => {
    const out = join(work, 'shared');
    const first = background(['train', ...TINY, ...LONG, '--out', out]);
    await trainingIn(first, out);
    const held = JSON.parse(readFileSync(lockOf(out), 'utf8')) as { pid: number };
    expect(held.pid).toBe(first.child.pid);

    const second = cli(['train', ...TINY, '--epochs', '1', '--seed', '1', '--out', out], NO_GPU);
    expect(second.code).toBe(1);
    expect(second.err).toMatch(new RegExp(`swavgpu: ${out}: in use: process ${held.pid} has ` +
      `been training into it since \\S+ \\(lock file ${lockOf(out)}\\)\\. Wait for it to ` +
      'end, stop it, or use another folder'));
    expect(second.err).not.toMatch(/no WebGPU adapter|training \d+ parameters/);
    // So is a resumed one.
    const resumed = cli(['train', ...TINY, '--resume', '--out', out], NO_GPU);
    expect(resumed.err).toMatch(new RegExp(`${out}: in use: process ${held.pid} `));

    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(143);
    expect(first.err()).toMatch(/swavgpu: stopped by SIGTERM; --resume continues from the /);
    expect(existsSync(lockOf(out))).toBe(false);
    // Every metrics row is the first run's: one row per step, none twice.
    const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')
      .map((l) => (JSON.parse(l) as { step: number }).step);
    expect(steps.length).toBeGreaterThan(0);
    expect(new Set(steps).size).toBe(steps.length);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).seed).toBe(0);
  });

  it('Ctrl-C frees the lock; a killed run leaves it, and --resume takes it over', async () => {
    const out = join(work, 'signals');
    const int = background(['train', ...TINY, ...LONG, '--out', out]);
    await trainingIn(int, out);
    int.child.kill('SIGINT');
    expect(await int.exit).toBe(130);
    expect(existsSync(lockOf(out))).toBe(false);

    const killed = background(['train', ...TINY, ...LONG, '--resume', '--out', out]);
    await until(killed, /resumed from/);
    killed.child.kill('SIGKILL');
    await killed.exit;
    expect(JSON.parse(readFileSync(lockOf(out), 'utf8')).pid).toBe(killed.child.pid);

    const next = cli(['train', ...TINY, '--resume', '--out', out, '--epochs', '1']);
    expect(next.code, next.err).toBe(0);
    expect(next.err).toContain(`${lockOf(out)}: took over the lock of process ` +
      `${killed.child.pid} (since `);
    expect(next.err).toMatch(/, which is no longer running/);
    expect(readdirSync(out)).not.toContain('swavgpu.lock');
  });
});
