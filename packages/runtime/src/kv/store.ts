/**
 * The KV cache behind an interface, so that a device-resident store (a
 * native binding keeping the cache on the GPU, see
 * shared/specs/gpu-measurements.md) can replace the host one later.
 *
 * Capacity is counted in tokens (the sum over held requests of their
 * sequence lengths), the unit the scheduler budgets in. Requests are opened
 * on admission, extended before each forward (`reserve`) and freed at once on
 * finish / abort / retract.
 */
import { KvCapacityError } from '../sim/errors.js';

/** Element storage of one K or V tensor: float32, or float16 as raw bits. */
export type KvArray = Float32Array | Uint16Array;

export interface KvStoreStats {
  readonly capacityTokens: number;
  readonly usedTokens: number;
  readonly requests: number;
  readonly totalBlocks: number;
  readonly freeBlocks: number;
}

/** The interface the runner uses; the scheduler sees only `usedTokens` / `capacityTokens`. */
export interface KvStore {
  readonly capacityTokens: number;
  /** Tokens reserved by held requests. */
  readonly usedTokens: number;
  /** Fraction of capacity in use, 0..1. */
  readonly tokenUsage: number;
  stats(): KvStoreStats;
  has(id: number): boolean;
  /** Tokens written for `id` (its cache length). */
  length(id: number): number;
  /** Registers a request with an empty cache. */
  open(id: number): void;
  /** Tokens `reserve` calls for these extra lengths would need beyond what is held (for an all-or-nothing check). */
  wouldExceed(extraTokens: number): boolean;
  /** Makes room for `id` to hold `tokens` tokens in total (never shrinks). Throws KvCapacityError when full. */
  reserve(id: number, tokens: number): void;
  /** Releases everything `id` holds. Unknown ids are ignored. */
  free(id: number): void;
  /**
   * Copies the first `lengths[r]` cached tokens of `ids[r]` into `dst`, laid
   * out [rows, kvHeads, P, headDim] (one array per layer, keys then values).
   * Rows of `dst` past a row's length are left as they are.
   */
  gather(
    ids: readonly number[],
    lengths: ArrayLike<number>,
    P: number,
    dstKeys: readonly KvArray[],
    dstValues: readonly KvArray[],
  ): void;
  /**
   * Writes new rows: from `src` [rows, kvHeads, S, headDim], tokens
   * 0..counts[r]-1 of row r go to positions starts[r].. of `ids[r]`; the
   * request's length becomes max(length, start + count).
   */
  write(
    ids: readonly number[],
    starts: ArrayLike<number>,
    counts: ArrayLike<number>,
    S: number,
    srcKeys: readonly KvArray[],
    srcValues: readonly KvArray[],
  ): void;
}

export interface HostKvStoreOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  dtype: 'fp32' | 'fp16';
  capacityTokens: number;
  /** Tokens per block (default 16). */
  blockSize?: number;
  /**
   * Most requests held at once (default 256). The pool gets one spare block
   * per request so that block rounding never makes a token-budgeted batch fail.
   */
  maxRequests?: number;
}

interface Entry {
  blocks: number[];
  reserved: number;
  length: number;
}

/**
 * Host-resident block pool. Per layer one K and one V array laid out
 * [blocks, kvHeads, blockSize, headDim]; a request owns a list of blocks.
 * The feed of a run is gathered from the blocks (cost proportional to the
 * batch's tokens, never to the capacity); see docs/runtime.md for why.
 */
export class HostKvStore implements KvStore {
  readonly capacityTokens: number;
  readonly blockSize: number;
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly keys: KvArray[];
  readonly values: KvArray[];
  private readonly totalBlocks: number;
  private readonly freeList: Int32Array;
  private freeCount: number;
  private used = 0;
  private readonly entries = new Map<number, Entry>();

  constructor(o: HostKvStoreOptions) {
    if (!Number.isInteger(o.capacityTokens) || o.capacityTokens < 1) {
      throw new RangeError(`capacityTokens must be a positive integer, got ${o.capacityTokens}`);
    }
    this.capacityTokens = o.capacityTokens;
    this.blockSize = o.blockSize ?? 16;
    this.numLayers = o.numLayers;
    this.numKvHeads = o.numKvHeads;
    this.headDim = o.headDim;
    const maxRequests = o.maxRequests ?? 256;
    this.totalBlocks = Math.ceil(o.capacityTokens / this.blockSize) + maxRequests;
    const elems = this.totalBlocks * this.numKvHeads * this.blockSize * this.headDim;
    const make = (): KvArray => (o.dtype === 'fp16' ? new Uint16Array(elems) : new Float32Array(elems));
    this.keys = Array.from({ length: o.numLayers }, make);
    this.values = Array.from({ length: o.numLayers }, make);
    this.freeList = new Int32Array(this.totalBlocks);
    for (let i = 0; i < this.totalBlocks; i++) this.freeList[i] = this.totalBlocks - 1 - i;
    this.freeCount = this.totalBlocks;
  }

  get usedTokens(): number {
    return this.used;
  }

  get tokenUsage(): number {
    return this.used / this.capacityTokens;
  }

  stats(): KvStoreStats {
    return {
      capacityTokens: this.capacityTokens,
      usedTokens: this.used,
      requests: this.entries.size,
      totalBlocks: this.totalBlocks,
      freeBlocks: this.freeCount,
    };
  }

