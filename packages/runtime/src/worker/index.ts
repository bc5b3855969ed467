export type { RunnerStats } from './protocol.js';
export { type RunnerFactory, type ServedRunner, serveRunner } from './serve.js';
export { WorkerCrashedError, WorkerRunner, type WorkerRunnerOptions } from './worker-runner.js';
