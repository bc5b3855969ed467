/**
 * The prefill delayer's decision: a pure function of the
 * gathered rows, this rank's `max_running_requests`, the delay state, the
 * time and the config. With only the six base config fields it is SGLang's
 * baseline (PR #23189) verbatim; the optional fields turn on tsinfer's
 * opt-in fixes (docs/delayer.md, "Where tsinfer differs from SGLang").
 */
import {
  COL_MAX_PREFILL_BS,
  COL_PREFILLABLE,
  COL_RUNNING_BATCH,
  COL_TOKEN_WATERMARK_FORCE_ALLOW,
  COL_WAITING_QUEUE_LEN,
} from './row.js';

/** Wall-clock cap of the queue trigger when `maxDelayMs` is null (SGLang's default). */
export const DEFAULT_MAX_DELAY_MS = 5000;

/** Exact SGLang reason strings; `''` is the reason of a `none` pass (nobody prefillable). */
export type DelayerReason = 'no_wait' | 'wait_success' | '' | 'token_watermark' | 'delay' | 'wait_timeout';

/** The pass's status from the gathered `prefillable` column. */
export type InputEstimation = 'all' | 'none' | 'mixed';

/** An open delay episode: how many passes were delayed and when (Clock ms) the first delay happened. */
export interface DelayEpisode {
  delayedCount: number;
  startMs: number;
}

/** The delayer's persistent state. */
export interface DelayerState {
  prev: DelayEpisode | null;
  /** SGLang's `skip_first_delayer`: true until the all branch first wants to delay; that pass is allowed. */
  skipFirst: boolean;
}

export interface DecisionConfig {
  /** P: the mixed branch delays at most P − 1 consecutive passes. */
  maxDelayPasses: number;
  /** W; not read by the decision itself (the rows carry the watermark bit) but part of the config. */
  tokenUsageLowWatermark: number | null;
  /** R: null turns the queue trigger off; any number (0 included) turns it on. */
  queueMinRatio: number | null;
  /** D, the queue trigger's wall-clock cap in ms; null means 5000. */
  maxDelayMs: number | null;
  dpSize: number;
  enableDpAttention: boolean;
  /**
   * Opt-in fix for SGLang's unbounded slot delay (off by default): once the current episode has
   * P − 1 delays, the slot condition no longer delays; a pass released that
   * way says `wait_timeout`. The queue condition keeps its own wall-clock cap.
   */
  capSlotDelay?: boolean;
  /**
   * Opt-in fix for the trickle-traffic queue threshold (null/absent by default): when a number, the queue
   * threshold is `min(trunc(RB × R), admissionCap)` instead of
   * `min(trunc(RB × R), MP)`. The config layer sets it from
   * `--prefill-max-requests` when `--prefill-delayer-admission-cap` is on.
   */
  admissionCap?: number | null;
}

/** What {@link decidePrefill} returns. */
export interface PrefillDecision {
  allow: boolean;
  reason: DelayerReason;
  inputEstimation: InputEstimation;
  numPrefillable: number;
  numTokenWatermarkForceAllow: number;
  /** The state after this decision (prev is null after every allow). */
  state: DelayerState;
  /** Passes this release waited (the closed episode's delayedCount); 0 on delay and when no episode was open. */
  waitForwardPasses: number;
  /** Milliseconds this release waited (now − episode start); 0 on delay and when no episode was open. */
  waitMs: number;
}

/**
 * Flat, reusable form of a decision: inputs' next state as scalars so the
 * per-pass executor allocates nothing. `hasPrev`/`delayedCount`/`startMs`
 * describe the NEXT state.
 */
export interface DecisionRecord {
  allow: boolean;
  reason: DelayerReason;
  inputEstimation: InputEstimation;
  numPrefillable: number;
  numTokenWatermarkForceAllow: number;
  hasPrev: boolean;
  delayedCount: number;
  startMs: number;
  skipFirst: boolean;
  waitForwardPasses: number;
  waitMs: number;
}

/** A blank {@link DecisionRecord} to be filled by {@link decidePrefillInto}. */
export function createDecisionRecord(): DecisionRecord {
  return {
    allow: true,
    reason: '',
    inputEstimation: 'none',
    numPrefillable: 0,
    numTokenWatermarkForceAllow: 0,
    hasPrev: false,
    delayedCount: 0,
    startMs: 0,
    skipFirst: true,
    waitForwardPasses: 0,
    waitMs: 0,
  };
}

function release(
  out: DecisionRecord,
  reason: DelayerReason,
  hasPrev: boolean,
  prevCount: number,
  prevStartMs: number,
  nowMs: number,
): void {
  out.allow = true;
  out.reason = reason;
  out.hasPrev = false;
  out.delayedCount = 0;
  out.startMs = 0;
  out.waitForwardPasses = hasPrev ? prevCount : 0;
  const waited = nowMs - prevStartMs;
  out.waitMs = hasPrev && waited > 0 ? waited : 0;
}

function delay(
  out: DecisionRecord,
  hasPrev: boolean,
  prevCount: number,
  prevStartMs: number,
  nowMs: number,
): void {
  out.allow = false;
  out.reason = 'delay';
  out.hasPrev = true;
  out.delayedCount = (hasPrev ? prevCount : 0) + 1;
  out.startMs = hasPrev ? prevStartMs : nowMs;
  out.waitForwardPasses = 0;
  out.waitMs = 0;
}

