// Quiet waits for Dawn in Node.
//
// Dawn's Node binding settles its promises (mapAsync, onSubmittedWorkDone) from a poll that
// re-queues itself with the global setImmediate for as long as any of them is pending, so
// one core spins for the whole time the device works. On a CPU driver that core is one the
// driver's own threads need: measured on lavapipe with 2 cores, a 128x1x28x28 convolution
// took 2.9 ms while the main thread spun and 1.65 ms while it slept, and the SwAV step ran
// 1.8x faster. installQuietWaits() paces those polls, and only those (Dawn's callbacks are
// anonymous native functions; JavaScript callbacks are queued as given, though one queued
// during a nap runs after it, up to ~0.1 ms late, in a wait's first 3 ms): each after a
// short sleep, then on timers (optionally back to back for the first `spinMs` of a wait).
// Not even the start of a wait spins by default: measured on lavapipe with device timestamps,
// 0.2 ms of spinning as the device started made a 0.6 ms dispatch take 0.79 ms of device
// time and a 2.2 ms one 2.4 ms (0.05 ms of it, 3.0 ms), as if the driver's threads, woken
// while the core was taken, were slow to spread over both cores. Only waits under about
// 0.2 ms lose (some 0.02 ms to the sleep's granularity).
//
// Linux stretches a sleep by the thread's timer slack (50 us by default), so a 0.02 ms nap
// lasted 0.07-0.1 ms and a wait ended that much after the device. While quiet waits are on,
// the main thread's slack is 1 us (/proc/self/timerslack_ns, the thread's own setting, put
// back when the last install is released): measured on lavapipe, a 0.6 ms convolution's
// call 0.76 -> 0.66-0.69 ms, a tiny op's 0.27 -> 0.21 ms.

