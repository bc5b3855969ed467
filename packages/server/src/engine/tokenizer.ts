/**
 * The engine's tokenizer: the model directory's `tokenizer.json` (through the
 * runtime's `Tokenizer`), or, for `sim:` models (which have no tokenizer),
 * a byte tokenizer.
 *
 * The byte tokenizer (sim models): text is its UTF-8 bytes, token id = byte
 * value (so the profile's vocabulary must have at least 256 ids; below that
 * only token-id prompts are accepted). No special token is added. Generated
 * ids decode back the same way: ids 0..255 are their byte, any larger id is
 * the ASCII text ` t<id>` (a readable stand-in for a word), and the profile's
 * EOS ids decode to nothing (special). Decoding is byte-exact and streaming
 * through the runtime's `ByteDetokenizer`, so streamed text never splits a
 * UTF-8 sequence; random byte ids that do not form valid UTF-8 decode to
 * U+FFFD exactly as a full decode of the same bytes would. Chat messages are
 * rendered as plain ChatML text (`<|im_start|>role\ncontent<|im_end|>\n`...).
 */

import { TsinferError } from '@tsinfer/core';
import {
  ByteDetokenizer,
  type IncrementalDetokenizer,
  InvalidTokenIdError,
  normalizeMessages,
  TokenByteTable,
  Tokenizer,
} from '@tsinfer/runtime';

export interface EngineTokenizer {
  readonly kind: 'hf' | 'bytes';
  readonly vocabSize: number;
  /** Token ids of `text`; `addSpecialTokens` (default true) applies the post-processor (BOS). */
  encode(text: string, addSpecialTokens?: boolean): Int32Array;
  /** Throws TSI_ERR_INVALID_TOKEN_ID unless every id is an integer in [0, vocabSize). */
  checkIds(ids: ArrayLike<number>): void;
  /**
   * A streaming detokenizer for one request (special tokens skipped).
   * `promptTail`: the last prompt ids, decoded as context so that the first
   * generated token renders as it would mid-text (SentencePiece-style
   * tokenizers; byte-level ones ignore it).
   */
  createDetokenizer(promptTail?: ArrayLike<number>): IncrementalDetokenizer;
  applyChatTemplate(messages: ReadonlyArray<{ role: string; content: string }>): string;
  /** The chat template rendered, then encoded without adding special tokens. */
  encodeChat(messages: ReadonlyArray<{ role: string; content: string }>): Int32Array;
  /** Text of `ids` alone, special tokens included. */
  decode(ids: readonly number[]): string;
}

function checkIds(ids: ArrayLike<number>, vocabSize: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new InvalidTokenIdError(`prompt token id ${id} at ${i} is not in [0, ${vocabSize})`);
    }
  }
}

class HfEngineTokenizer implements EngineTokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly #tok: Tokenizer;
  constructor(tok: Tokenizer, modelVocab: number) {
    this.#tok = tok;
    // The model's embedding may have more rows than the tokenizer has ids.
    this.vocabSize = Math.max(modelVocab, tok.vocabSize);
  }
  encode(text: string, addSpecialTokens = true): Int32Array {
    return this.#tok.encode(text, { addSpecialTokens });
  }
  checkIds(ids: ArrayLike<number>): void {
    checkIds(ids, this.vocabSize);
  }
  createDetokenizer(promptTail?: ArrayLike<number>): IncrementalDetokenizer {
    return this.#tok.createDetokenizer({
      skipSpecialTokens: true,
      ...(promptTail !== undefined ? { context: promptTail } : {}),
    });
  }
  applyChatTemplate(messages: ReadonlyArray<{ role: string; content: string }>): string {
    return this.#tok.applyChatTemplate(messages);
  }
  encodeChat(messages: ReadonlyArray<{ role: string; content: string }>): Int32Array {
    return this.#tok.encodeChat(messages);
  }
  decode(ids: readonly number[]): string {
    return this.#tok.decode(ids);
  }
}

/** The `sim:` tokenizer (see the module comment). */
export class ByteEngineTokenizer implements EngineTokenizer {
  readonly kind = 'bytes' as const;
  readonly vocabSize: number;
  readonly #table: TokenByteTable;
  readonly #encoder = new TextEncoder();

  constructor(vocabSize: number, specialIds: readonly number[]) {
    this.vocabSize = vocabSize;
    const enc = new TextEncoder();
    const bytes: Uint8Array[] = new Array(vocabSize);
    for (let id = 0; id < vocabSize; id++) bytes[id] = id < 256 ? Uint8Array.of(id) : enc.encode(` t${id}`);
    this.#table = new TokenByteTable(bytes, specialIds);
  }

  encode(text: string): Int32Array {
    if (this.vocabSize < 256) {
      throw new TsinferError(
        'TSI_ERR_INVALID_REQUEST',
        `this simulated model has a vocabulary of ${this.vocabSize} ids (< 256): send the prompt as token ids`,
      );
    }
    return Int32Array.from(this.#encoder.encode(text));
  }
  checkIds(ids: ArrayLike<number>): void {
    checkIds(ids, this.vocabSize);
  }
  createDetokenizer(): IncrementalDetokenizer {
    return new ByteDetokenizer(this.#table, { skipSpecialTokens: true });
  }
  applyChatTemplate(messages: ReadonlyArray<{ role: string; content: string }>): string {
    let out = '';
    for (const m of normalizeMessages(messages)) {
      out += `<|im_start|>${String(m['role'])}\n${String(m['content'] ?? '')}<|im_end|>\n`;
    }
    return `${out}<|im_start|>assistant\n`;
  }
  encodeChat(messages: ReadonlyArray<{ role: string; content: string }>): Int32Array {
    return this.encode(this.applyChatTemplate(messages));
  }
  decode(ids: readonly number[]): string {
    this.checkIds(ids);
    const parts: Uint8Array[] = ids.map((id) => this.#table.bytes[id]!);
    let n = 0;
    for (const p of parts) n += p.length;
    const buf = new Uint8Array(n);
    let off = 0;
    for (const p of parts) {
      buf.set(p, off);
      off += p.length;
    }
    return new TextDecoder().decode(buf);
  }
}

/** Loads the tokenizer for a model: the directory's tokenizer, or the byte tokenizer for a sim profile. */
export async function loadEngineTokenizer(
  model: { kind: 'sim' } | { kind: 'dir'; dir: string },
  facts: { vocabSize: number; eosTokenIds: readonly number[] },
): Promise<EngineTokenizer> {
  if (model.kind === 'sim') return new ByteEngineTokenizer(facts.vocabSize, facts.eosTokenIds);
  return new HfEngineTokenizer(await Tokenizer.fromDir(model.dir), facts.vocabSize);
}
