/**
 * Minimal drivers of a built model through onnxruntime-node, for tests and
 * benchmarks of the builder (not the runtime's runner): one sequence or a
 * padded batch, prefill then decode with the past fed back.
 */
import * as ort from 'onnxruntime-node';
import { fromFloat16Array, toFloat16Array } from '../onnx/fp16.js';
import type { Layout, WeightDtype } from './llama-graph.js';

export interface KvState {
  /** Per layer: key, value tensors [B, kv, P, hd]. */
  past: ort.Tensor[];
  /** P */
  length: number;
}

export interface StepResult {
  /** Logits as float32 [B, S, V] (fp16 converted). */
  logits: Float32Array;
  dims: readonly number[];
  present: ort.Tensor[];
}

export function emptyPast(
  numLayers: number,
  batch: number,
  kvHeads: number,
  headDim: number,
  dtype: WeightDtype,
): KvState {
  const past: ort.Tensor[] = [];
  for (let i = 0; i < 2 * numLayers; i++) {
    past.push(
      dtype === 'fp16'
        ? new ort.Tensor('float16', new Uint16Array(0), [batch, kvHeads, 0, headDim])
        : new ort.Tensor('float32', new Float32Array(0), [batch, kvHeads, 0, headDim]),
    );
  }
  return { past, length: 0 };
}

/**
 * Runs one step. `ids` [B×S] row-major, `mask` [B×(P+S)], `positions` [B×S]
 * (optimum only).
 */
export async function runStep(
  session: ort.InferenceSession,
  layout: Layout,
  batch: number,
  ids: readonly number[],
  mask: readonly number[],
  positions: readonly number[] | null,
  kv: KvState,
): Promise<StepResult> {
  const S = ids.length / batch;
  const T = mask.length / batch;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [batch, S]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask, BigInt), [batch, T]),
  };
  if (layout === 'optimum') {
    if (!positions) throw new Error('optimum layout needs position_ids');
    feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from(positions, BigInt), [batch, S]);
  }
  const L = kv.past.length / 2;
  for (let l = 0; l < L; l++) {
    feeds[`past_key_values.${l}.key`] = kv.past[2 * l] as ort.Tensor;
    feeds[`past_key_values.${l}.value`] = kv.past[2 * l + 1] as ort.Tensor;
  }
  const out = await session.run(feeds);
  const lg = out.logits as ort.Tensor;
  const logits = lg.type === 'float16' ? fromFloat16Array(lg.data as Uint16Array) : (lg.data as Float32Array);
  const present: ort.Tensor[] = [];
  for (let l = 0; l < L; l++)
    present.push(out[`present.${l}.key`] as ort.Tensor, out[`present.${l}.value`] as ort.Tensor);
  return { logits, dims: lg.dims, present };
}

/** Float32 tensor helper used by tests that build KV by hand. */
export function floatTensor(dtype: WeightDtype, data: Float32Array, dims: readonly number[]): ort.Tensor {
  return dtype === 'fp16'
    ? new ort.Tensor('float16', toFloat16Array(data), dims)
    : new ort.Tensor('float32', data, dims);
}

/** Logits row `pos` of batch row `b` from a [B, S, V] result. */
export function logitsRow(r: StepResult, b: number, pos: number): Float32Array {
  const [, S, V] = r.dims as [number, number, number];
  const off = (b * S + pos) * V;
  return r.logits.subarray(off, off + V);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if ((x[i] as number) > (x[best] as number)) best = i;
  return best;
}
