// The parent's side of the worker protocol: Node workers forked per contestant (each its
// own Dawn device) and the PyTorch mirror as a Python child speaking JSON lines.

import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Contestant, Reply, Request } from './protocol.js';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void;
  timer: NodeJS.Timeout };

/** Request without its id (the worker link numbers them). */
export type Ask = Request extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never :
  never;

/** The Python that runs the PyTorch mirror unless the bench's --python names another. */
export const PYTHON = '/usr/bin/python3';
/** The PyTorch mirror, beside tools/bench/ in the source tree (not part of a build). */
const TORCH_SCRIPT = fileURLToPath(new URL('../bench_torch.py', import.meta.url));

/** Whether PyTorch imports; the bench leaves its row out with a note otherwise. */
export function torchAvailable(python = PYTHON): { ok: boolean; why: string } {
  if (!existsSync(TORCH_SCRIPT)) return { ok: false, why: `${TORCH_SCRIPT} is missing` };
  const r = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return { ok: false, why: `${python}: ${r.error.message}` };
  if (r.status !== 0) {
    const last = (r.stderr ?? '').trim().split('\n').pop() ?? '';
    return { ok: false, why: `${python} -c 'import torch' failed: ${last}` };
  }
  return { ok: true, why: '' };
}

export interface WorkerOptions {
  /** Extra environment variables of the worker process. */
  env?: Record<string, string>;
  /** Called with each stderr line that is not Dawn's start-up noise. */
  onStderr?: (line: string) => void;
  /** The Python of the PyTorch mirror; default PYTHON. */
  python?: string;
}

/** One contestant's process; requests are answered in order, each with a time limit. */
export class WorkerLink {
  private child: ChildProcess;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private exited: string | null = null;

  constructor(readonly who: Contestant, opts: WorkerOptions = {}) {
    const env = { ...process.env, ...opts.env };
    if (who === 'torch') {
      this.child = spawn(opts.python ?? PYTHON, [TORCH_SCRIPT, '--serve'],
        { env, stdio: ['pipe', 'pipe', 'pipe'] });
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        if (!line.startsWith('{')) return;
        this.settle(JSON.parse(line) as Reply);
      });
    } else {
      // worker.ts beside this file under tsx (npm run bench), worker.js in a build.
      const ts = import.meta.url.endsWith('.ts');
      const script = fileURLToPath(new URL(`./worker.${ts ? 'ts' : 'js'}`, import.meta.url));
      // tsx's loader comes from the parent's own flags when it has them.
      const execArgv = ts && !process.execArgv.length ? ['--import', 'tsx'] : process.execArgv;
      this.child = fork(script, [who], { env, execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
      this.child.on('message', (m) => this.settle(m as Reply));
      this.child.stdout!.on('data', () => undefined);
    }
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      // Dawn announces reduced limits at every device creation; nothing to act on.
      if (/^Warning: max\w+ artificially reduced/.test(line)) return;
      opts.onStderr?.(line);
    });
    this.child.on('exit', (code, signal) => {
      this.exited = `the ${who} worker exited (${signal ?? `code ${code}`})`;
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new Error(this.exited));
      }
      this.pending.clear();
    });
  }

  get alive(): boolean {
    return this.exited === null;
  }

  private settle(r: Reply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    clearTimeout(p.timer);
    if (r.ok) p.resolve(r.value);
    else p.reject(new Error(r.error));
  }

  /** Sends a request; past `timeoutMs` the worker is killed and the request fails. */
  ask<T>(req: Ask, timeoutMs: number): Promise<T> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.who}: '${req.cmd}' took longer than ${timeoutMs / 1000} s; ` +
          `the worker was stopped`));
        this.kill();
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const msg = { ...req, id } as Request;
      if (this.who === 'torch') this.child.stdin!.write(`${JSON.stringify(msg)}\n`);
      else this.child.send(msg);
    });
  }

  kill(): void {
    if (this.exited === null && this.child.pid !== undefined) this.child.kill('SIGKILL');
  }

  /** Asks the worker to quit, and stops it if it does not within a few seconds. */
  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.ask({ cmd: 'quit' }, 10_000).catch(() => undefined);
    const timer = setTimeout(() => this.kill(), 10_000);
    await done;
    clearTimeout(timer);
  }
}
