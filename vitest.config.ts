import { defineConfig } from 'vitest/config';

// One root config over every package. Tests run against TypeScript sources
// through the `@tsinfer/source` export condition, so no build is needed for
// in-process code; worker threads load their entry through tsx (see
// packages/core/src/worker-url.ts).
export default defineConfig({
  resolve: { conditions: ['@tsinfer/source'] },
  ssr: { resolve: { conditions: ['@tsinfer/source'] } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'examples/*/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    pool: 'forks',
    testTimeout: 60_000,
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-results.json' },
  },
});
