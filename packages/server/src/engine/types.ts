/**
 * The engine: everything behind the HTTP layer. It tokenizes, dispatches to a
 * data-parallel rank (each rank a worker thread with its scheduler and model
 * runner), streams generated tokens back, and reports loads, health and
 * metrics. The HTTP routes only translate between wire formats and this
 * interface; `createEngine(options)` builds the real one, and an embedding
 * app can mount the routes on its own fastify instance next to its own.
 */
import type { PrefillDelayerMetricsSnapshot } from '@tsinfer/delayer';
import type { SamplingParams, TokenLogprobs } from '@tsinfer/runtime';
import type { LoadSnapshot, PassStats } from '@tsinfer/scheduler';
import type { EngineConfig } from './options.js';

/** What a request asks for, after the HTTP layer has validated and normalised it. */
export interface GenerateRequest {
  /** Prompt as text (tokenized by the engine, special tokens added) or as token ids. */
  readonly prompt:
    | {
        readonly text: string;
        /** Add the tokenizer's special tokens (BOS). Default true; pass false for a chat-template rendering, which writes them itself. */
        readonly addSpecialTokens?: boolean | undefined;
      }
    | { readonly tokenIds: readonly number[] };
  /** Runner sampling settings (validated ranges). */
  readonly sampling: SamplingParams;
  /** Generated tokens at most (>= 1). */
  readonly maxNewTokens: number;
  /** Stop strings; the matched one is not part of the output (OpenAI semantics). */
  readonly stop: readonly string[];
  /** Extra token ids that end generation. */
  readonly stopTokenIds: readonly number[];
  /** Keep generating past EOS. */
  readonly ignoreEos: boolean;
  /** Pin a data-parallel rank; out of range is TSI_ERR_INVALID_DP_RANK (400). */
  readonly routedDpRank?: number | undefined;
  /** Aborts the request (client disconnect): its KV is freed within one pass. */
  readonly signal?: AbortSignal | undefined;
}

/** One step of a request's output stream. */
export type GenerateEvent =
  | {
      readonly type: 'tokens';
      /** New token ids since the previous event (usually one). */
      readonly tokenIds: readonly number[];
      /** Newly finalised text (never a broken UTF-8 sequence; stop-string prefixes held back). */
      readonly text: string;
      /** Per token, when logprobs were asked for. */
      readonly logprobs: readonly (TokenLogprobs | null)[] | null;
    }
  | {
      readonly type: 'finish';
      /** `stop`: EOS, a stop token or a stop string; `length`: max tokens or context; `abort`: aborted or failed. */
      readonly reason: 'stop' | 'length' | 'abort';
      /** Remaining text held back for stop-string matching, now final. */
      readonly text: string;
      /** The stop string or token id that ended it, if any. */
      readonly matchedStop: string | number | null;
      readonly promptTokens: number;
      readonly completionTokens: number;
      /** The rank that served it. */
      readonly dpRank: number;
      /** Set when reason is `abort` because of an error (e.g. TSI_ERR_RANK_FAILED, TSI_ERR_SHUTTING_DOWN). */
      readonly error?: { readonly code: string; readonly message: string } | undefined;
    };

export interface EngineInfo {
  /** The served model name (`/v1/models`). */
  readonly modelName: string;
  readonly modelPath: string;
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly dpSize: number;
  /** `cpu` or `cuda` for a model directory; `sim` for a `sim:` profile. */
  readonly device: string;
  /** KV tokens each rank may fill (`max_total_num_tokens`). */
  readonly kvCapacityTokens: number;
  /** Running-batch cap of each rank. */
  readonly maxRunningRequests: number;
  /** Longest prompt + output a request may reach on a rank: min(context, KV capacity) - 1. */
  readonly maxReqLen: number;
  /** The resolved `--load-balance-method` (auto resolved). */
  readonly loadBalanceMethod: string;
  /** Whether the ranks run the prefill delayer. */
  readonly prefillDelayer: boolean;
  /** Which runner executes the model (`--runtime-backend` resolved; `sim` for sim: profiles) and why. */
  readonly runtimeBackend: 'native' | 'js' | 'sim';
  readonly runtimeBackendReason: string;
  /** `hf`: the model's tokenizer.json; `bytes`: the byte tokenizer of sim models (docs/engine.md). */
  readonly tokenizer: 'hf' | 'bytes';
}

