/**
 * Incremental detokenization for streaming, and stop-string helpers.
 *
 * Two detokenizers, picked by {@link Tokenizer.createDetokenizer}:
 *
 * - {@link ByteDetokenizer} for byte-level BPE (GPT-2, Llama 3, Qwen, our own
 *   tokenizer): every token id maps to an exact byte string (precomputed in a
 *   {@link TokenByteTable}); the bytes go through one streaming UTF-8
 *   `TextDecoder` per request, which returns only complete characters and
 *   keeps an incomplete multi-byte sequence until its last byte arrives. The
 *   concatenated deltas are exactly the UTF-8 decoding of the concatenated
 *   bytes (WHATWG streaming decode), never a character split in two and
 *   never a U+FFFD that the full decode would not also contain. Per token:
 *   no allocation except the returned delta string.
 * - {@link TextDetokenizer} for every other tokenizer (SentencePiece-style
 *   Metaspace / byte-fallback): the "prefix offset / read offset" scheme of
 *   text-generation-inference and vLLM, which decodes a short window of ids
 *   twice per token and emits the new suffix unless it ends in U+FFFD.
 */

const STREAM = { stream: true } as const;

/** The exact bytes of every token id (for byte-level tokenizers). */
export class TokenByteTable {
  readonly vocabSize: number;
  /** `bytes[id]`: the token's bytes (a view into one shared buffer); empty for unknown ids. */
  readonly bytes: readonly Uint8Array[];
  /** `special[id]` is 1 for special tokens (dropped when skipping special tokens). */
  readonly special: Uint8Array;

  constructor(tokenBytes: ReadonlyArray<Uint8Array | null | undefined>, specialIds: Iterable<number>) {
    this.vocabSize = tokenBytes.length;
    let total = 0;
    for (const b of tokenBytes) total += b?.length ?? 0;
    const buf = new Uint8Array(total);
    const views = new Array<Uint8Array>(tokenBytes.length);
    let off = 0;
    for (let i = 0; i < tokenBytes.length; i++) {
      const b = tokenBytes[i];
      const n = b?.length ?? 0;
      if (b) buf.set(b, off);
      views[i] = buf.subarray(off, off + n);
      off += n;
    }
    this.bytes = views;
    this.special = new Uint8Array(tokenBytes.length);
    for (const id of specialIds) if (id >= 0 && id < this.vocabSize) this.special[id] = 1;
  }
}

/** A per-request streaming detokenizer. */
export interface IncrementalDetokenizer {
  /** Feeds one generated token id; returns the newly finalised text ('' while a character is incomplete). */
  push(id: number): string;
  /** Ends the stream: returns whatever is held back (an incomplete sequence decodes to U+FFFD) and resets. */
  flush(): string;
  /** Forgets all state (for reuse by another request). */
  reset(): void;
}

export interface DetokenizerOptions {
  /** Drop special tokens (BOS, EOS, `<|im_end|>`...) from the text. Default true (vLLM's default). */
  skipSpecialTokens?: boolean;
}

/** Streaming detokenizer for byte-level vocabularies (exact, allocation-free except the returned delta). */
export class ByteDetokenizer implements IncrementalDetokenizer {
  private readonly table: TokenByteTable;
  private readonly skipSpecial: boolean;
  private decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(table: TokenByteTable, options: DetokenizerOptions = {}) {
    this.table = table;
    this.skipSpecial = options.skipSpecialTokens ?? true;
  }

  push(id: number): string {
    if (!(id >= 0 && id < this.table.vocabSize)) return '';
    if (this.skipSpecial && this.table.special[id] === 1) return '';
    const bytes = this.table.bytes[id]!;
    if (bytes.length === 0) return '';
    return this.decoder.decode(bytes, STREAM);
  }

  flush(): string {
    // A non-streaming call ends the stream: held-back bytes become U+FFFD and the decoder resets.
    return this.decoder.decode();
  }

  reset(): void {
    this.decoder.decode();
  }
}

/** Decodes a window of ids to text (the tokenizer's own decode, special tokens already filtered). */
export type DecodeFn = (ids: number[]) => string;

/**
 * The text-generation-inference / vLLM incremental scheme for tokenizers
 * whose tokens are not plain byte strings. Keeps the ids since the last
 * emitted boundary: `prefixOffset..readOffset` is already-emitted context,
 * `readOffset..` is new. Emits `decode(prefix..end)` minus
 * `decode(prefix..read)` once it is longer and does not end in U+FFFD.
 */
