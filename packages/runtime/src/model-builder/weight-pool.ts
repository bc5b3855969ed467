/**
 * Generates weight chunks on worker threads (chunks are independently
 * seeded, so the bytes do not depend on the number of threads or on which
 * thread made them). `threads: 0` generates in the calling thread.
 */
import type { Worker } from 'node:worker_threads';
import { startWorker } from '@tsinfer/core';
import { encodeFloat16, fillChunk, type WeightInit } from './weights.js';

export interface ChunkJob {
  id: number;
  seed: number;
  name: string;
  chunk: number;
  count: number;
  mean: number;
  std: number;
  fp16: boolean;
}

export type ChunkResult =
  | { id: number; bytes: Uint8Array; error?: undefined }
  | { id: number; error: string };

interface Pending {
  resolve: (bytes: Uint8Array) => void;
  reject: (err: Error) => void;
}

export class WeightPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private turn = 0;
  private failure: Error | null = null;
  private readonly f32: Float32Array;
  private readonly f16: Uint16Array;

  constructor(
    readonly threads: number,
    private readonly fp16: boolean,
    chunkElements: number,
  ) {
    this.f32 = new Float32Array(threads > 0 ? 0 : chunkElements);
    this.f16 = new Uint16Array(threads > 0 || !fp16 ? 0 : chunkElements);
    for (let i = 0; i < threads; i++) {
      const w = startWorker(import.meta.url, './weight-worker');
      w.on('message', (r: ChunkResult) => this.settle(r));
      w.on('error', (err) => this.fail(err));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`weight worker exited with code ${code}`));
      });
      this.workers.push(w);
    }
  }

  /**
   * The bytes of one chunk. In-thread, the returned view is reused by the
   * next call: consume it before asking for another.
   */
  generate(init: WeightInit, seed: number, name: string, chunk: number, count: number): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.workers.length === 0 || init.kind === 'values') {
      const vals = this.threads > 0 ? new Float32Array(count) : this.f32.subarray(0, count);
      fillChunk(init, seed, name, chunk, vals);
      if (!this.fp16) return Promise.resolve(new Uint8Array(vals.buffer, vals.byteOffset, count * 4));
      const h = this.threads > 0 ? new Uint16Array(count) : this.f16.subarray(0, count);
      encodeFloat16(vals, h);
      return Promise.resolve(new Uint8Array(h.buffer, h.byteOffset, count * 2));
    }
    const id = this.nextId++;
    const job: ChunkJob = { id, seed, name, chunk, count, mean: init.mean, std: init.std, fp16: this.fp16 };
    const worker = this.workers[this.turn++ % this.workers.length] as Worker;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage(job);
    });
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0);
    await Promise.all(ws.map((w) => w.terminate()));
  }

  private settle(r: ChunkResult): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    if (r.error !== undefined) p.reject(new Error(`weight worker: ${r.error}`));
    else p.resolve(r.bytes);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
