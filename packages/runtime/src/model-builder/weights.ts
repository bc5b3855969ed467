/**
 * Seeded weight values. A tensor is cut into chunks of `WEIGHT_CHUNK`
 * elements and every chunk draws from its own `createRng` stream seeded by
 * (build seed, tensor name, chunk index), so values depend on nothing else:
 * not on the order tensors are written in, the layout, the dtype (fp16
 * weights are the fp32 ones rounded) or how many threads generate them. The
 * genai and optimum layouts of one seed hold identical weights.
 */
import { createRng } from '@tsinfer/core';
import { float32ToFloat16Bits } from '../onnx/fp16.js';

/** How a tensor's values are made. */
export type WeightInit =
  /** Uniform with this mean and standard deviation (bounded: mean ± std·√3). */
  | { readonly kind: 'uniform'; readonly mean: number; readonly std: number }
  /** Computed values (rotary caches). */
  | { readonly kind: 'values'; readonly values: Float64Array | Float32Array };

/** Elements per independently seeded chunk (part of the weight definition: changing it changes every model). */
export const WEIGHT_CHUNK = 1 << 20;

/** 32-bit FNV-1a of a string. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The RNG seed of chunk `chunk` of tensor `name`. */
export function chunkSeed(seed: number, name: string, chunk: number): number {
  return fnv1a(`${seed >>> 0}/${name}/${chunk}`);
}

/**
 * Fills `out` with the values of chunk `chunk` of a tensor, i.e. elements
 * [chunk·WEIGHT_CHUNK, chunk·WEIGHT_CHUNK + out.length).
 */
export function fillChunk(
  init: WeightInit,
  seed: number,
  name: string,
  chunk: number,
  out: Float32Array,
): void {
  if (init.kind === 'values') {
    const start = chunk * WEIGHT_CHUNK;
    out.set(init.values.subarray(start, start + out.length));
    return;
  }
  const next = createRng(chunkSeed(seed, name, chunk)).next;
  const a = init.std * Math.sqrt(3);
  const m = init.mean;
  for (let i = 0; i < out.length; i++) out[i] = m + a * (2 * next() - 1);
}

/** float32 values → float16 bit patterns (round to nearest even). */
export function encodeFloat16(src: Float32Array, dst: Uint16Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = float32ToFloat16Bits(src[i] as number);
}

/** Rotary cos/sin caches [contextLength, headDim/2], standard Llama (half-split) frequencies, in float64. */
export function rotaryCaches(
  contextLength: number,
  headDim: number,
  theta: number,
): { cos: Float64Array; sin: Float64Array } {
  const half = headDim / 2;
  const cos = new Float64Array(contextLength * half);
  const sin = new Float64Array(contextLength * half);
  for (let i = 0; i < half; i++) {
    const invFreq = theta ** (-(2 * i) / headDim);
    for (let p = 0; p < contextLength; p++) {
      const angle = p * invFreq;
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
