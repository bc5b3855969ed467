/**
 * One request's state inside a rank's scheduler: its prompt, its progress
 * (tokens in the KV cache, generated tokens), its stop rules and, at the end,
 * why it finished. Everything the scheduler keeps per request lives here.
 *
 * Progress survives retraction: a retracted request keeps its generated
 * tokens and re-prefills prompt + generated tokens (its `fill`) when it is
 * admitted again, then goes on sampling where it stopped.
 */
import { DEFAULT_SAMPLING, type SamplingParams } from '@tsinfer/runtime';

/** OpenAI-style finish reasons. */
export type FinishReason = 'stop' | 'length' | 'abort';

/** Where a request is. */
export type RequestPhase =
  /** In the waiting queue (new, or retracted); holds no KV. */
  | 'waiting'
  /** Admitted with a prompt longer than one chunk: part of its fill is in the KV cache. */
  | 'prefilling'
  /** In the running batch: decoding. */
  | 'running'
  | 'finished';

/**
 * Detects stop strings in the generated text, token by token. The caller
 * builds it with its tokenizer (e.g. an incremental detokenizer plus the
 * runtime's stop-string helpers); only requests that have stop strings pay
 * for text. `push` returns the matched stop string, or null.
 */
export interface StopStringMatcher {
  push(token: number): string | null;
}

/** What `Scheduler.addRequest` takes. */
export interface RequestInput {
  /** The caller's id, unique among the rank's live requests (used by `abort`). */
  readonly rid: string;
  /** Prompt token ids (at least one). */
  readonly promptTokens: ArrayLike<number>;
  /** Generated tokens at most; clipped so that prompt + output fits the context and the KV cache. */
  readonly maxNewTokens: number;
  /** Runner sampling settings; absent fields take greedy / disabled defaults. */
  readonly sampling?: Partial<SamplingParams>;
  /** Extra token ids that end generation (besides the model's EOS ids). */
  readonly stopTokenIds?: readonly number[];
  /** Do not stop on EOS / stop token ids (max_new_tokens and stop strings still apply). */
  readonly ignoreEos?: boolean;
  /** Stop-string detector; absent: no stop strings. */
  readonly stop?: StopStringMatcher | null;
  /** Opaque caller data carried to the sink. */
  readonly userData?: unknown;
  /** The DP controller's dispatch sequence number of this request (reported back as `PassStats.ackedDispatchSeq`). */
  readonly dispatchSeq?: number;
}

export class Request {
  readonly rid: string;
  readonly prompt: Int32Array;
  readonly sampling: SamplingParams;
  /** Clipped max_new_tokens. */
  readonly maxNewTokens: number;
  readonly ignoreEos: boolean;
  /** Model EOS ids plus the request's stop token ids (sorted, unique); empty with ignoreEos. */
  readonly stopTokens: Int32Array;
  readonly stop: StopStringMatcher | null;
  readonly userData: unknown;
  /** Rank-local arrival order (FCFS tie-break). */
  readonly seq: number;
  readonly arrivalMs: number;

  phase: RequestPhase = 'waiting';
  /** Tokens to prefill: the prompt, or prompt + generated tokens after a retraction. */
  fill: Int32Array;
  /** Tokens of `fill` in the KV cache (the runner's sequence length while prefilling; grows by 1 per decode). */
  kvLen = 0;
  /** Generated tokens. `output.subarray(0, outputLen)` is valid; the buffer grows by doubling. */
  output: Int32Array;
  outputLen = 0;
  /** Runner request id while the runner holds it, else -1. */
  runnerId = -1;
  /** True once the runner has been sent `add` for the current runner id. */
  added = false;
  finishReason: FinishReason | null = null;
  /** The EOS/stop token id or the stop string that ended the request. */
  matchedStop: number | string | null = null;
  /** Times this request was retracted. */
  retractions = 0;
  firstTokenMs = -1;
  finishedMs = -1;
  /** Set by abort while the request is in a forward pass or holds KV; acted on by the scheduler. */
  abortRequested = false;

  constructor(
    input: RequestInput,
    prompt: Int32Array,
    maxNewTokens: number,
    stopTokens: Int32Array,
    seq: number,
    arrivalMs: number,
  ) {
    this.rid = input.rid;
    this.prompt = prompt;
    this.fill = prompt;
    this.sampling = input.sampling ? { ...DEFAULT_SAMPLING, ...input.sampling } : DEFAULT_SAMPLING;
    this.maxNewTokens = maxNewTokens;
    this.ignoreEos = input.ignoreEos === true;
    this.stopTokens = stopTokens;
    this.stop = input.stop ?? null;
    this.userData = input.userData;
    this.seq = seq;
    this.arrivalMs = arrivalMs;
    this.output = new Int32Array(Math.min(Math.max(maxNewTokens, 1), 64));
  }

  /** Generated tokens (a view; valid until the next token is appended). */
  get outputTokens(): Int32Array {
    return this.output.subarray(0, this.outputLen);
  }

  /** Remaining tokens of `fill` to prefill. */
  get extendInputLen(): number {
    return this.fill.length - this.kvLen;
  }

  /** Appends a generated token (amortised O(1); allocates only when the buffer doubles). */
  appendToken(token: number): void {
    if (this.outputLen === this.output.length) {
      const grown = new Int32Array(Math.min(this.output.length * 2, Math.max(this.maxNewTokens, 1)));
      grown.set(this.output);
      this.output = grown;
    }
    this.output[this.outputLen++] = token;
  }

  /**
   * Stop checks after appending a token, in SGLang's order: max_new_tokens
   * (length), then EOS / stop token ids (stop, unless ignore_eos), then stop
   * strings. Sets `finishReason` and returns true when finished.
   */
  checkFinished(token: number): boolean {
    if (this.outputLen >= this.maxNewTokens) {
      this.finishReason = 'length';
      return true;
    }
    const stops = this.stopTokens;
    for (let i = 0; i < stops.length; i++) {
      if (stops[i] === token) {
        this.finishReason = 'stop';
        this.matchedStop = token;
        return true;
      }
    }
    if (this.stop !== null) {
      const matched = this.stop.push(token);
      if (matched !== null) {
        this.finishReason = 'stop';
        this.matchedStop = matched;
        return true;
      }
    }
    return false;
  }

  /**
   * Retraction: forget the KV (the caller frees it), keep the progress. The
   * next admission prefills prompt + generated tokens and samples the next
   * token.
   */
  resetForRetract(): void {
    const outLen = this.outputLen;
    const fill = new Int32Array(this.prompt.length + outLen);
    fill.set(this.prompt);
    fill.set(this.output.subarray(0, outLen), this.prompt.length);
    this.fill = fill;
    this.kvLen = 0;
    this.runnerId = -1;
    this.added = false;
    this.phase = 'waiting';
    this.retractions++;
  }

  /** Remaining new tokens (max_new_tokens − generated, ≥ 0). */
  get remainingNewTokens(): number {
    const r = this.maxNewTokens - this.outputLen;
    return Math.max(r, 0);
  }
}
