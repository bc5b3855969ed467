/**
 * Worker side of the WorkerRunner protocol: builds a runner from the init
 * message and serves forwards one at a time (the scheduler never overlaps
 * them; the runner rejects it if it does).
 */
import type { MessagePort } from 'node:worker_threads';
import type { ForwardOutput, ModelRunner } from '../contract.js';
import type { OnnxRunnerOptions } from '../execution/onnx-runner.js';
import { type FromWorker, type RunnerStats, type ToWorker, toWireError, unpackBatch } from './protocol.js';

/** A runner as the worker serves it; `stats` is optional. */
export interface ServedRunner extends ModelRunner {
  stats?(): RunnerStats;
}

export type RunnerFactory = (options: OnnxRunnerOptions) => Promise<ServedRunner>;

/** Serves one runner on `port` until a close message. */
export function serveRunner(port: MessagePort, factory: RunnerFactory): void {
  let runner: ServedRunner | null = null;
  const post = (msg: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);
  port.on('message', (msg: ToWorker) => {
    switch (msg.type) {
      case 'init':
        factory(msg.options).then(
          (r) => {
            runner = r;
            post({ type: 'ready', info: r.info });
          },
          (err: unknown) => post({ type: 'init-failed', error: toWireError(err) }),
        );
        return;
      case 'forward': {
        const r = runner;
        if (r === null) {
          post({
            type: 'error',
            seq: msg.seq,
            error: toWireError(new Error('forward before the runner was ready')),
          });
          return;
        }
        r.forward(unpackBatch(msg.batch)).then(
          (output: ForwardOutput) => {
            // Copy into fresh arrays we own, so transferring them detaches nothing the runner keeps.
            const ids = output.ids.slice();
            const tokens = output.tokens.slice();
            post({ type: 'result', seq: msg.seq, output: { ...output, ids, tokens } }, [
              ids.buffer as ArrayBuffer,
              tokens.buffer as ArrayBuffer,
            ]);
          },
          (err: unknown) => post({ type: 'error', seq: msg.seq, error: toWireError(err) }),
        );
        return;
      }
      case 'stats': {
        const r = runner;
        const stats: RunnerStats = r?.stats?.() ?? {
          kvUsedTokens: 0,
          kvCapacityTokens: r?.info.kvCapacityTokens ?? 0,
          heldRequests: 0,
          lastSessionMs: 0,
          lastTotalMs: 0,
        };
        post({ type: 'stats', seq: msg.seq, stats });
        return;
      }
      case 'close': {
        const r = runner;
        runner = null;
        (r ? r.close() : Promise.resolve()).then(
          () => {
            post({ type: 'closed', seq: msg.seq });
            port.close();
          },
          (err: unknown) => post({ type: 'error', seq: msg.seq, error: toWireError(err) }),
        );
        return;
      }
    }
  });
}
