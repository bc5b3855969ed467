/**
 * The whole contract between a rank's scheduler and its model runner (like
 * vLLM's SchedulerOutput / ModelRunnerOutput). The scheduler decides what
 * runs; the runner executes it and never decides. Nothing else crosses.
 *
 * Request ids are small non-negative integers chosen by the scheduler, unique
 * among the requests the runner currently holds.
 */

/** Per-request sampling settings the runner needs (stop rules live in the scheduler). */
export interface SamplingParams {
  /** 0 means greedy. */
  readonly temperature: number;
  /** 0 or less: disabled. */
  readonly topK: number;
  /** 1: disabled. */
  readonly topP: number;
  /** 0: disabled. */
  readonly minP: number;
  /** 1: disabled (HF semantics: divide positive logits, multiply negative ones, for every seen token). */
  readonly repetitionPenalty: number;
  /** 0: disabled (OpenAI semantics, generated tokens only). */
  readonly frequencyPenalty: number;
  /** 0: disabled (OpenAI semantics, generated tokens only). */
  readonly presencePenalty: number;
  /** Per-request seed; null draws from the runner's seeded RNG. */
  readonly seed: number | null;
  /** Number of top log-probabilities to return per sampled token (0: none; -1 returns only the chosen token's). */
  readonly logprobs: number;
}

/** Greedy decoding with every processor disabled: what absent sampling fields default to. */
export const DEFAULT_SAMPLING: Readonly<SamplingParams> = Object.freeze({
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  seed: null,
  logprobs: 0,
});

/** A request the runner has not seen yet; sent once, in the batch of its first chunk. */
export interface NewRequest {
  readonly id: number;
  readonly sampling: SamplingParams;
  /**
   * How many leading tokens of the request's fill are its prompt. A request
   * re-added after a retraction prefills its prompt plus the tokens it had
   * generated; those count as generated for the frequency and presence
   * penalties, and a sampling request's random stream resumes where it
   * stopped (the runner skips one draw per generated token). Absent: the
   * whole fill is prompt.
   */
  readonly promptLength?: number;
}

/** A slice of a request's prompt to prefill into its KV cache. */
export interface PrefillChunk {
  readonly id: number;
  /** Token ids of this chunk. */
  readonly tokens: Int32Array;
  /** Position of `tokens[0]` in the request's sequence (= tokens already in its cache). */
  readonly start: number;
  /** True on a request's last prompt chunk: sample its first new token. */
  readonly sample: boolean;
}

/** What to run in one forward pass. */
export interface ForwardBatch {
  /** Requests whose KV is released before this pass (finished, aborted, retracted). */
  readonly free: readonly number[];
  /** Requests new to the runner in this batch. */
  readonly add: readonly NewRequest[];
  /** Prefill chunks (any lengths, ragged). */
  readonly prefill: readonly PrefillChunk[];
  /** Requests to decode one token; each one's input is the last token the runner sampled for it. */
  readonly decode: readonly number[];
}

/** Top-n log-probabilities of one sampled token. */
export interface TokenLogprobs {
  readonly logprob: number;
  readonly topIds: Int32Array;
  readonly topLogprobs: Float32Array;
}

/** What one forward pass produced: one sampled token per sampling request, in batch order (prefill with `sample` first, then decode). */
export interface ForwardOutput {
  readonly ids: Int32Array;
  readonly tokens: Int32Array;
  /** Present only for requests that asked for logprobs, indexed like `ids`. */
  readonly logprobs: ReadonlyArray<TokenLogprobs | null> | null;
  /** KV tokens held after the pass. */
  readonly kvUsedTokens: number;
}

/** Static facts about the loaded model and cache. */
export interface ModelInfo {
  readonly name: string;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly eosTokenIds: readonly number[];
  /** KV cache capacity in tokens (sum over requests of their sequence lengths). */
  readonly kvCapacityTokens: number;
}

/** A model runner: the ONNX runner, the native runner or the simulated one. */
export interface ModelRunner {
  readonly info: ModelInfo;
  forward(batch: ForwardBatch): Promise<ForwardOutput>;
  /** Releases sessions and buffers. */
  close(): Promise<void>;
}
