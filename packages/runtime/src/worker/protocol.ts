/**
 * The typed message protocol between a WorkerRunner (main side) and its
 * worker thread. One message per forward each way (no per-token RPC); the
 * prompt tokens of a batch travel packed in one transferred Int32Array, the
 * sampled ids/tokens come back in transferred arrays.
 */
import { TsinferError, type TsinferErrorCode } from '@tsinfer/core';
import type { ForwardBatch, ForwardOutput, ModelInfo, NewRequest } from '../contract.js';
import type { OnnxRunnerOptions } from '../execution/onnx-runner.js';

/** A ForwardBatch with its chunk tokens packed into one array. */
export interface WireBatch {
  readonly free: readonly number[];
  readonly add: readonly NewRequest[];
  /** [id, start, length, sample(0|1)] per chunk, in order; tokens follow each other in `tokens`. */
  readonly chunks: Int32Array;
  readonly tokens: Int32Array;
  readonly decode: readonly number[];
}

export interface RunnerStats {
  readonly kvUsedTokens: number;
  readonly kvCapacityTokens: number;
  readonly heldRequests: number;
  /** Milliseconds of the last forward inside session.run / in total. */
  readonly lastSessionMs: number;
  readonly lastTotalMs: number;
}

export interface WireError {
  readonly code: TsinferErrorCode | null;
  readonly name: string;
  readonly message: string;
}

export type ToWorker =
  | { readonly type: 'init'; readonly options: OnnxRunnerOptions }
  | { readonly type: 'forward'; readonly seq: number; readonly batch: WireBatch }
  | { readonly type: 'stats'; readonly seq: number }
  | { readonly type: 'close'; readonly seq: number };

export type FromWorker =
  | { readonly type: 'ready'; readonly info: ModelInfo }
  | { readonly type: 'init-failed'; readonly error: WireError }
  | { readonly type: 'result'; readonly seq: number; readonly output: ForwardOutput }
  | { readonly type: 'stats'; readonly seq: number; readonly stats: RunnerStats }
  | { readonly type: 'closed'; readonly seq: number }
  | { readonly type: 'error'; readonly seq: number; readonly error: WireError };

/** Packs a batch for posting; returns it with the buffers to transfer. */
export function packBatch(batch: ForwardBatch): { wire: WireBatch; transfer: ArrayBuffer[] } {
  let total = 0;
  for (const c of batch.prefill) total += c.tokens.length;
  const chunks = new Int32Array(batch.prefill.length * 4);
  const tokens = new Int32Array(total);
  let off = 0;
  batch.prefill.forEach((c, i) => {
    chunks[4 * i] = c.id;
    chunks[4 * i + 1] = c.start;
    chunks[4 * i + 2] = c.tokens.length;
    chunks[4 * i + 3] = c.sample ? 1 : 0;
    tokens.set(c.tokens, off);
    off += c.tokens.length;
  });
  return {
    wire: {
      free: [...batch.free],
      add: batch.add.map((a) => ({ id: a.id, sampling: { ...a.sampling } })),
      chunks,
      tokens,
      decode: [...batch.decode],
    },
    transfer: [chunks.buffer as ArrayBuffer, tokens.buffer as ArrayBuffer],
  };
}

/** Unpacks a posted batch (chunk tokens become views of the one array). */
export function unpackBatch(w: WireBatch): ForwardBatch {
  const prefill = [];
  let off = 0;
  for (let i = 0; i < w.chunks.length / 4; i++) {
    const n = w.chunks[4 * i + 2] as number;
    prefill.push({
      id: w.chunks[4 * i] as number,
      start: w.chunks[4 * i + 1] as number,
      tokens: w.tokens.subarray(off, off + n),
      sample: w.chunks[4 * i + 3] === 1,
    });
    off += n;
  }
  return { free: w.free, add: w.add, prefill, decode: w.decode };
}

export function toWireError(err: unknown): WireError {
  if (err instanceof TsinferError) return { code: err.code, name: err.name, message: err.message };
  if (err instanceof Error) return { code: null, name: err.name, message: err.message };
  return { code: null, name: 'Error', message: String(err) };
}

/** Rebuilds an error from the worker: a TsinferError with the same code when it had one. */
export function fromWireError(e: WireError): Error {
  if (e.code !== null) {
    const err = new TsinferError(e.code, e.message);
    err.name = e.name;
    return err;
  }
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}
