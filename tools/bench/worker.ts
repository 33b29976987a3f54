// A benchmark worker process: one contestant (ours, tfjs or jax) on its own Dawn device,
// answering the parent's requests one at a time: prepare a case, time samples, finish.

import { readdirSync, readFileSync } from 'node:fs';
import type { CaseSpec, CheckReply, Contestant, InfoReply, PrepareReply, ProfileReply, Reply,
  Request, SampleReply, ShapesReply, StepCounters } from './protocol.js';

/** One prepared case: run() does one operation and resolves once the device has finished. */
export interface PreparedOp {
  run(): Promise<void>;
  dispose(): Promise<void> | void;
  /** Shown beside the case's figures (what data a step trains on). */
  note?: string;
  /** One operation's outputs summarised as [sum, sum of squares] each, in a fixed order. */
  check?(): Promise<CheckReply>;
  /** Per-step counters (ours, SwAV step only). */
  counters?(): StepCounters;
  /** One operation with every dispatch timed (ours). */
  profile?(): Promise<ProfileReply>;
}

export interface Backend {
  info(): InfoReply;
  prepare(spec: CaseSpec): Promise<PreparedOp>;
  shapes?(): Promise<ShapesReply>;
}

export function summarise(values: ArrayLike<number>): [number, number] {
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    sq += values[i] * values[i];
  }
  return [sum, sq];
}

/**
 * CPU nanoseconds of every thread but the main one: lavapipe's workers do the kernels while
 * the main thread records and waits (a peer's main thread spins in Dawn's
 * polls; ours sleeps, see src/gpu/quiet-wait.ts). Linux only; 0 elsewhere.
 */
export function workerCpuNs(): number {
  let ns = 0;
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  for (const t of tasks) {
    if (Number(t) === process.pid) continue;
    try {
      ns += Number(readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between listing and reading.
    }
  }
  return ns;
}

async function loadBackend(who: Contestant): Promise<Backend> {
  if (who === 'ours') return (await import('./ours.js')).createOurs();
  if (who === 'tfjs') return (await import('./tfjs.js')).createTfjs();
  if (who === 'jax') return (await import('./jax.js')).createJax();
  throw new Error(`bench worker: unknown contestant '${who}'`);
}

async function main(): Promise<void> {
  const who = process.argv[2] as Contestant;
  const send = (r: Reply) => process.send!(r);
  let backend: Backend | null = null;
  let op: PreparedOp | null = null;
  let inner = 1;
  const handle = async (req: Request): Promise<unknown> => {
    backend ??= await loadBackend(who);
    switch (req.cmd) {
      case 'info':
        return backend.info();
      case 'shapes':
        if (!backend.shapes) throw new Error(`${who} cannot list the model's shapes`);
        return backend.shapes();
      case 'prepare': {
        if (op) await op.dispose();
        op = null;
        op = await backend.prepare(req.spec);
        let t0 = performance.now();
        await op.run();
        const firstMs = performance.now() - t0;
        // A second call, compiled by now, sizes the sample.
        t0 = performance.now();
        await op.run();
        const ms = performance.now() - t0;
        inner = Math.max(1, Math.min(req.maxInner, Math.ceil(req.targetMs / Math.max(ms, 1e-3))));
        return { inner, firstMs, note: op.note } satisfies PrepareReply;
      }
      case 'sample': {
        if (!op) throw new Error('sample before prepare');
        const c0 = workerCpuNs();
        const t0 = performance.now();
        for (let i = 0; i < inner; i++) await op.run();
        const ms = (performance.now() - t0) / inner;
        const cpu = workerCpuNs() - c0;
        return { ms, cpuMs: cpu > 0 ? cpu / 1e6 / inner : undefined } satisfies SampleReply;
      }
      case 'check':
        if (!op?.check) throw new Error(`${who} has no check for this case`);
        return op.check();
      case 'profile':
        if (!op?.profile) throw new Error(`${who} cannot profile this case`);
        return op.profile();
      case 'finish': {
        const counters = op?.counters?.();
        if (op) await op.dispose();
        op = null;
        return { counters };
      }
      case 'quit':
        setImmediate(() => process.exit(0));
        return null;
    }
  };
  // Requests are served strictly one after another.
  let chain: Promise<void> = Promise.resolve();
  process.on('message', (req: Request) => {
    chain = chain.then(async () => {
      try {
        send({ id: req.id, ok: true, value: await handle(req) });
      } catch (e) {
        const err = e as Error;
        send({ id: req.id, ok: false, error: `${err.name}: ${err.message}`.slice(0, 2000) });
      }
    });
  });
  process.on('disconnect', () => process.exit(0));
}

await main();
