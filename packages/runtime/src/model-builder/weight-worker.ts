/**
 * Worker thread entry: generates weight chunks for `WeightPool`. Each
 * message is one chunk; the bytes go back transferred.
 */
import { parentPort } from 'node:worker_threads';
import type { ChunkJob, ChunkResult } from './weight-pool.js';
import { encodeFloat16, fillChunk } from './weights.js';

const port = parentPort;
if (!port) throw new Error('weight-worker must run in a worker thread');
port.on('message', (job: ChunkJob) => {
  try {
    const vals = new Float32Array(job.count);
    fillChunk({ kind: 'uniform', mean: job.mean, std: job.std }, job.seed, job.name, job.chunk, vals);
    let buffer: ArrayBuffer = vals.buffer;
    if (job.fp16) {
      const h = new Uint16Array(job.count);
      encodeFloat16(vals, h);
      buffer = h.buffer;
    }
    const result: ChunkResult = { id: job.id, bytes: new Uint8Array(buffer) };
    port.postMessage(result, [buffer]);
  } catch (err) {
    const result: ChunkResult = { id: job.id, error: err instanceof Error ? err.message : String(err) };
    port.postMessage(result);
  }
});
