/**
 * Per-pass statistics, collected once per pass from counters the scheduler
 * keeps incrementally (no per-token work, no allocation): what load
 * snapshots (`num_running_reqs`, `num_waiting_reqs`, `num_used_tokens`,
 * `num_total_tokens`, `token_usage`, `gen_throughput`, ...) and `/metrics`
 * read. One mutable object per scheduler, overwritten every pass: copy what
 * you keep.
 */
import type { DelayerReason, InputEstimation } from '@tsinfer/delayer';

export type ForwardMode = 'prefill' | 'decode' | 'idle';

export interface DelayerPassOutcome {
  inputEstimation: InputEstimation;
  allow: boolean;
  reason: DelayerReason;
  /** Whether this pass produced a prefill batch. */
  actualExecution: boolean;
  /** Whether this rank negotiated as prefillable (false: it reported zeros via finalize). */
  prefillable: boolean;
}

export interface PassStats {
  rank: number;
  /** Passes completed by this scheduler (this one included). */
  pass: number;
  /** Clock time at the start and end of the pass (ms). */
  startMs: number;
  endMs: number;
  mode: ForwardMode;
  /** Whether the pass called `runner.forward` (false when the batch was empty: nothing to free, prefill or decode). */
  forwarded: boolean;
  /** DP attention: this rank had a decode batch but another rank prefilled, so it ran idle. */
  forcedIdle: boolean;
  /**
   * DP attention: no rank of the group had any work at this pass (and all read the same wake
   * generation): every rank may sleep until the generation changes from `groupWakeGen`.
   */
  groupIdle: boolean;
  /** DP attention: the wake generation the ranks read for this pass (see wake.ts). */
  groupWakeGen: number;
  /** Requests with a prefill chunk in this pass (chunked continuation included). */
  prefillReqs: number;
  /** New requests admitted from the waiting queue this pass. */
  admittedReqs: number;
  prefillTokens: number;
  decodeReqs: number;
  /** Tokens sampled this pass. */
  generatedTokens: number;
  finishedReqs: number;
  abortedReqs: number;
  retractedReqs: number;
  numRunningReqs: number;
  numWaitingReqs: number;
  /** Σ fill length of waiting requests + the chunked request's unprefilled rest. */
  numWaitingUncachedTokens: number;
  numUsedTokens: number;
  /** numUsedTokens + Σ fill length of waiting requests (SGLang `num_total_tokens`; the chunked request not added). */
  numTotalTokens: number;
  maxTotalNumTokens: number;
  maxRunningRequests: number;
  /** numUsedTokens / maxTotalNumTokens. */
  tokenUsage: number;
  /** Generated tokens per second over the last passes (a 32-pass window). */
  genThroughput: number;
  newTokenRatio: number;
  maxPrefillBs: number;
  /** Real (not virtual) microseconds this pass spent outside `runner.forward`: the scheduling overhead. */
  schedulingUs: number;
  /** Real microseconds spent awaiting `runner.forward`. */
  forwardUs: number;
  /** Null when the scheduler has no delayer. */
  delayer: DelayerPassOutcome | null;
  /** Highest `RequestInput.dispatchSeq` among requests this rank has received (their tokens are in numTotalTokens); 0 = none. */
  ackedDispatchSeq: number;
  /** Prompt tokens prefilled so far (no prefix cache: every prefilled token is uncached). */
  totalPrefillUncachedTokens: number;
  /** Clock µs spent in passes that prefilled (start to end of the pass). */
  totalPrefillBusyUs: number;
  totalGeneratedTokens: number;
  totalFinishedReqs: number;
  totalAbortedReqs: number;
  totalRetractedReqs: number;
  totalPrefillPasses: number;
  totalDecodePasses: number;
  totalIdlePasses: number;
}

export function createPassStats(rank: number, withDelayer: boolean): PassStats {
  return {
    rank,
    pass: 0,
    startMs: 0,
    endMs: 0,
    mode: 'idle',
    forwarded: false,
    forcedIdle: false,
    groupIdle: false,
    groupWakeGen: 0,
    prefillReqs: 0,
    admittedReqs: 0,
    prefillTokens: 0,
    decodeReqs: 0,
    generatedTokens: 0,
    finishedReqs: 0,
    abortedReqs: 0,
    retractedReqs: 0,
    numRunningReqs: 0,
    numWaitingReqs: 0,
    numWaitingUncachedTokens: 0,
    numUsedTokens: 0,
    numTotalTokens: 0,
    maxTotalNumTokens: 0,
    maxRunningRequests: 0,
    tokenUsage: 0,
    genThroughput: 0,
    newTokenRatio: 0,
    maxPrefillBs: 0,
    schedulingUs: 0,
    forwardUs: 0,
    delayer: withDelayer
      ? { inputEstimation: 'none', allow: true, reason: '', actualExecution: false, prefillable: false }
      : null,
    ackedDispatchSeq: 0,
    totalPrefillUncachedTokens: 0,
    totalPrefillBusyUs: 0,
    totalGeneratedTokens: 0,
    totalFinishedReqs: 0,
    totalAbortedReqs: 0,
    totalRetractedReqs: 0,
    totalPrefillPasses: 0,
    totalDecodePasses: 0,
    totalIdlePasses: 0,
  };
}

/** Generated-token throughput over a window of the last N passes; O(1) per pass, no allocation. */
export class ThroughputWindow {
  readonly #times: Float64Array;
  readonly #counts: Float64Array;
  #next = 0;
  #filled = 0;

  constructor(size = 32) {
    this.#times = new Float64Array(size);
    this.#counts = new Float64Array(size);
  }

  /** Records the cumulative token count at time `nowMs` and returns tokens/s over the window. */
  record(nowMs: number, cumulativeTokens: number): number {
    const n = this.#times.length;
    const oldestIdx = this.#filled < n ? 0 : this.#next;
    const hasOld = this.#filled > 0;
    const tOld = this.#times[oldestIdx]!;
    const cOld = this.#counts[oldestIdx]!;
    this.#times[this.#next] = nowMs;
    this.#counts[this.#next] = cumulativeTokens;
    this.#next = this.#next + 1 === n ? 0 : this.#next + 1;
    if (this.#filled < n) this.#filled++;
    if (!hasOld || nowMs <= tOld) return 0;
    return ((cumulativeTokens - cOld) * 1000) / (nowMs - tOld);
  }
}
