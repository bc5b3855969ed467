import type { WorkerOptions } from 'node:worker_threads';

/**
 * Where a worker thread's entry file is, for code that may run from built
 * JavaScript (`dist/`, production) or from TypeScript sources (tests under
 * vitest, which resolve packages to `src/`). From sources the entry is the
 * `.ts` file and the worker loads it through tsx; Node 20 cannot strip types
 * itself.
 *
 * @param importMetaUrl `import.meta.url` of the module spawning the worker
 * @param relativeBase  path of the entry relative to that module, without extension
 */
export function workerEntry(
  importMetaUrl: string,
  relativeBase: string,
): { url: URL; options: Pick<WorkerOptions, 'execArgv'> } {
  const fromSource = importMetaUrl.endsWith('.ts');
  const url = new URL(`${relativeBase}${fromSource ? '.ts' : '.js'}`, importMetaUrl);
  // From sources, workspace packages must resolve to their sources too.
  return {
    url,
    options: fromSource ? { execArgv: ['--conditions=@tsinfer/source', '--import', 'tsx'] } : {},
  };
}
