// kill -9 at seeded random points of a training run with a checkpoint after every step:
// after each kill every checkpoint file on disk is complete and passes its checksum, no
// progress or metric row before the newest one is lost, and --resume continues; the run
// finished through kills and resumes (the last by the swavgpu CLI) ends with the same
// losses and the same final state, bit for bit, as one never interrupted.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointStep, findLatestCheckpoint, loadCheckpoint }
  from '../../src/io/checkpoint-node.js';
import { mulberry32 } from '../../src/reference/random.js';
import { writeSyntheticMnist } from './synthetic.js';

const ROOT = join(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'swavgpu-crash-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const data = writeSyntheticMnist(join(work, 'data'));

/** Epochs of 8 steps: room for ten kills at 1-5 steps of progress each. */
const EPOCHS = 7;
const KILLS = 10;

interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: { kind: string; line?: string; message?: string }[];
  stderr: string;
}

/** Runs a script under tsx; `onLine` sees each JSON line of stdout and may kill it. */
function runChild(args: string[], onLine?: (ev: { kind: string }, child: ChildProcess) => void):
  Promise<ChildEnd> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: ChildEnd['lines'] = [];
  let stderr = '';
  let buffered = '';
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let ev: ChildEnd['lines'][number];
      try {
        ev = JSON.parse(text) as ChildEnd['lines'][number];
      } catch {
        continue;
      }
      lines.push(ev);
      onLine?.(ev, child);
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, lines, stderr }));
  });
}

function trainArgs(out: string, resume: boolean): string[] {
  return ['tools/crash-child.ts', 'train', '--out', out, '--data', data, '--epochs',
    String(EPOCHS), ...(resume ? ['--resume'] : [])];
}

/** float32 bits of every loss in metrics.jsonl, by step. */
function lossBits(dir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n')) {
    if (!line) continue;
    const row = JSON.parse(line) as { step: number; loss: number };
    out.set(row.step, new Uint32Array(Float32Array.of(row.loss).buffer)[0]);
  }
  return out;
}

/** Every file with a finished checkpoint's name must load and pass its checksum. */
async function checkFiles(dir: string): Promise<{ steps: number[]; temps: number }> {
  const names = readdirSync(dir);
  const steps: number[] = [];
  for (const name of names) {
    const step = checkpointStep(name);
    if (step === undefined) continue;
    await loadCheckpoint(join(dir, name));
    steps.push(step);
  }
  return { steps, temps: names.filter((n) => n.includes('.tmp-')).length };
}

describe('kill -9 during training', () => {
  it(`${KILLS} kills at random points lose nothing, and the resumed run is exact`, async () => {
    const t0 = performance.now();
    // The uninterrupted run goes alongside the kills: each child is mostly one busy thread.
    const ref = join(work, 'uninterrupted');
    const whole = runChild(trainArgs(ref, false));
    const rng = mulberry32(20240607);
    const dir = join(work, 'killed');
    let latest = -1;
    let kills = 0;
    let temps = 0;
    const killSteps: number[] = [];
    for (let round = 0; round < KILLS; round++) {
      // The kill comes after step line k (1-4) and a random part of one step more, so it
      // lands anywhere in the cycle of step, metrics row and checkpoint write, whatever
      // the machine's speed.
      const k = 1 + Math.floor(rng() * 4);
      const fraction = rng();
      let timer: NodeJS.Timeout | undefined;
      let seen = 0;
      let previous = 0;
      const end = await runChild(trainArgs(dir, round > 0), (ev, child) => {
        if (ev.kind !== 'step' || timer) return;
        const now = performance.now();
        if (++seen === k) {
          const stepMs = seen > 1 ? now - previous : 50;
          timer = setTimeout(() => child.kill('SIGKILL'), Math.round(fraction * stepMs));
        }
        previous = now;
      });
      clearTimeout(timer);
      if (end.signal !== 'SIGKILL') {
        // The run finished before the kill came: nothing left to interrupt.
        expect(end.code, end.stderr).toBe(0);
        break;
      }
      kills++;
      const files = await checkFiles(dir);
      temps += files.temps;
      const found = await findLatestCheckpoint(dir);
      const step = found?.step ?? -1;
      killSteps.push(step);
      // The newest complete checkpoint never goes back, and it is the newest file.
      expect(step).toBeGreaterThanOrEqual(latest);
      expect(step).toBe(Math.max(-1, ...files.steps));
      latest = step;
      // Every step before the checkpoint has its metrics row (a cut last line may follow).
      if (step > 0) {
        const rows = lossBits(dir);
        for (let s = 0; s < step; s++) expect(rows.has(s), `metrics row of step ${s}`).toBe(true);
      }
    }
    expect(kills).toBeGreaterThanOrEqual(8);

    // The swavgpu CLI finishes the run: --resume takes the config from the checkpoint.
    const cli = await runChild(['tools/cli.ts', 'train', '--resume', '--quiet', '--out', dir,
      '--data', data]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stderr).toMatch(new RegExp(`resumed from .*ckpt-0*${latest}\\.safetensors`));
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);

    const refEnd = await whole;
    expect(refEnd.code, refEnd.stderr).toBe(0);

    const got = lossBits(dir);
    const want = lossBits(ref);
    expect(want.size).toBe(EPOCHS * 8);
    expect([...got.entries()].sort((a, b) => a[0] - b[0]))
      .toEqual([...want.entries()].sort((a, b) => a[0] - b[0]));
    const last = `ckpt-${String(EPOCHS * 8).padStart(6, '0')}.safetensors`;
    const [a, b] = await Promise.all([loadCheckpoint(join(dir, last)),
      loadCheckpoint(join(ref, last))]);
    expect(Object.keys(a.tensors).sort()).toEqual(Object.keys(b.tensors).sort());
    for (const [name, t] of Object.entries(a.tensors)) {
      const u = b.tensors[name];
      expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
        .equals(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength)), name)
        .toBe(true);
    }
    // For the report: where the kills left the run, and how long all of it took.
    process.stderr.write(`crash test: ${kills} kills, newest checkpoint after each: ` +
      `${killSteps.join(' ')}; ${temps} temporary files seen; ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }, 180_000);
});
