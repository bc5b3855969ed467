import { createRng } from '@tsinfer/core';
import { describe, expect, it } from 'vitest';
import { HostKvStore, kvBytesPerToken, kvCapacityTokens } from './store.js';

const dims = { numLayers: 2, numKvHeads: 2, headDim: 4 };

/** A deterministic value for (layer, kv, request, position, head, d). */
function val(l: number, isV: number, id: number, pos: number, h: number, d: number): number {
  return l * 1e6 + isV * 5e5 + id * 1e4 + pos * 10 + h * 0.5 + d * 0.01;
}

/** Builds a [rows, H, S, D] source for `write` with row r's tokens start..start+count-1. */
function source(
  ids: number[],
  starts: number[],
  counts: number[],
  S: number,
  l: number,
  isV: number,
): Float32Array {
  const { numKvHeads: H, headDim: D } = dims;
  const a = new Float32Array(ids.length * H * S * D).fill(Number.NaN);
  ids.forEach((id, r) => {
    for (let i = 0; i < (counts[r] as number); i++)
      for (let h = 0; h < H; h++)
        for (let d = 0; d < D; d++)
          a[((r * H + h) * S + i) * D + d] = val(l, isV, id, (starts[r] as number) + i, h, d);
  });
  return a;
}

function writeRows(kv: HostKvStore, ids: number[], starts: number[], counts: number[]): void {
  const S = Math.max(...counts);
  const keys = [0, 1].map((l) => source(ids, starts, counts, S, l, 0));
  const values = [0, 1].map((l) => source(ids, starts, counts, S, l, 1));
  kv.write(ids, starts, counts, S, keys, values);
}

describe('HostKvStore', () => {
  it('gathers exactly what was written, across block boundaries, into a padded [rows, H, P, D] feed', () => {
    const kv = new HostKvStore({ ...dims, dtype: 'fp32', capacityTokens: 200, blockSize: 4 });
    kv.open(7);
    kv.open(3);
    kv.reserve(7, 9);
    kv.reserve(3, 3);
    writeRows(kv, [7, 3], [0, 0], [6, 3]); // ragged prefill
    writeRows(kv, [7], [6], [3]); // chunk continuation crossing a block edge
    expect(kv.length(7)).toBe(9);
    expect(kv.length(3)).toBe(3);
    kv.reserve(3, 4);
    writeRows(kv, [3], [3], [1]); // one decode token
    const P = 12;
    const { numKvHeads: H, headDim: D } = dims;
    const keys = [0, 1].map(() => new Float32Array(2 * H * P * D).fill(-1));
    const values = [0, 1].map(() => new Float32Array(2 * H * P * D).fill(-1));
    kv.gather([3, 7], [4, 9], P, keys, values);
    [3, 7].forEach((id, r) => {
      const len = id === 3 ? 4 : 9;
      for (let l = 0; l < 2; l++)
        for (let h = 0; h < H; h++)
          for (let p = 0; p < P; p++)
            for (let d = 0; d < D; d++) {
              const i = ((r * H + h) * P + p) * D + d;
              expect(keys[l]?.[i]).toBe(p < len ? Math.fround(val(l, 0, id, p, h, d)) : -1);
              expect(values[l]?.[i]).toBe(p < len ? Math.fround(val(l, 1, id, p, h, d)) : -1);
            }
    });
  });

  it('counts tokens, refuses to exceed capacity without changing anything, and frees at once', () => {
    const kv = new HostKvStore({ ...dims, dtype: 'fp16', capacityTokens: 10, blockSize: 4, maxRequests: 4 });
    kv.open(1);
    kv.reserve(1, 6);
    kv.open(2);
    expect(() => kv.reserve(2, 5)).toThrow(expect.objectContaining({ code: 'TSI_ERR_KV_CAPACITY' }));
    expect(kv.usedTokens).toBe(6);
    kv.reserve(2, 4);
    expect(kv.usedTokens).toBe(10);
    expect(kv.tokenUsage).toBe(1);
    kv.free(1);
    expect(kv.usedTokens).toBe(4);
    kv.free(2);
    kv.free(2); // unknown ids are ignored
    const s = kv.stats();
    expect(s).toEqual({
      capacityTokens: 10,
      usedTokens: 0,
      requests: 0,
      totalBlocks: s.totalBlocks,
      freeBlocks: s.totalBlocks,
    });
  });

  it('returns to exactly empty after thousands of random opens, extensions and frees', () => {
    const rng = createRng(42);
    const kv = new HostKvStore({
      ...dims,
      dtype: 'fp32',
      capacityTokens: 3000,
      blockSize: 8,
      maxRequests: 64,
    });
    const live = new Map<number, number>();
    let next = 0;
    for (let step = 0; step < 5000; step++) {
      const op = rng.next();
      if (op < 0.3 && live.size < 64) {
        const id = next++;
        kv.open(id);
        live.set(id, 0);
      } else if (op < 0.8 && live.size > 0) {
        const ids = [...live.keys()];
        const id = ids[rng.int(0, ids.length - 1)] as number;
        const want = (live.get(id) as number) + rng.int(1, 40);
        let sum = 0;
        for (const v of live.values()) sum += v;
        if (sum - (live.get(id) as number) + want <= 3000) {
          kv.reserve(id, want);
          live.set(id, want);
        } else {
          expect(() => kv.reserve(id, want)).toThrow(
            expect.objectContaining({ code: 'TSI_ERR_KV_CAPACITY' }),
          );
        }
      } else if (live.size > 0) {
        const ids = [...live.keys()];
        const id = ids[rng.int(0, ids.length - 1)] as number;
        kv.free(id);
        live.delete(id);
      }
      let sum = 0;
      for (const v of live.values()) sum += v;
      expect(kv.usedTokens).toBe(sum);
    }
    for (const id of live.keys()) kv.free(id);
    const s = kv.stats();
    expect(s.usedTokens).toBe(0);
    expect(s.requests).toBe(0);
    expect(s.freeBlocks).toBe(s.totalBlocks);
  });

  it('derives capacity from max tokens or a fraction of free memory', () => {
    const bpt = kvBytesPerToken({ ...dims, dtype: 'fp32' });
    expect(bpt).toBe(2 * 2 * 2 * 4 * 4);
    expect(kvCapacityTokens({ bytesPerToken: bpt, maxTotalTokens: 123, freeMemoryBytes: 1e9 })).toBe(123);
    expect(kvCapacityTokens({ bytesPerToken: 128, memFractionStatic: 0.5, freeMemoryBytes: 1280 })).toBe(5);
  });
});
