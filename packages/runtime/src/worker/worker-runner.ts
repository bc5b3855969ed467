/**
 * WorkerRunner: a ModelRunner whose model runs in a worker thread
 * (onnxruntime-node's `run` blocks the thread it runs on). Forwards and
 * control calls are request/response messages matched by sequence number.
 * If the worker crashes or exits, every pending and every later call is
 * rejected with TSI_ERR_WORKER_CRASHED; nothing hangs.
 */
import type { Worker, WorkerOptions } from 'node:worker_threads';
import { startWorker, TsinferError } from '@tsinfer/core';
import type { ForwardBatch, ForwardOutput, ModelInfo, ModelRunner } from '../contract.js';
import type { OnnxRunnerOptions } from '../execution/onnx-runner.js';
import { InvalidBatchError } from '../sim/errors.js';
import { type FromWorker, fromWireError, packBatch, type RunnerStats, type ToWorker } from './protocol.js';

/** The worker thread died (uncaught error, exit, or a failed message). */
export class WorkerCrashedError extends TsinferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TSI_ERR_WORKER_CRASHED', message, options);
    this.name = 'WorkerCrashedError';
  }
}

export interface WorkerRunnerOptions {
  /** Options of the OnnxRunner the worker creates. */
  runner: OnnxRunnerOptions;
  /**
   * Another worker entry speaking the same protocol (tests): the module
   * `relativeBase` (no extension) next to `importMetaUrl`. Default ./entry.
   */
  entry?: { importMetaUrl: string; relativeBase: string };
  /** Passed to the worker as `workerData`. */
  workerData?: unknown;
  /** Extra resource limits for the worker. */
  resourceLimits?: WorkerOptions['resourceLimits'];
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export class WorkerRunner implements ModelRunner {
  readonly info: ModelInfo;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #seq = 0;
  #dead: Error | null = null;
  #closing = false;

  private constructor(worker: Worker, info: ModelInfo) {
    this.#worker = worker;
    this.info = info;
    worker.on('message', (msg: FromWorker) => this.#onMessage(msg));
    worker.on('error', (err) => this.#crash(`worker thread crashed: ${err.message}`, err));
    worker.on('messageerror', (err) =>
      this.#crash(`worker message could not be decoded: ${err.message}`, err),
    );
    worker.on('exit', (code) => {
      if (this.#closing && this.#dead === null) {
        this.#dead = new InvalidBatchError('forward after close');
        this.#rejectAll(this.#dead);
      } else this.#crash(`worker thread exited with code ${code}`);
    });
  }

  /** Spawns the worker, which loads the model; resolves when it is ready. */
  static start(options: WorkerRunnerOptions): Promise<WorkerRunner> {
    const entry = options.entry ?? { importMetaUrl: import.meta.url, relativeBase: './entry' };
    const worker = startWorker(entry.importMetaUrl, entry.relativeBase, {
      workerData: options.workerData,
      ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}),
    });
    return new Promise<WorkerRunner>((resolve, reject) => {
      const onMessage = (msg: FromWorker): void => {
        if (msg.type === 'ready') {
          cleanup();
          resolve(new WorkerRunner(worker, msg.info));
        } else if (msg.type === 'init-failed') {
          cleanup();
          void worker.terminate();
          reject(fromWireError(msg.error));
        }
      };
      const onError = (err: Error): void => {
        cleanup();
        void worker.terminate();
        reject(
          new WorkerCrashedError(`worker thread crashed while loading the model: ${err.message}`, {
            cause: err,
          }),
        );
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new WorkerCrashedError(`worker thread exited with code ${code} while loading the model`));
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      const init: ToWorker = { type: 'init', options: options.runner };
      worker.postMessage(init);
    });
  }

  forward(batch: ForwardBatch): Promise<ForwardOutput> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (this.#closing) return Promise.reject(new InvalidBatchError('forward after close'));
    const seq = ++this.#seq;
    const { wire, transfer } = packBatch(batch);
    return this.#call<ForwardOutput>(seq, { type: 'forward', seq, batch: wire }, transfer);
  }

  /** KV usage and the last step's timing, from the worker. */
  stats(): Promise<RunnerStats> {
    if (this.#dead) return Promise.reject(this.#dead);
    const seq = ++this.#seq;
    return this.#call<RunnerStats>(seq, { type: 'stats', seq }, []);
  }

  /** Closes the runner and ends the worker thread. */
  async close(): Promise<void> {
    if (this.#dead || this.#closing) return;
    this.#closing = true;
    const seq = ++this.#seq;
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    try {
      await this.#call<void>(seq, { type: 'close', seq }, []);
    } finally {
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
      await this.#worker.terminate();
    }
  }

  #call<T>(seq: number, msg: ToWorker, transfer: ArrayBuffer[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      try {
        this.#worker.postMessage(msg, transfer);
      } catch (err) {
        this.#pending.delete(seq);
        reject(err as Error);
      }
    });
  }

  #onMessage(msg: FromWorker): void {
    if (msg.type === 'ready' || msg.type === 'init-failed') return;
    const p = this.#pending.get(msg.seq);
    if (!p) return;
    this.#pending.delete(msg.seq);
    switch (msg.type) {
      case 'result':
        p.resolve(msg.output);
        return;
      case 'stats':
        p.resolve(msg.stats);
        return;
      case 'closed':
        p.resolve(undefined);
        return;
      case 'error':
        p.reject(fromWireError(msg.error));
        return;
    }
  }

  #crash(message: string, cause?: unknown): void {
    if (this.#dead !== null) return;
    this.#dead = new WorkerCrashedError(message, cause === undefined ? undefined : { cause });
    this.#rejectAll(this.#dead);
  }

  #rejectAll(err: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
  }
}