  has(id: number): boolean {
    return this.entries.has(id);
  }

  length(id: number): number {
    return this.entry(id).length;
  }

  open(id: number): void {
    if (this.entries.has(id)) throw new Error(`KV store: request ${id} is already open`);
    this.entries.set(id, { blocks: [], reserved: 0, length: 0 });
  }

  wouldExceed(extraTokens: number): boolean {
    return this.used + extraTokens > this.capacityTokens;
  }

  reserve(id: number, tokens: number): void {
    const e = this.entry(id);
    if (tokens <= e.reserved) return;
    const extra = tokens - e.reserved;
    if (this.used + extra > this.capacityTokens)
      throw new KvCapacityError(this.used + extra, this.capacityTokens);
    const needBlocks = Math.ceil(tokens / this.blockSize) - e.blocks.length;
    if (needBlocks > this.freeCount) {
      // Only reachable when more than maxRequests requests are held at once.
      throw new KvCapacityError(this.used + extra, this.capacityTokens);
    }
    for (let i = 0; i < needBlocks; i++) e.blocks.push(this.freeList[--this.freeCount] as number);
    e.reserved = tokens;
    this.used += extra;
  }

  free(id: number): void {
    const e = this.entries.get(id);
    if (!e) return;
    for (const b of e.blocks) this.freeList[this.freeCount++] = b;
    this.used -= e.reserved;
    this.entries.delete(id);
  }

  gather(
    ids: readonly number[],
    lengths: ArrayLike<number>,
    P: number,
    dstKeys: readonly KvArray[],
    dstValues: readonly KvArray[],
  ): void {
    const { blockSize: bs, numKvHeads: H, headDim: D } = this;
    for (let r = 0; r < ids.length; r++) {
      const e = this.entry(ids[r] as number);
      const len = lengths[r] as number;
      if (len > e.length)
        throw new Error(`KV store: gather of ${len} tokens from request ${ids[r]} holding ${e.length}`);
      if (len > P) throw new Error(`KV store: gather of ${len} tokens into a past of ${P}`);
      for (let j = 0; j * bs < len; j++) {
        const count = Math.min(bs, len - j * bs);
        const blk = e.blocks[j] as number;
        for (let h = 0; h < H; h++) {
          const src = (blk * H + h) * bs * D;
          const dst = ((r * H + h) * P + j * bs) * D;
          for (let l = 0; l < this.numLayers; l++) {
            (dstKeys[l] as KvArray).set((this.keys[l] as KvArray).subarray(src, src + count * D), dst);
            (dstValues[l] as KvArray).set((this.values[l] as KvArray).subarray(src, src + count * D), dst);
          }
        }
      }
    }
  }

  write(
    ids: readonly number[],
    starts: ArrayLike<number>,
    counts: ArrayLike<number>,
    S: number,
    srcKeys: readonly KvArray[],
    srcValues: readonly KvArray[],
  ): void {
    const { blockSize: bs, numKvHeads: H, headDim: D } = this;
    for (let r = 0; r < ids.length; r++) {
      const e = this.entry(ids[r] as number);
      const start = starts[r] as number;
      const count = counts[r] as number;
      if (start + count > e.reserved) {
        throw new Error(
          `KV store: write of ${start}+${count} tokens for request ${ids[r]} beyond its reservation ${e.reserved}`,
        );
      }
      let i = 0;
      while (i < count) {
        const pos = start + i;
        const j = Math.floor(pos / bs);
        const off = pos - j * bs;
        const n = Math.min(bs - off, count - i);
        const blk = e.blocks[j] as number;
        for (let h = 0; h < H; h++) {
          const src = ((r * H + h) * S + i) * D;
          const dst = ((blk * H + h) * bs + off) * D;
          for (let l = 0; l < this.numLayers; l++) {
            (this.keys[l] as KvArray).set((srcKeys[l] as KvArray).subarray(src, src + n * D), dst);
            (this.values[l] as KvArray).set((srcValues[l] as KvArray).subarray(src, src + n * D), dst);
          }
        }
        i += n;
      }
      if (start + count > e.length) e.length = start + count;
    }
  }

  private entry(id: number): Entry {
    const e = this.entries.get(id);
    if (!e) throw new Error(`KV store: unknown request ${id}`);
    return e;
  }
}

/** Bytes one token occupies in the cache (K and V, every layer). */
export function kvBytesPerToken(o: {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  dtype: 'fp32' | 'fp16';
}): number {
  return 2 * o.numLayers * o.numKvHeads * o.headDim * (o.dtype === 'fp16' ? 2 : 4);
}

/**
 * KV capacity in tokens: `maxTotalTokens` when given, else `memFractionStatic`
 * of the host's free memory (measured now, i.e. after the weights are loaded)
 * divided by the bytes per token.
 */
export function kvCapacityTokens(o: {
  bytesPerToken: number;
  maxTotalTokens?: number | undefined;
  memFractionStatic?: number | undefined;
  freeMemoryBytes: number;
}): number {
  if (o.maxTotalTokens !== undefined) return o.maxTotalTokens;
  const fraction = o.memFractionStatic ?? 0.2;
  return Math.max(1, Math.floor((o.freeMemoryBytes * fraction) / o.bytesPerToken));
}
