/**
 * The native backend's KV store: the cache itself lives in the addon
 * (per layer one K and one V buffer [maxSlots, kvHeads, maxSeq, headDim] on
 * the session's device); this class does the accounting and the slot map.
 *
 * Accounting is the JS store's (HostKvStore): capacity and usage in tokens,
 * a request's reservation only grows, `usedTokens` is the sum of the
 * reservations. On top of that each held request owns one cache row (slot),
 * so at most `maxSlots` requests are held and none grows past `maxSeq`.
 * Slots are handed out lowest first, keeping live rows packed at the front so
 * that a decode run spans few idle rows.
 */
import type { KvArray, KvStore, KvStoreStats } from '../kv/store.js';
import { KvCapacityError } from '../sim/errors.js';
import type { NativeEngine } from './loader.js';

interface Entry {
  readonly slot: number;
  reserved: number;
  length: number;
}

export interface SlotKvStoreOptions {
  capacityTokens: number;
  maxSlots: number;
  maxSeq: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

export class SlotKvStore implements KvStore {
  readonly capacityTokens: number;
  readonly maxSlots: number;
  readonly maxSeq: number;
  readonly #o: SlotKvStoreOptions;
  readonly #engine: NativeEngine | null;
  readonly #entries = new Map<number, Entry>();
  /** Request id holding each slot, or -1. */
  readonly #owner: Int32Array;
  #used = 0;

  /** `engine` null: accounting only (gather/write throw). */
  constructor(o: SlotKvStoreOptions, engine: NativeEngine | null) {
    for (const k of ['capacityTokens', 'maxSlots', 'maxSeq'] as const) {
      if (!Number.isSafeInteger(o[k]) || o[k] < 1)
        throw new RangeError(`${k} must be a positive integer, got ${o[k]}`);
    }
    this.capacityTokens = o.capacityTokens;
    this.maxSlots = o.maxSlots;
    this.maxSeq = o.maxSeq;
    this.#o = o;
    this.#engine = engine;
    this.#owner = new Int32Array(o.maxSlots).fill(-1);
  }

  get usedTokens(): number {
    return this.#used;
  }

  get tokenUsage(): number {
    return this.#used / this.capacityTokens;
  }

  /** Requests held now. */
  get requests(): number {
    return this.#entries.size;
  }

  stats(): KvStoreStats {
    return {
      capacityTokens: this.capacityTokens,
      usedTokens: this.#used,
      requests: this.#entries.size,
      totalBlocks: this.maxSlots,
      freeBlocks: this.maxSlots - this.#entries.size,
    };
  }

  has(id: number): boolean {
    return this.#entries.has(id);
  }

  length(id: number): number {
    return this.#entry(id).length;
  }

  /** The cache row of a held request. */
  slot(id: number): number {
    return this.#entry(id).slot;
  }

  /** Request id holding `slot`, or -1. */
  owner(slot: number): number {
    return this.#owner[slot] ?? -1;
  }

  open(id: number): void {
    if (this.#entries.has(id)) throw new Error(`KV store: request ${id} is already open`);
    const slot = this.#owner.indexOf(-1);
    if (slot < 0) throw new Error(`KV store: all ${this.maxSlots} cache slots are held`);
    this.#owner[slot] = id;
    this.#entries.set(id, { slot, reserved: 0, length: 0 });
  }

  wouldExceed(extraTokens: number): boolean {
    return this.#used + extraTokens > this.capacityTokens;
  }

  reserve(id: number, tokens: number): void {
    const e = this.#entry(id);
    if (tokens <= e.reserved) return;
    const extra = tokens - e.reserved;
    if (this.#used + extra > this.capacityTokens)
      throw new KvCapacityError(this.#used + extra, this.capacityTokens);
    if (tokens > this.maxSeq) throw new KvCapacityError(tokens, this.maxSeq);
    e.reserved = tokens;
    this.#used += extra;
  }

  /** Records that the cache of `id` now holds `length` tokens (the addon wrote them in place). */
  setLength(id: number, length: number): void {
    const e = this.#entry(id);
    if (length > e.reserved)
      throw new Error(`KV store: length ${length} of request ${id} beyond its reservation ${e.reserved}`);
    if (length > e.length) e.length = length;
  }

  free(id: number): void {
    const e = this.#entries.get(id);
    if (!e) return;
    this.#owner[e.slot] = -1;
    this.#used -= e.reserved;
    this.#entries.delete(id);
  }

  gather(
    ids: readonly number[],
    lengths: ArrayLike<number>,
    P: number,
    dstKeys: readonly KvArray[],
    dstValues: readonly KvArray[],
  ): void {
    const engine = this.#needEngine();
    const { numLayers, numKvHeads: H, headDim: D } = this.#o;
    for (let r = 0; r < ids.length; r++) {
      const e = this.#entry(ids[r] as number);
      const len = lengths[r] as number;
      if (len > e.length)
        throw new Error(`KV store: gather of ${len} tokens from request ${ids[r]} holding ${e.length}`);
      if (len > P) throw new Error(`KV store: gather of ${len} tokens into a past of ${P}`);
      if (len === 0) continue;
      for (let l = 0; l < numLayers; l++) {
        for (const [which, dst] of [
          [0, dstKeys[l]],
          [1, dstValues[l]],
        ] as const) {
          const src = engine.readKv(l, which, e.slot, 0, len);
          for (let h = 0; h < H; h++)
            (dst as KvArray).set(src.subarray(h * len * D, (h + 1) * len * D), (r * H + h) * P * D);
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
    const engine = this.#needEngine();
    const { numLayers, numKvHeads: H, headDim: D } = this.#o;
    for (let r = 0; r < ids.length; r++) {
      const e = this.#entry(ids[r] as number);
      const start = starts[r] as number;
      const count = counts[r] as number;
      if (start + count > e.reserved) {
        throw new Error(
          `KV store: write of ${start}+${count} tokens for request ${ids[r]} beyond its reservation ${e.reserved}`,
        );
      }
      if (count === 0) continue;
      for (let l = 0; l < numLayers; l++) {
        for (const [which, src] of [
          [0, srcKeys[l]],
          [1, srcValues[l]],
        ] as const) {
          const s = src as KvArray;
          const buf =
            s instanceof Float32Array ? new Float32Array(H * count * D) : new Uint16Array(H * count * D);
          for (let h = 0; h < H; h++) {
            const from = (r * H + h) * S * D;
            buf.set(s.subarray(from, from + count * D), h * count * D);
          }
          engine.writeKv(l, which, e.slot, start, count, buf);
        }
      }
      if (start + count > e.length) e.length = start + count;
    }
  }

  #needEngine(): NativeEngine {
    if (this.#engine === null) throw new Error('KV store: no engine (accounting only)');
    return this.#engine;
  }

  #entry(id: number): Entry {
    const e = this.#entries.get(id);
    if (!e) throw new Error(`KV store: unknown request ${id}`);
    return e;
  }
}
