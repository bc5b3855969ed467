/**
 * Reusable feed buffers: views of arrays that grow (geometrically) and are
 * never shrunk, so steady-state steps allocate nothing proportional to the
 * batch beyond the tensor wrappers.
 */
import type { KvArray } from '../kv/store.js';

/** A growable int64 buffer written through an Int32Array view of its words (no BigInt per element). */
export class Int64Buffer {
  private big = new BigInt64Array(0);
  private words = new Int32Array(0);

  /** A BigInt64Array view of `n` elements (contents unspecified) and its 32-bit word view. */
  take(n: number): { big: BigInt64Array; words: Int32Array } {
    if (this.big.length < n) {
      const cap = Math.max(n, Math.ceil(this.big.length * 1.5), 64);
      this.big = new BigInt64Array(cap);
      this.words = new Int32Array(this.big.buffer);
    }
    return { big: this.big.subarray(0, n), words: this.words.subarray(0, 2 * n) };
  }
}

/** Sets element `i` of an int64 array given its 32-bit word view (little-endian). */
export function setI64(words: Int32Array, i: number, v: number): void {
  words[2 * i] = v;
  words[2 * i + 1] = v < 0 ? -1 : 0;
}

/** A growable int32 buffer. */
export class Int32Buffer {
  private a = new Int32Array(0);
  take(n: number): Int32Array {
    if (this.a.length < n) this.a = new Int32Array(Math.max(n, Math.ceil(this.a.length * 1.5), 64));
    return this.a.subarray(0, n);
  }
}

/** Per-layer K and V feed arrays [rows, kvHeads, P, headDim], grown on demand. */
export class KvFeed {
  keys: KvArray[];
  values: KvArray[];
  private cap = 0;
  constructor(
    private readonly numLayers: number,
    private readonly fp16: boolean,
  ) {
    this.keys = [];
    this.values = [];
  }

  /** Ensures room for `elems` elements per array. Returns true when the arrays were reallocated (contents lost). */
  ensure(elems: number): boolean {
    if (elems <= this.cap) return false;
    const cap = Math.max(elems, Math.ceil(this.cap * 1.5));
    const make = (): KvArray => (this.fp16 ? new Uint16Array(cap) : new Float32Array(cap));
    this.keys = Array.from({ length: this.numLayers }, make);
    this.values = Array.from({ length: this.numLayers }, make);
    this.cap = cap;
    return true;
  }

  /** Views of the first `elems` elements of each array. */
  views(elems: number): { keys: KvArray[]; values: KvArray[] } {
    return {
      keys: this.keys.map((a) => a.subarray(0, elems)),
      values: this.values.map((a) => a.subarray(0, elems)),
    };
  }

  release(): void {
    this.keys = [];
    this.values = [];
    this.cap = 0;
  }
}
