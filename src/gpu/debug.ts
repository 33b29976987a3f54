// One numeric debug level for the whole engine, each level documented in README.md.
//
//   0  quiet (default)
//   1  adapter and device limits at start-up; pipeline compilations
//   2  one line per run: nodes, dispatches, buffers allocated, wall time
//   3  each dispatch's time once its run has finished (Engine.profile's timing)
//   4  the WGSL text of every pipeline compiled
//
// SWAVGPU_DEBUG sets the level in Node; SWAVGPU_DEBUG_FILTER keeps only lines whose
// kernel name contains the given text. In a browser call setDebug().

let level = 0;
let filter = '';

function readEnv(name: string): string | undefined {
  const g = globalThis as { process?: { env?: Record<string, string | undefined> } };
  return g.process?.env?.[name];
}

{
  const env = readEnv('SWAVGPU_DEBUG');
  if (env !== undefined && env !== '') level = Number(env) || 0;
  filter = readEnv('SWAVGPU_DEBUG_FILTER') ?? '';
}

export function setDebug(newLevel: number, newFilter = ''): void {
  level = newLevel;
  filter = newFilter;
}

export function debugLevel(): number {
  return level;
}

/** Logs at `at` or above; `kernel`, when given, is matched against the filter. */
export function debug(at: number, message: string, kernel?: string): void {
  if (level < at) return;
  if (filter && kernel !== undefined && !kernel.includes(filter)) return;
  console.error(`[swavgpu] ${message}`);
}