export class TextDetokenizer implements IncrementalDetokenizer {
  private readonly decodeFn: DecodeFn;
  private readonly isSpecial: (id: number) => boolean;
  private readonly skipSpecial: boolean;
  private readonly context: number[];
  private ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  /**
   * @param context Ids decoded before the generated ones (e.g. the last
   *   prompt tokens), so that a leading space of the first generated token
   *   is kept the way a SentencePiece decoder would render it mid-text.
   */
  constructor(
    decodeFn: DecodeFn,
    isSpecial: (id: number) => boolean,
    options: DetokenizerOptions & { context?: ArrayLike<number> } = {},
  ) {
    this.decodeFn = decodeFn;
    this.isSpecial = isSpecial;
    this.skipSpecial = options.skipSpecialTokens ?? true;
    this.context = Array.from(options.context ?? []).filter((id) => !(this.skipSpecial && isSpecial(id)));
    this.reset();
  }

  private window(from: number, to: number): string {
    return from === to ? '' : this.decodeFn(this.ids.slice(from, to));
  }

  push(id: number): string {
    if (this.skipSpecial && this.isSpecial(id)) return '';
    this.ids.push(id);
    const prefixText = this.window(this.prefixOffset, this.readOffset);
    const newText = this.window(this.prefixOffset, this.ids.length);
    if (newText.length > prefixText.length && !newText.endsWith('\uFFFD')) {
      const delta = newText.slice(prefixText.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      // Drop ids no longer needed as context.
      if (this.prefixOffset > 64) {
        this.ids.splice(0, this.prefixOffset);
        this.readOffset -= this.prefixOffset;
        this.prefixOffset = 0;
      }
      return delta;
    }
    return '';
  }

  flush(): string {
    const prefixText = this.window(this.prefixOffset, this.readOffset);
    const newText = this.window(this.prefixOffset, this.ids.length);
    this.reset();
    return newText.length > prefixText.length ? newText.slice(prefixText.length) : '';
  }

  reset(): void {
    this.ids = this.context.slice();
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }
}

// ---------------------------------------------------------------------------
// Stop strings

/**
 * Length of the longest suffix of `text` that is a proper prefix of one of
 * `stops` (0 if none): that much text must be held back, since the next
 * tokens could complete a stop string.
 */
export function stopHoldBack(text: string, stops: readonly string[]): number {
  let best = 0;
  const len = text.length;
  for (const stop of stops) {
    const max = Math.min(stop.length - 1, len);
    for (let k = max; k > best; k--) {
      let ok = true;
      const base = len - k;
      for (let i = 0; i < k; i++) {
        if (text.charCodeAt(base + i) !== stop.charCodeAt(i)) {
          ok = false;
          break;
        }
      }
      if (ok) {
        best = k;
        break;
      }
    }
  }
  return best;
}

/**
 * Earliest occurrence of any of `stops` in `text` at or after `from`:
 * smallest start index; on equal starts the longest stop string. null if none.
 */
export function findEarliestStop(
  text: string,
  stops: readonly string[],
  from = 0,
): { index: number; stop: string } | null {
  let bestIndex = -1;
  let bestStop = '';
  for (const stop of stops) {
    if (stop.length === 0) continue;
    const i = text.indexOf(stop, from);
    if (i < 0) continue;
    if (bestIndex < 0 || i < bestIndex || (i === bestIndex && stop.length > bestStop.length)) {
      bestIndex = i;
      bestStop = stop;
    }
  }
  return bestIndex < 0 ? null : { index: bestIndex, stop: bestStop };
}

/** Result of {@link StopStringMatcher.check}; the same object is reused by every call. */
export interface StopCheck {
  /** Start of the earliest stop string in the text, or -1 if none. */
  stopIndex: number;
  /** The stop string found, or null. */
  stop: string | null;
  /**
   * `text.slice(0, safeEnd)` can be sent to the client: with a stop found it
   * is `stopIndex` (the stop string itself is not emitted, OpenAI semantics);
   * otherwise the text minus the held-back suffix that could still grow into
   * a stop string. Never less than the `emitted` argument.
   */
  safeEnd: number;
}

/**
 * Per-request stop-string detection for the scheduler. Feed it the whole
 * generated text after each detokenizer delta and how much of it was already
 * sent; it says where a stop string starts (finish the request and send
 * `text.slice(emitted, stopIndex)`) or how far it is safe to send.
 *
 * Searching starts at `emitted`: a stop string cannot start in text that was
 * already released, because any suffix that was a prefix of a stop string was
 * held back.
 */
export class StopStringMatcher {
  readonly stops: readonly string[];
  private readonly result: StopCheck = { stopIndex: -1, stop: null, safeEnd: 0 };

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  check(text: string, emitted: number): StopCheck {
    const r = this.result;
    const found = this.stops.length === 0 ? null : findEarliestStop(text, this.stops, emitted);
    if (found !== null) {
      r.stopIndex = found.index;
      r.stop = found.stop;
      r.safeEnd = found.index;
      return r;
    }
    r.stopIndex = -1;
    r.stop = null;
    r.safeEnd = Math.max(emitted, text.length - stopHoldBack(text, this.stops));
    return r;
  }
}