/**
 * The decision, written into `out` without allocating. `rows` are the DP
 * group leaders' rows. The previous state comes in as scalars
 * (`hasPrev`, `prevCount`, `prevStartMs`, `skipFirst`); the next one goes out
 * in `out`. Never mutates `rows` or `config`.
 */
export function decidePrefillInto(
  out: DecisionRecord,
  rows: ReadonlyArray<ArrayLike<number>>,
  maxRunningRequests: number,
  hasPrev: boolean,
  prevCount: number,
  prevStartMs: number,
  skipFirst: boolean,
  nowMs: number,
  config: DecisionConfig,
): void {
  const n = rows.length;
  let numPrefillable = 0;
  let numWatermark = 0;
  for (let i = 0; i < n; i++) {
    const row = rows[i]!;
    if ((row[COL_PREFILLABLE] ?? 0) !== 0) numPrefillable++;
    if ((row[COL_TOKEN_WATERMARK_FORCE_ALLOW] ?? 0) !== 0) numWatermark++;
  }
  out.numPrefillable = numPrefillable;
  out.numTokenWatermarkForceAllow = numWatermark;
  out.skipFirst = skipFirst;

  // none: nobody wants to prefill; allow (irrelevant) and end any episode.
  if (numPrefillable === 0) {
    out.inputEstimation = 'none';
    release(out, '', hasPrev, prevCount, prevStartMs, nowMs);
    return;
  }

  if (numPrefillable !== n) {
    // mixed: only the watermark and the pass budget matter.
    out.inputEstimation = 'mixed';
    if (numWatermark > 0) {
      release(out, 'token_watermark', hasPrev, prevCount, prevStartMs, nowMs);
    } else if ((hasPrev ? prevCount : 0) < config.maxDelayPasses - 1) {
      delay(out, hasPrev, prevCount, prevStartMs, nowMs);
    } else {
      release(out, 'wait_timeout', hasPrev, prevCount, prevStartMs, nowMs);
    }
    return;
  }

  // all
  out.inputEstimation = 'all';
  if (numWatermark > 0) {
    release(out, 'token_watermark', hasPrev, prevCount, prevStartMs, nowMs);
    return;
  }
  const maxRunning = config.enableDpAttention
    ? maxRunningRequests
    : Math.ceil(maxRunningRequests / config.dpSize);
  let runningBatch = 0;
  let maxPrefillBs = 0;
  let waitingQueueLen = 0;
  for (let i = 0; i < n; i++) {
    const row = rows[i]!;
    const rb = row[COL_RUNNING_BATCH] ?? 0;
    const mp = row[COL_MAX_PREFILL_BS] ?? 0;
    const wq = row[COL_WAITING_QUEUE_LEN] ?? 0;
    if (i === 0 || rb > runningBatch) runningBatch = rb;
    if (i === 0 || mp > maxPrefillBs) maxPrefillBs = mp;
    if (i === 0 || wq > waitingQueueLen) waitingQueueLen = wq;
  }

  let queue = false;
  const ratio = config.queueMinRatio;
  if (ratio !== null && runningBatch > 0) {
    const cap = config.admissionCap ?? maxPrefillBs;
    const threshold = Math.min(Math.trunc(runningBatch * ratio), cap);
    queue = threshold > 0 && waitingQueueLen < threshold;
    if (queue && hasPrev && nowMs - prevStartMs >= (config.maxDelayMs ?? DEFAULT_MAX_DELAY_MS)) queue = false;
  }

  let slot = maxRunning - runningBatch < maxPrefillBs;
  let slotCapped = false;
  if (slot && config.capSlotDelay === true && (hasPrev ? prevCount : 0) >= config.maxDelayPasses - 1) {
    slot = false;
    slotCapped = true;
  }

  if (slot || queue) {
    if (skipFirst) {
      out.skipFirst = false; // swallowed once for the life of the delayer; this pass is allowed
    } else {
      delay(out, hasPrev, prevCount, prevStartMs, nowMs);
      return;
    }
  }
  release(
    out,
    slotCapped ? 'wait_timeout' : hasPrev ? 'wait_success' : 'no_wait',
    hasPrev,
    prevCount,
    prevStartMs,
    nowMs,
  );
}

const scratch = createDecisionRecord();

/**
 * Decides whether this pass may admit prefill. Pure: reads its inputs, never
 * mutates them, returns a fresh record with the next state.
 *
 * `rows`: one gathered row per DP rank (columns of row.ts). `local`: only
 * `maxRunningRequests` matters (it is not gathered). `nowMs`: the time the
 * queue deadline is judged at and a new episode starts at.
 */
export function decidePrefill(
  rows: ReadonlyArray<ArrayLike<number>>,
  local: { maxRunningRequests: number },
  state: DelayerState,
  nowMs: number,
  config: DecisionConfig,
): PrefillDecision {
  const prev = state.prev;
  decidePrefillInto(
    scratch,
    rows,
    local.maxRunningRequests,
    prev !== null,
    prev === null ? 0 : prev.delayedCount,
    prev === null ? 0 : prev.startMs,
    state.skipFirst,
    nowMs,
    config,
  );
  return {
    allow: scratch.allow,
    reason: scratch.reason,
    inputEstimation: scratch.inputEstimation,
    numPrefillable: scratch.numPrefillable,
    numTokenWatermarkForceAllow: scratch.numTokenWatermarkForceAllow,
    state: {
      prev: scratch.hasPrev ? { delayedCount: scratch.delayedCount, startMs: scratch.startMs } : null,
      skipFirst: scratch.skipFirst,
    },
    waitForwardPasses: scratch.waitForwardPasses,
    waitMs: scratch.waitMs,
  };
}
