// Quiet waits: Dawn's polls (anonymous native callbacks queued with the global setImmediate)
// leave the core free once a wait lasts, JavaScript's own setImmediate calls are untouched,
// and an engine on a CPU driver waits without spinning while one told not to spins.

import { describe, it, expect, afterEach } from 'vitest';
import { performance } from 'node:perf_hooks';
import { createEngine, installQuietWaits, quietWaitsActive, type Tensor } from '../../src/node.js';
import { conv2d } from '../../src/ops/conv.js';
import { timerSlackNs } from '../../src/gpu/quiet-wait.js';
import { writeFileSync } from 'node:fs';

const original = globalThis.setImmediate;
afterEach(() => {
  expect(globalThis.setImmediate).toBe(original);
  expect(quietWaitsActive()).toBe(false);
});

/**
 * A stand-in for Dawn's poll loop: a callback that V8 prints as an anonymous native function
 * (a proxy of an anonymous function, as Dawn's Napi callbacks are), re-queued with the global
 * setImmediate until `ms` have passed. Resolves with the number of polls it took.
 */
function fakeDawnWait(ms: number): Promise<number> {
  return new Promise((resolve) => {
    const end = performance.now() + ms;
    let polls = 0;
    const tick = new Proxy(function () {
      polls++;
      if (performance.now() >= end) resolve(polls);
      else globalThis.setImmediate(tick);
    }, {});
    expect(tick.name).toBe('');
    expect(Function.prototype.toString.call(tick)).toBe('function () { [native code] }');
    globalThis.setImmediate(tick);
  });
}

describe('installQuietWaits', () => {
  it('paces native polls: back to back for spinMs, then naps, then timers', async () => {
    // Unpaced, a 60 ms wait polls thousands of times (each poll is microseconds).
    const spun = await fakeDawnWait(60);
    expect(spun).toBeGreaterThan(2000);
    const release = installQuietWaits({ spinMs: 1, napMs: 0.2, napUntilMs: 5, pollMs: 2 });
    try {
      expect(quietWaitsActive()).toBe(true);
      const quiet = await fakeDawnWait(60);
      // At most: ~1 ms of back-to-back polls (hundreds), 4 ms of 0.2 ms naps (20) and 55 ms
      // of 2 ms timers (28); at least the timers' share.
      expect(quiet).toBeLessThan(spun / 4);
      expect(quiet).toBeGreaterThan(10);
      const elu0 = performance.eventLoopUtilization();
      await fakeDawnWait(60);
      const elu = performance.eventLoopUtilization(elu0);
      // The loop sleeps between timer polls: mostly idle (a spinning loop reads ~1).
      expect(elu.utilization).toBeLessThan(0.5);
    } finally {
      release();
    }
    expect(quietWaitsActive()).toBe(false);
  });

  it('passes JavaScript callbacks through, with their arguments and in order', async () => {
    const release = installQuietWaits({ spinMs: 0, napUntilMs: 0, pollMs: 50 });
    try {
      const seen: string[] = [];
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        globalThis.setImmediate((a: string, b: string) => seen.push(a + b), 'x', 'y');
        globalThis.setImmediate(function named() { seen.push('named'); });
        globalThis.setImmediate((() => seen.push('bound')).bind(null));
        globalThis.setImmediate(() => resolve());
      });
      expect(seen).toEqual(['xy', 'named', 'bound']);
      // None waited for the 50 ms poll timer.
      expect(performance.now() - t0).toBeLessThan(40);
    } finally {
      release();
    }
  });

  it('leaves promise resolve functions alone (native and anonymous, but no Dawn poll)',
    async () => {
      const release = installQuietWaits({ spinMs: 0, napUntilMs: 0, pollMs: 50 });
      try {
        const t0 = performance.now();
        for (let i = 0; i < 20; i++) await new Promise((r) => globalThis.setImmediate(r));
        // 20 rounds through the 50 ms timer would take a second.
        expect(performance.now() - t0).toBeLessThan(200);
        // Its handle is an Immediate that clearImmediate cancels (a Timeout in its place
        // corrupted Node's count of pending immediates).
        let resolved = false;
        void new Promise<void>((r) => {
          globalThis.clearImmediate(globalThis.setImmediate(r));
        }).then(() => { resolved = true; });
        await new Promise((r) => setTimeout(r, 5));
        expect(resolved).toBe(false);
        await new Promise((r) => globalThis.setImmediate(r));
      } finally {
        release();
      }
    });

  it('spins first even where naps are off, then polls on timers', async () => {
    const release = installQuietWaits({ spinMs: 5, napUntilMs: 0, pollMs: 20 });
    try {
      // A 3 ms wait stays within the spin: thousands of polls, no 20 ms timer.
      const t0 = performance.now();
      const polls = await fakeDawnWait(3);
      expect(performance.now() - t0).toBeLessThan(15);
      expect(polls).toBeGreaterThan(50);
    } finally {
      release();
    }
  });

  it('releasing an install puts back the pacing of the one before', async () => {
    const outer = installQuietWaits({ spinMs: 0, napUntilMs: 0, pollMs: 1 });
    try {
      const inner = installQuietWaits({ spinMs: 0, napUntilMs: 0, pollMs: 50 });
      let t0 = performance.now();
      await fakeDawnWait(5);
      // The inner install's 50 ms timer is in force.
      expect(performance.now() - t0).toBeGreaterThan(40);
      inner();
      t0 = performance.now();
      await fakeDawnWait(5);
      // The outer one's 1 ms timers again: not the 50 ms of the released install.
      expect(performance.now() - t0).toBeLessThan(30);
      expect(quietWaitsActive()).toBe(true);
    } finally {
      outer();
    }
  });

  it('nests installs, releases once each, and leaves a wrapper added later alone', () => {
    const r1 = installQuietWaits();
    const r2 = installQuietWaits();
    const ours = globalThis.setImmediate;
    expect(ours).not.toBe(original);
    r1();
    r1();
    expect(quietWaitsActive()).toBe(true);
    expect(globalThis.setImmediate).toBe(ours);
    r2();
    expect(globalThis.setImmediate).toBe(original);
    // Somebody wraps ours: releasing must not throw their wrapper away.
    const r3 = installQuietWaits();
    const theirs = ((fn: () => void) => ours(fn)) as unknown as typeof setImmediate;
    globalThis.setImmediate = theirs;
    r3();
    expect(globalThis.setImmediate).toBe(theirs);
    expect(quietWaitsActive()).toBe(false);
    // They put the original back: the next install wraps it again.
    globalThis.setImmediate = original;
    const r4 = installQuietWaits();
    expect(globalThis.setImmediate).not.toBe(original);
    r4();
    expect(globalThis.setImmediate).toBe(original);
  });

  // Linux lets a process set its main thread's slack (/proc/self/timerslack_ns); where a
  // sandbox refuses, there is nothing to test.
  const slackSettable = (() => {
    const now = timerSlackNs();
    if (now === null) return false;
    try {
      writeFileSync('/proc/self/timerslack_ns', String(now));
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!slackSettable)('lowers the timer slack while installed and puts it back', () => {
    const before = timerSlackNs();
    expect(before).toBeGreaterThan(1000);
    const r1 = installQuietWaits();
    expect(timerSlackNs()).toBe(1000);
    const r2 = installQuietWaits({ timerSlackNs: 5000 });
    expect(timerSlackNs()).toBe(5000);
    // 0: the slack from before the installs, while this one is in force.
    const r3 = installQuietWaits({ timerSlackNs: 0 });
    expect(timerSlackNs()).toBe(before);
    r3();
    expect(timerSlackNs()).toBe(5000);
    r1();
    expect(timerSlackNs()).toBe(5000);
    r2();
    expect(timerSlackNs()).toBe(before);
    // The point of it: a 0.02 ms nap outlasts it by Linux's 50 us default slack otherwise.
    const nap = () => {
      const cell = new Int32Array(new SharedArrayBuffer(4));
      const ts: number[] = [];
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        Atomics.wait(cell, 0, 0, 0.02);
        ts.push(performance.now() - t0);
      }
      return ts.sort((a, b) => a - b)[100];
    };
    const r4 = installQuietWaits();
    const quick = nap();
    r4();
    expect(quick).toBeLessThan(nap());
  });

  it('refuses pacing that is no number in its range', () => {
    expect(() => installQuietWaits({ napMs: -1 }))
      .toThrow('installQuietWaits: napMs must be a number in [0, 1], got -1');
    expect(() => installQuietWaits({ pollMs: Number.NaN })).toThrow(/pollMs/);
    expect(() => installQuietWaits({ spinMs: '1' as unknown as number }))
      .toThrow('spinMs must be a number in [0, Infinity], got 1');
    // A nap holds the event loop, and a timer past 2^31 ms fires at once: both bounded.
    expect(() => installQuietWaits({ napMs: Infinity }))
      .toThrow('napMs must be a number in [0, 1], got Infinity');
    expect(() => installQuietWaits({ pollMs: 3e9 }))
      .toThrow('pollMs must be a number in [0, 1000], got 3000000000');
    expect(() => installQuietWaits({ timerSlackNs: 1.5 }))
      .toThrow('timerSlackNs must be a whole number of nanoseconds, got 1.5');
    expect(() => installQuietWaits({ timerSlackNs: 1e9 }))
      .toThrow('timerSlackNs must be a number in [0, 50000000], got 1000000000');
    // Spinning throughout (Dawn's own way) and napping throughout stay possible.
    installQuietWaits({ spinMs: Infinity, napUntilMs: Infinity })();
    // Left out or undefined: the default.
    installQuietWaits({ spinMs: undefined })();
    expect(quietWaitsActive()).toBe(false);
  });
});

