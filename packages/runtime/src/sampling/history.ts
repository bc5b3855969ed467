import { InvalidTokenIdError } from '../tokenizer/errors.js';

/**
 * Per-request token counts for the penalties: which ids were seen in the
 * prompt or the output (repetition penalty, HF) and how often each id was
 * generated (frequency / presence penalties, OpenAI). Dense arrays sized to
 * the vocabulary (5 bytes per id) plus lists of the distinct ids seen, so
 * the sampler touches only those ids and nothing is allocated per token.
 */
export class TokenHistory {
  readonly vocabSize: number;
  /** `generatedCount[id]`: times `id` was generated. */
  readonly generatedCount: Int32Array;
  /** Bit 1: seen (prompt or output, listed in `seenIds`); bit 2: generated (listed in `generatedIds`). */
  private readonly flags: Uint8Array;
  /** Distinct ids seen in prompt or output, first `seenLength` entries. */
  seenIds: Int32Array;
  seenLength = 0;
  /** Distinct ids generated, first `generatedLength` entries. */
  generatedIds: Int32Array;
  generatedLength = 0;

  constructor(vocabSize: number) {
    this.vocabSize = vocabSize;
    this.generatedCount = new Int32Array(vocabSize);
    this.flags = new Uint8Array(vocabSize);
    this.seenIds = new Int32Array(64);
    this.generatedIds = new Int32Array(64);
  }

  private check(id: number): void {
    if (!(id >= 0 && id < this.vocabSize && Number.isInteger(id))) {
      throw new InvalidTokenIdError(`token id ${id} is not in [0, ${this.vocabSize})`);
    }
  }

  private see(id: number): void {
    const f = this.flags[id]!;
    if ((f & 1) === 0) {
      this.flags[id] = f | 1;
      if (this.seenLength === this.seenIds.length) this.seenIds = grow(this.seenIds, this.vocabSize);
      this.seenIds[this.seenLength++] = id;
    }
  }

  /** Adds prompt tokens (may be called once per prefill chunk). */
  addPrompt(ids: ArrayLike<number>): void {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      this.check(id);
      this.see(id);
    }
  }

  /**
   * Adds a prefill chunk of a request's fill starting at position `start`:
   * positions below `promptLength` are prompt, the rest were generated before
   * a retraction and count as generated (see `NewRequest.promptLength`).
   */
  addFill(ids: ArrayLike<number>, start: number, promptLength: number): void {
    const split = Math.max(0, Math.min(ids.length, promptLength - start));
    for (let i = 0; i < split; i++) {
      const id = ids[i]!;
      this.check(id);
      this.see(id);
    }
    for (let i = split; i < ids.length; i++) this.addGenerated(ids[i]!);
  }

  /** Adds one generated token. */
  addGenerated(id: number): void {
    this.check(id);
    this.see(id);
    const f = this.flags[id]!;
    if ((f & 2) === 0) {
      this.flags[id] = f | 2;
      if (this.generatedLength === this.generatedIds.length) {
        this.generatedIds = grow(this.generatedIds, this.vocabSize);
      }
      this.generatedIds[this.generatedLength++] = id;
    }
    this.generatedCount[id]!++;
  }

  /** Forgets everything (cost proportional to the distinct ids seen). */
  reset(): void {
    for (let i = 0; i < this.seenLength; i++) {
      const id = this.seenIds[i]!;
      this.flags[id] = 0;
      this.generatedCount[id] = 0;
    }
    this.seenLength = 0;
    this.generatedLength = 0;
  }
}

/** Doubles a list's capacity (at most log2(vocab) times over a request's life). */
function grow(a: Int32Array, max: number): Int32Array {
  const b = new Int32Array(Math.min(Math.max(a.length * 2, 16), Math.max(max, 1)));
  b.set(a);
  return b;
}