import { readFileSync, writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

/** How polls are paced while some engine that asked for quiet waits is alive. */
export interface QuietWaitOptions {
  /** Milliseconds at the start of a wait polled as Dawn does, back to back (default 0). */
  spinMs?: number;
  /**
   * After that, milliseconds the thread sleeps before each poll (Atomics.wait: no core used,
   * the event loop held that long, so JavaScript's own immediates and I/O wait too; default
   * 0.02, which Linux stretches to 0.07-0.1 here; at most 1)...
   */
  napMs?: number;
  /** ...until the wait is this many milliseconds old (default 3; 0: no naps)... */
  napUntilMs?: number;
  /** ...and then milliseconds between polls, on timers (default 1, Node's least; <= 1000). */
  pollMs?: number;
  /**
   * The main thread's timer slack in nanoseconds while quiet waits are on (Linux; default
   * 1000; 0 keeps the slack it had). Worker threads keep theirs: Linux lets a process set
   * only its main thread's, and only from the main thread.
   */
  timerSlackNs?: number;
}

type Pace = Required<QuietWaitOptions>;

/** Largest values taken: a longer nap holds the event loop, a longer timer delays results. */
const PACE_MAX: Pace = { spinMs: Infinity, napMs: 1, napUntilMs: Infinity, pollMs: 1000,
  timerSlackNs: 50_000_000 };

const NATIVE_ANONYMOUS = 'function () { [native code] }';

interface State extends Pace {
  original: typeof setImmediate;
  wrapper: typeof setImmediate;
  /** The pacing of each unreleased install, oldest first; the last one is in force. */
  installs: Pace[];
  waitStart: number;
  /** The main thread's slack before the first install changed it (null: not changed). */
  slackBefore: number | null;
}

const SLACK_FILE = '/proc/self/timerslack_ns';

/** The main thread's timer slack in ns, or null where it can't be read (not Linux). */
export function timerSlackNs(): number | null {
  if (process.platform !== 'linux' || !isMainThread) return null;
  try {
    return Number(readFileSync(SLACK_FILE, 'utf8'));
  } catch {
    return null;
  }
}

/** Sets the main thread's timer slack, where Linux and the sandbox allow it. */
function setTimerSlack(ns: number): void {
  try {
    writeFileSync(SLACK_FILE, String(ns));
  } catch {
    // Refused (a sandbox): the sleeps stay as long as before, nothing else changes.
  }
}

/** The slack the install in force asks for; where it asks none (0), the slack from before. */
function applySlack(s: State): void {
  const asked = s.installs[s.installs.length - 1]?.timerSlackNs ?? 0;
  if (asked > 0) {
    s.slackBefore ??= timerSlackNs();
    if (s.slackBefore !== null) setTimerSlack(asked);
  } else if (s.slackBefore !== null) {
    setTimerSlack(s.slackBefore);
    s.slackBefore = null;
  }
}

let state: State | null = null;
/** Never notified: Atomics.wait on it just sleeps. */
const napCell = new Int32Array(new SharedArrayBuffer(4));
const nativeChecked = new WeakMap<object, boolean>();

/**
 * Dawn's poll: an anonymous native function made from a function template, which (unlike
 * V8's built-ins such as a promise's resolve, and unlike bound functions) has a prototype.
 */
function isDawnPoll(fn: unknown): boolean {
  if (typeof fn !== 'function' || fn.name !== '') return false;
  let native = nativeChecked.get(fn);
  if (native === undefined) {
    native = Function.prototype.toString.call(fn) === NATIVE_ANONYMOUS &&
      Object.hasOwn(fn, 'prototype');
    nativeChecked.set(fn, native);
  }
  return native;
}

/**
 * Makes Dawn's polls quiet until the returned release function is called (installs nest: the
 * polls stay quiet while any install is unreleased). The pacing of the latest unreleased
 * install is in force; releasing it restores the one before.
 */
export function installQuietWaits(opts: QuietWaitOptions = {}): () => void {
  const pace: Pace = { spinMs: 0, napMs: 0.02, napUntilMs: 3, pollMs: 1, timerSlackNs: 1000 };
  for (const k of Object.keys(pace) as (keyof Pace)[]) {
    const v = opts[k];
    if (v !== undefined) pace[k] = v;
  }
  for (const k of Object.keys(pace) as (keyof Pace)[]) {
    const v = pace[k];
    if (typeof v !== 'number' || !(v >= 0 && v <= PACE_MAX[k])) {
      throw new RangeError(`installQuietWaits: ${k} must be a number in [0, ${PACE_MAX[k]}], ` +
        `got ${String(v)}`);
    }
  }
  if (!Number.isInteger(pace.timerSlackNs)) {
    throw new RangeError(`installQuietWaits: timerSlackNs must be a whole number of ` +
      `nanoseconds, got ${pace.timerSlackNs}`);
  }
  // A state left with no installs is one whose wrapper somebody else has wrapped (or thrown
  // away) since: start again from whatever setImmediate is now.
  if (state && state.installs.length === 0) state = null;
  if (!state) {
    const original = globalThis.setImmediate;
    const s: State = { original, wrapper: original, installs: [], ...pace, waitStart: 0,
      slackBefore: null };
    // A poll queued from inside a poll continues a wait; one queued from elsewhere (mapAsync,
    // onSubmittedWorkDone called by the application) starts one.
    let inPoll = false;
    const poll = (fn: (...a: unknown[]) => void, args: unknown[]) => () => {
      inPoll = true;
      try {
        fn(...args);
      } finally {
        inPoll = false;
      }
    };
    const wrapper = ((fn: (...a: unknown[]) => void, ...args: unknown[]) => {
      if (s.installs.length === 0 || !isDawnPoll(fn)) return original(fn, ...args);
      const now = performance.now();
      if (!inPoll) s.waitStart = now;
      const age = now - s.waitStart;
      if (age < s.spinMs) return original(poll(fn, args));
      if (age < s.napUntilMs && s.napMs > 0) {
        const p = poll(fn, args);
        return original(() => {
          Atomics.wait(napCell, 0, 0, s.napMs);
          p();
        });
      }
      // Dawn ignores what setImmediate returns (a Timeout here, which clearImmediate would
      // mistake for an Immediate: only Dawn's polls ever take this path).
      return setTimeout(poll(fn, args), s.pollMs) as unknown as NodeJS.Immediate;
    }) as typeof setImmediate;
    Object.assign(wrapper, original);
    s.wrapper = wrapper;
    globalThis.setImmediate = wrapper;
    state = s;
  }
  const s = state;
  s.installs.push(pace);
  Object.assign(s, pace);
  applySlack(s);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    s.installs.splice(s.installs.indexOf(pace), 1);
    applySlack(s);
    if (s.installs.length) Object.assign(s, s.installs[s.installs.length - 1]);
    // Put the original back unless somebody has wrapped ours since.
    else if (globalThis.setImmediate === s.wrapper) {
      globalThis.setImmediate = s.original;
      state = null;
    }
  };
}

/** Whether Dawn's polls are currently quiet (some install unreleased). */
export function quietWaitsActive(): boolean {
  return state !== null && state.installs.length > 0;
}