/** One rank's scheduler and delayer state, fetched from its worker (for `/metrics` and `/server_info`). */
export interface RankStats {
  readonly dpRank: number;
  readonly alive: boolean;
  /** The rank's last pass stats (a copy); null when the rank is dead or did not answer in time. */
  readonly stats: PassStats | null;
  /** The rank's prefill-delayer metrics (cumulative); null without a delayer or an answer. */
  readonly delayer: PrefillDelayerMetricsSnapshot | null;
  /** KV tokens the runner holds now (0 once every request has finished and been freed). */
  readonly runnerKvUsedTokens: number | null;
}

/** Requests the engine holds now (the HTTP layer keeps its own request counters). */
export interface EngineRequestCounts {
  /** Dispatched to a rank, no token yet (what `--max-queued-requests` bounds). */
  readonly queued: number;
  /** Every request not finished yet (queued included). */
  readonly inFlight: number;
}

export interface EngineHealth {
  readonly ok: boolean;
  readonly ranks: ReadonlyArray<{
    readonly dpRank: number;
    readonly alive: boolean;
    readonly reason?: string;
  }>;
}

export interface Engine {
  readonly info: EngineInfo;
  /**
   * Starts a request and returns its event stream. Throws (synchronously or
   * as a rejected first `next()`) a TsinferError for requests that cannot
   * start: prompt + max tokens over the context length (400), invalid rank
   * (400), full queue (TSI_ERR_QUEUE_FULL, 503), shutting down (503).
   */
  generate(request: GenerateRequest): AsyncIterable<GenerateEvent>;
  /** Token ids of a text prompt (the same tokenization `generate` uses). */
  tokenize(text: string): number[];
  /** Renders chat messages with the model's chat template to a prompt text. */
  applyChatTemplate(messages: ReadonlyArray<{ role: string; content: string }>): string;
  health(): EngineHealth;
  /** The resolved options (for `/server_info`). */
  readonly config: EngineConfig;
  /** The engine's version (`/v1/loads`, `/server_info`). */
  readonly version: string;
  /**
   * The newest load snapshot of each rank that has published one, in rank
   * order, read from shared memory without messaging the ranks; with
   * `dpRank`, only that rank (out of range: []). Each call returns fresh
   * copies. Feed them to `buildLoadsPayload` / `renderLoadsPrometheus` /
   * `buildGetLoad` of `@tsinfer/scheduler`.
   */
  loads(dpRank?: number | null): readonly LoadSnapshot[];
  /**
   * Per rank (index = dp rank), the prefill delayer's cumulative metrics as
   * the rank last pushed them (each rank pushes at most once a second while
   * busy, and when it goes idle), or null where the rank has no delayer.
   */
  delayerMetrics(): readonly (PrefillDelayerMetricsSnapshot | null)[];
  /** Every rank's pass stats and delayer metrics, asked of each live rank now (dead ranks give nulls). */
  rankStats(options?: { timeoutMs?: number }): Promise<RankStats[]>;
  /** Requests the engine holds now. */
  requestCounts(): EngineRequestCounts;
  /** Text of token ids alone, special tokens included (logprobs' `token` strings). */
  decode(tokenIds: readonly number[]): string;
  /** Token ids of chat messages: the chat template rendered, then encoded without adding special tokens. */
  encodeChat(messages: ReadonlyArray<{ role: string; content: string }>): readonly number[];
  /** Frees cached KV not held by running requests. */
  flushCache(): Promise<void>;
  /** Stops accepting, lets in-flight requests finish for up to `timeoutMs`, aborts the rest, stops the ranks. */
  shutdown(options?: { timeoutMs?: number }): Promise<void>;
}