describe('engines and quiet waits', () => {
  /** Event-loop utilisation while the engine waits for ~40 convolutions. */
  async function waitUtilisation(quietWaits: boolean): Promise<number> {
    const e = await createEngine({ quietWaits });
    try {
      expect(quietWaitsActive()).toBe(quietWaits);
      const x = e.tensor(new Float32Array(64 * 8 * 28 * 28).fill(0.5), [64, 8, 28, 28]);
      const w = e.tensor(new Float32Array(16 * 8 * 9).fill(0.25), [16, 8, 3, 3]);
      const run = async (n: number) => {
        const ys: Tensor[] = [];
        for (let i = 0; i < n; i++) ys.push(conv2d(x, w, null, { padding: 1 }));
        await e.run(ys);
        const elu0 = performance.eventLoopUtilization();
        await e.sync();
        const elu = performance.eventLoopUtilization(elu0);
        for (const y of ys) y.dispose();
        return elu.utilization;
      };
      await run(2);
      return await run(40);
    } finally {
      await e.dispose();
    }
  }

  it('an engine waits without spinning when quiet, and spins when told not to be', async () => {
    const quiet = await waitUtilisation(true);
    expect(quietWaitsActive()).toBe(false);
    const spinning = await waitUtilisation(false);
    expect(quiet).toBeLessThan(0.5);
    expect(spinning).toBeGreaterThan(0.8);
  });

  it('is on by default for a CPU driver and released by dispose', async () => {
    const e = await createEngine();
    const cpu = /llvmpipe|lavapipe|swiftshader/i.test(e.gpu.adapterInfo);
    expect(quietWaitsActive()).toBe(cpu);
    await e.dispose();
    expect(quietWaitsActive()).toBe(false);
  });
});
