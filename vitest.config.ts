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
  },
});
