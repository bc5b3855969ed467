import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Where a worker thread's entry file is, for code that may run from built
 * JavaScript (`dist/`, production) or from TypeScript sources (tests under
 * vitest, which resolve workspace packages to `src/`).
 *
 * @param importMetaUrl `import.meta.url` of the module spawning the worker
 * @param relativeBase  path of the entry relative to that module, without extension
 */
export function workerEntry(importMetaUrl: string, relativeBase: string): { url: URL; fromSource: boolean } {
  const fromSource = importMetaUrl.endsWith('.ts');
  return { url: new URL(`${relativeBase}${fromSource ? '.ts' : '.js'}`, importMetaUrl), fromSource };
}

/**
 * Starts a worker thread on the module `relativeBase` next to the caller.
 * From built JavaScript this is `new Worker(url)`. From TypeScript sources
 * (Node 20 cannot strip types, and a `--import tsx` in a worker's execArgv
 * does not apply to the worker's entry) the worker first registers tsx's ESM
 * hooks, then imports the entry, with workspace packages resolved to their
 * sources like the caller's.
 */
export function startWorker(
  importMetaUrl: string,
  relativeBase: string,
  options: WorkerOptions = {},
): Worker {
  const entry = workerEntry(importMetaUrl, relativeBase);
  if (!entry.fromSource) return new Worker(entry.url, options);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap =
    `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); ` +
    `return import(${JSON.stringify(entry.url.href)}); });`;
  return new Worker(bootstrap, {
    ...options,
    eval: true,
    execArgv: [...(options.execArgv ?? []), '--conditions=@tsinfer/source'],
  });
}
