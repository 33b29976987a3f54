import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

// One device per process: files run one after another in a single fork, because
// lavapipe already uses both cores and two Dawn devices would fight over them.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The CLI's engine tunes and caches its choices: tests (and the processes they start)
    // keep theirs apart from the user's ~/.cache/swavgpu.
    env: { XDG_CACHE_HOME: join(tmpdir(), 'swavgpu-test-cache') },
  },
});
