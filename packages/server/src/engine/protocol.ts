/**
 * Messages between the main thread and a rank worker. The data path is
 * batched: the main thread coalesces the adds and aborts of one event-loop
 * turn into one message per rank; the rank posts one `pass` message per pass
 * with every new token of every request packed in typed arrays (plus the
 * text deltas as one string with per-entry lengths) and the finishes of that
 * pass. Nothing is sent per token.
 */
import type { PrefillDelayerMetricsSnapshot, SharedAllGatherInit } from '@tsinfer/delayer';
import type { ModelInfo, RuntimeBackend, SamplingParams, TokenLogprobs } from '@tsinfer/runtime';
import type { PassStats, SchedulerConfig, SharedWakeInit } from '@tsinfer/scheduler';

export interface RankWorkerInit {
  readonly rank: number;
  readonly dpSize: number;
  readonly model:
    | { readonly kind: 'sim'; readonly profilePath: string }
    | {
        readonly kind: 'dir';
        readonly dir: string;
        readonly device: 'cpu' | 'cuda';
        readonly intraOpThreads: number | null;
        readonly memFractionStatic: number | null;
        readonly maxRequests: number;
        readonly runtimeBackend: RuntimeBackend;
      };
  readonly scheduler: SchedulerConfig;
  readonly seed: number;
  /** The load snapshot board (LoadSnapshotBoard.buffer). */
  readonly board: SharedArrayBuffer;
  readonly publishInterval: number;
  readonly heartbeatMs: number;
  /** DP attention: the lockstep group and (with the delayer) the delayer's group. */
  readonly lockInit: SharedAllGatherInit | null;
  readonly delayInit: SharedAllGatherInit | null;
  /** DP attention: the group's wake signal (`createSharedWakeInit`); null for independent ranks. */
  readonly wakeInit: SharedWakeInit | null;
  /** Fault injection: die after this many forward passes (null: never), by throwing or by exiting the thread. */
  readonly crashAfterPasses: number | null;
  readonly crashHow: 'throw' | 'exit';
}

/** One request as the main thread sends it. */
export interface AddItem {
  /** Engine-wide request handle. */
  readonly id: number;
  /** Dispatch sequence number for the rank (0: pinned, not counted). */
  readonly seq: number;
  readonly prompt: Int32Array;
  readonly maxNewTokens: number;
  readonly sampling: SamplingParams;
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
}

export type ToRank =
  | { readonly t: 'add'; readonly items: readonly AddItem[] }
  | { readonly t: 'abort'; readonly ids: readonly number[] }
  | { readonly t: 'stats'; readonly reqId: number }
  | { readonly t: 'stop' };

export interface FinishItem {
  readonly id: number;
  readonly reason: 'stop' | 'length' | 'abort';
  readonly matchedStop: string | number | null;
  /** Text held back until now (final). */
  readonly text: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Set when the rank refused the request (addRequest threw). */
  readonly error?: { readonly code: string; readonly message: string };
}

export interface PassMessage {
  readonly t: 'pass';
  /** Entry i: request `ids[i]` got `counts[i]` tokens, the next ones of `tokens`, and `textLens[i]` UTF-16 units of `text`. */
  readonly ids: Int32Array;
  readonly counts: Int32Array;
  readonly tokens: Int32Array;
  readonly textLens: Int32Array;
  readonly text: string;
  /** Per entry, the logprobs of its tokens; null when no entry asked for them. */
  readonly logprobs: ReadonlyArray<ReadonlyArray<TokenLogprobs | null> | null> | null;
  readonly finishes: readonly FinishItem[];
}

export interface RankReady {
  readonly t: 'ready';
  readonly info: ModelInfo;
  readonly kvCapacity: number;
  readonly maxRunningRequests: number;
  readonly maxReqLen: number;
  readonly delayer: boolean;
  /** Which runner executes the model (`sim` for sim: profiles) and why. */
  readonly backend: { readonly name: 'native' | 'js' | 'sim'; readonly reason: string };
}

export interface RankStatsReply {
  readonly t: 'stats';
  readonly reqId: number;
  readonly stats: PassStats;
  readonly delayer: PrefillDelayerMetricsSnapshot | null;
  readonly runnerKvUsedTokens: number;
  readonly runnerHeldRequests: number;
}

export type FromRank =
  | RankReady
  | PassMessage
  | RankStatsReply
  | { readonly t: 'fatal'; readonly error: { readonly code: string; readonly message: string } };
